"""Real sample images from the package registry: TotalSegmentator 2.18.0's test CTs (Apache-2.0), a T1 head
from pyradiomics 3.1.0 (BSD-3) and a fluorescence nuclei image from stardist 0.9.2 (BSD-3).

Fetched with pip at a pinned version only when the user asks (``medseg sample-data``), checked against
SHA-256 sums, and cached outside the repository. Cite Wasserthal et al., Radiology: AI 2023 where shown.
The masks are TotalSegmentator's own predictions: Dice against them is "agreement with TotalSegmentator".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.files import sha256_of

@dataclass(frozen=True)
class SampleSource:
    """A package on the registry whose archive holds sample images: pip fetches it by pinned version."""

    requirement: str  # what pip downloads
    archive_sha256: str | None  # None: the archive differs by platform (a wheel); its files are pinned instead
    member_root: str  # the samples' folder inside the archive
    folder: str  # the cache folder's name
    samples: dict[str, tuple[str, str]]  # name -> (path under member_root, SHA-256 of the file or folder)
    pip_options: tuple[str, ...] = ()


TOTALSEGMENTATOR = SampleSource(
    "totalsegmentator==2.18.0", "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
    "totalsegmentator-2.18.0/tests/reference_files/", "totalsegmentator-2.18.0", {
        "example_ct": ("example_ct.nii.gz", "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"),
        "example_seg": ("example_seg_fast_force_split.nii.gz",
                        "e8097758e56e73099075b6caaebce23ef11bc6fad66a4ec3753b9406846558c7"),
        "example_ct_dicom": ("example_ct_dicom", "8029e094aa3e24ca7c39b5acf697af594b8f56a959a35241c32e5b225bc9277a"),
        "example_seg_dicom": ("example_seg_dicom.nii.gz",
                              "98af7f6536c316ff9084054f20956cd3e28af376b81d582d269fbea2744878fc"),
        "aorta_ct": ("aorta_report/example_ct.nii.gz",
                     "372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12"),
        "aorta_ct_aorta": ("aorta_report/test_result/models/aorta.nii.gz",  # on a crop of aorta_ct's grid
                           "7fa1b813c63abcbe455b62a510c5e7a00fe0998f30541d5a8af46b20a88dd7f7"),
    }, ("--no-binary", ":all:"))
# pyradiomics 3.1.0 (BSD-3): its sdist's metadata says 3.0.1a1, so pip takes it only as a direct reference.
PYRADIOMICS = SampleSource(
    "pyradiomics @ https://files.pythonhosted.org/packages/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448"
    "ab6b4578f2/pyradiomics-3.1.0.tar.gz", "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
    "pyradiomics-3.1.0/data/", "pyradiomics-3.1.0", {
        "brain_t1_mr": ("brain2_image.nrrd", "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e"),
        "lung_ct_1": ("lung1_image.nrrd", "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed"),
        "lung_ct_2": ("lung2_image.nrrd", "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651"),
    })
# stardist 0.9.2 (BSD-3): fluorescence nuclei from the 2018 Data Science Bowl, with instance masks.
STARDIST = SampleSource(
    "stardist==0.9.2", None, "stardist/data/images/", "stardist-0.9.2", {
        "nuclei_2d": ("img2d.tif", "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750"),
        "nuclei_2d_mask": ("mask2d.tif", "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f"),
    }, ("--only-binary", ":all:"))
SOURCES = (TOTALSEGMENTATOR, PYRADIOMICS, STARDIST)
SAMPLES = {name: entry for source in SOURCES for name, entry in source.samples.items()}


def cache_root() -> Path:
    root = os.environ.get("MEDSEG_DATA_DIR")
    return Path(root) if root else Path.home() / ".cache" / "medsegefficient"


def sample_paths(fetch: bool = True, names: list[str] | None = None) -> dict[str, Path]:
    """Paths of every sample (or of the packages holding ``names``), fetching and verifying first what the cache
    lacks."""
    unknown = set(names or ()) - set(SAMPLES)
    if unknown:
        raise MedSegError(f"no sample named {', '.join(sorted(unknown))} (samples: {', '.join(SAMPLES)})")
    paths = {}
    for source in SOURCES:
        if names is not None and not set(names) & set(source.samples):
            continue
        folder = cache_root() / source.folder
        found = {name: folder / relative for name, (relative, _) in source.samples.items()}
        if not all(path.exists() for path in found.values()):
            if not fetch:
                raise MedSegError(f"sample data not in {folder}; run 'medseg sample-data' first")
            fetch_into(source, folder)
        paths.update(found)
    return paths


def fetch_into(source: SampleSource, folder: Path) -> None:
    # Once per package, and it takes a while: say so before the wait, not after.
    print(f"medseg: fetching {source.requirement} through pip into {folder} (once; it is then kept there)",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *source.pip_options,
                   source.requirement, "-d", str(scratch_path)]
        done = subprocess.run(command, capture_output=True, text=True)
        archives = [path for path in scratch_path.iterdir() if path.is_file()]
        if done.returncode != 0 or len(archives) != 1:
            raise MedSegError(f"could not download {source.requirement} with pip: {done.stderr.strip()[-300:]}")
        archive = archives[0]
        if source.archive_sha256 is not None and sha256_of(archive) != source.archive_sha256:
            raise MedSegError(f"{archive.name} does not match its pinned SHA-256; refusing to use it")
        staging = scratch_path / "staging"
        _extract_samples(archive, source, staging)
        for name, (relative, expected) in source.samples.items():
            if not (staging / relative).exists() or sha256_of(staging / relative) != expected:
                raise MedSegError(f"sample '{name}' does not match its pinned SHA-256")
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(staging, partial)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)


def _extract_samples(archive: Path, source: SampleSource, destination: Path) -> None:
    """The samples' files only, from a .tar.gz or a wheel (zip); nothing is written outside ``destination``."""
    wanted = tuple(source.member_root + relative for relative, _ in source.samples.values())
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive, "r:gz") as tar:
            members = [(m.name, m) for m in tar.getmembers() if m.isfile()]
            _copy_members(members, wanted, source.member_root, destination, tar.extractfile)
    else:
        with zipfile.ZipFile(archive) as wheel:
            members = [(info.filename, info) for info in wheel.infolist() if not info.is_dir()]
            _copy_members(members, wanted, source.member_root, destination, wheel.open)


def _copy_members(members, wanted: tuple[str, ...], root: str, destination: Path, opener) -> None:
    for name, member in members:
        if not name.startswith(wanted) or ".." in Path(name).parts:
            continue
        target = destination / name[len(root):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener(member) as stream, open(target, "wb") as sink:
            shutil.copyfileobj(stream, sink)
