"""Build the brain-extraction distillation set: four real T1 heads, deepbet's soft targets, the atlas masks.

Heads (each file pinned by SHA-256):
- colin27: Colin27 T1 with skull, 1 mm (Debian mricron-data 1.2.20211006+dfsg-4; BSD-3 per Debian), brain
  mask from its skull-stripped ch2bet;
- mni152: the MNI152 2009c T1 template, 1 mm, already skull-stripped (nilearn 0.14.1, BSD-3): its nonzero voxels
  are its brain mask;
- brain1, brain2: clinical T1 heads, 0.78 x 0.78 x 6.5 mm (pyradiomics 3.1.0 test data, BSD-3).
Each head also gets validate_NAME/, a dataset folder with that head and deepbet's mask for medseg tune.
The teacher is deepbet 1.0.2 (MIT), run by training/teachers/deepbet_teacher.py. Each head also gets a 2 mm copy
of itself and of deepbet's mask, so that a GPU node without SimpleITK can choose epochs on it (medseg fit); the
figures in the card are measured afterwards on the original grids (medseg tune).

    python training/make_brain_dataset.py OUT_FOLDER
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent / "teachers"))
from deepbet_teacher import DeepbetTeacher, brain_mask  # noqa: E402

from MedSegEfficientLib.files import sha256_of  # noqa: E402
from MedSegEfficientLib.io.sample_data import PYRADIOMICS, SampleSource, fetch_into, cache_root  # noqa: E402

DEEPBET = SampleSource("deepbet==1.0.2", "1999e2ea00ec48f6233b95b96f3901a962d3f70431c63aeb985e8a49a198473c",
                       "data/models/", "deepbet-1.0.2", {
                           "bbox_model": ("bbox_model.pt", "39a7b2b5f799faa1391ea97bfcdc0b9299f20d84f2316a4ff8918dc4685e40aa"),
                           "model": ("model.pt", "de8ee7c69654d0dd3935dc4a5d84571d8ecf4637a6bfc01df399c4c2bc86e0fd")})
NILEARN = SampleSource("nilearn==0.14.1", "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a",
                       "nilearn/datasets/data/", "nilearn-0.14.1", {
                           "mni152": ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                                      "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6")})
MRICRON_DEB_SHA256 = "d40aa0ed66cf89bf6cafa049ad3884703c9d975c2ee2737525b7196528df9d6f"
MRICRON_FILES = {"ch2.nii.gz": "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
                 "ch2bet.nii.gz": "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1"}
BRAIN1_SHA256 = "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf"
GRID_MM = 2.0
LABELS = [{"value": 1, "name": "brain", "color": [250, 250, 225],
           "category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "12738006", "Brain"]}]


def fetched(source: SampleSource) -> Path:
    folder = cache_root() / source.folder
    if not all((folder / relative).exists() for relative, _ in source.samples.values()):
        fetch_into(source, folder)
    return folder


def colin27_files() -> Path:
    """Colin27 from Debian's mricron-data package (apt-get download; no root needed)."""
    folder = cache_root() / "mricron-data-1.2.20211006"
    if all((folder / name).exists() for name in MRICRON_FILES):
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["apt-get", "download", "mricron-data=1.2.20211006+dfsg-4"], cwd=scratch, check=True,
                       capture_output=True)
        deb = next(Path(scratch).glob("mricron-data_*.deb"))
        if sha256_of(deb) != MRICRON_DEB_SHA256:
            raise SystemExit(f"{deb.name} does not match its pinned SHA-256")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(scratch) / "x")], check=True)
        folder.mkdir(parents=True, exist_ok=True)
        for name, expected in MRICRON_FILES.items():
            source = Path(scratch) / "x/usr/share/mricron/templates" / name
            if sha256_of(source) != expected:
                raise SystemExit(f"{name} does not match its pinned SHA-256")
            shutil.copy(source, folder / name)
    return folder


def brain1_file() -> Path:
    """brain1 sits in the same pyradiomics archive as the brain_t1_mr sample."""
    target = cache_root() / PYRADIOMICS.folder / "brain1_image.nrrd"
    if not target.exists():
        extra = SampleSource(PYRADIOMICS.requirement, PYRADIOMICS.archive_sha256, PYRADIOMICS.member_root,
                             PYRADIOMICS.folder, {**PYRADIOMICS.samples, "brain1": ("brain1_image.nrrd", BRAIN1_SHA256)})
        fetch_into(extra, cache_root() / PYRADIOMICS.folder)
    return target


def on_grid(image: sitk.Image, spacing: float, interpolator) -> sitk.Image:
    size = [max(1, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), [spacing] * 3,
                         image.GetDirection(), 0, image.GetPixelID())


def main(out: Path) -> None:
    colin = colin27_files()
    heads = {"colin27": colin / "ch2.nii.gz", "mni152": fetched(NILEARN) / NILEARN.samples["mni152"][0],
             "brain1": brain1_file(), "brain2": fetched(PYRADIOMICS) / "brain2_image.nrrd"}
    atlas = {"colin27": (colin / "ch2bet.nii.gz", 0), "mni152": (heads["mni152"], 0)}
    teacher = DeepbetTeacher(fetched(DEEPBET))
    for folder in ("heads", "teacher", "atlas", "grid2mm"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for name, path in heads.items():
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(image, str(out / "heads" / f"{name}_t1.nii.gz"), useCompression=True)
        probability = teacher.probability(image)
        mask = brain_mask(probability)
        sitk.WriteImage(probability, str(out / "teacher" / f"{name}_p.nii.gz"), useCompression=True)
        sitk.WriteImage(mask, str(out / "teacher" / f"{name}_mask.nii.gz"), useCompression=True)
        sitk.WriteImage(on_grid(image, GRID_MM, sitk.sitkLinear), str(out / "grid2mm" / f"{name}_t1.nii.gz"))
        sitk.WriteImage(on_grid(mask, GRID_MM, sitk.sitkNearestNeighbor), str(out / "grid2mm" / f"{name}_mask.nii.gz"))
        if name in atlas:
            reference = sitk.ReadImage(str(atlas[name][0]))
            atlas_mask = sitk.Cast(reference > atlas[name][1], sitk.sitkUInt8)
            sitk.WriteImage(atlas_mask, str(out / "atlas" / f"{name}_mask.nii.gz"), useCompression=True)
        volume_ml = float(sitk.GetArrayViewFromImage(mask).sum()) * np.prod(mask.GetSpacing()) / 1000
        print(f"{name}: deepbet brain {volume_ml:.0f} ml")
        validation_folder(out / f"validate_{name}", name, out / "heads" / f"{name}_t1.nii.gz",
                          out / "teacher" / f"{name}_mask.nii.gz")
    (out / "labels.json").write_text(json.dumps(LABELS, indent=2))
    print(f"wrote {out}")


def validation_folder(folder: Path, name: str, image: Path, mask: Path) -> None:
    """A dataset folder whose one validation case is a head and deepbet's mask, on its own grid (medseg tune)."""
    for split, source, target in (("images", image, f"{name}_0000.nii.gz"), ("labels", mask, f"{name}.nii.gz")):
        (folder / f"{split}Val").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / f"{split}Val" / target)
    dataset = {"name": f"BrainExtraction_{name}", "channel_names": {"0": "MR"},
               "labels": {"background": 0, "brain": 1}, "medseg_labels": LABELS,
               "imagesTr": [], "reference": "deepbet 1.0.2's mask (agreement with deepbet)"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "brain_dataset"))
