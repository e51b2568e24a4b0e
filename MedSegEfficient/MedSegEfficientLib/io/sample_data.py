"""Real sample images from the package registry: TotalSegmentator 2.18.0's test CTs (Apache-2.0).

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
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.files import sha256_of

PACKAGE = "totalsegmentator==2.18.0"
ARCHIVE = "totalsegmentator-2.18.0.tar.gz"
ARCHIVE_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
MEMBER_ROOT = "totalsegmentator-2.18.0/tests/reference_files/"

# name -> (path under reference_files, SHA-256 of the file, or of a folder's files concatenated in name order)
SAMPLES: dict[str, tuple[str, str]] = {
    "example_ct": ("example_ct.nii.gz", "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"),
    "example_seg": ("example_seg_fast_force_split.nii.gz",
                    "e8097758e56e73099075b6caaebce23ef11bc6fad66a4ec3753b9406846558c7"),
    "example_ct_dicom": ("example_ct_dicom", "8029e094aa3e24ca7c39b5acf697af594b8f56a959a35241c32e5b225bc9277a"),
    "example_seg_dicom": ("example_seg_dicom.nii.gz",
                          "98af7f6536c316ff9084054f20956cd3e28af376b81d582d269fbea2744878fc"),
    "aorta_ct": ("aorta_report/example_ct.nii.gz", "372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12"),
}


def cache_folder() -> Path:
    root = os.environ.get("MEDSEG_DATA_DIR")
    return Path(root) if root else Path.home() / ".cache" / "medsegefficient" / "totalsegmentator-2.18.0"


def sample_paths(fetch: bool = True) -> dict[str, Path]:
    """Paths of every sample, fetching and verifying them first if the cache lacks any."""
    folder = cache_folder()
    paths = {name: folder / relative for name, (relative, _) in SAMPLES.items()}
    if all(path.exists() for path in paths.values()):
        return paths
    if not fetch:
        raise MedSegError(f"sample data not in {folder}; run 'medseg sample-data' first")
    _fetch_into(folder)
    return paths


def _fetch_into(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   PACKAGE, "-d", str(scratch_path)]
        done = subprocess.run(command, capture_output=True, text=True)
        archive = scratch_path / ARCHIVE
        if done.returncode != 0 or not archive.exists():
            raise MedSegError(f"could not download {PACKAGE} with pip: {done.stderr.strip()[-300:]}")
        if sha256_of(archive) != ARCHIVE_SHA256:
            raise MedSegError(f"{ARCHIVE} does not match its pinned SHA-256; refusing to use it")
        staging = scratch_path / "staging"
        _extract_samples(archive, staging)
        for name, (relative, expected) in SAMPLES.items():
            if sha256_of(staging / relative) != expected:
                raise MedSegError(f"sample '{name}' does not match its pinned SHA-256")
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(staging, partial)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)


def _extract_samples(archive: Path, destination: Path) -> None:
    wanted = tuple(MEMBER_ROOT + relative for relative, _ in SAMPLES.values())
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(wanted):
                continue
            target = destination / member.name[len(MEMBER_ROOT):]
            if ".." in Path(member.name).parts:  # never write outside the destination
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
