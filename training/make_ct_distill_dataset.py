"""Build the abdominal-CT distillation folder: every labelled CT we have, the unlabelled ones, the held-out series.

- example_ct (abdomen-pelvis, 3 mm) with its full TotalSegmentator map merged as training/make_demo_dataset.py
  merges it;
- aorta_ct (a second, thoraco-abdominal CT at 1.5 mm) with only its aorta labelled (TotalSegmentator's aorta
  report): a partly labelled case ("labelled": ["aorta"]), the teachers fill in the rest;
- unlabelled: pyradiomics' two chest CTs (lung_ct_1, lung_ct_2; BSD-3), in imagesUnlabelled/ for --images;
- validation: the upper-abdomen DICOM series, never trained on.
All TotalSegmentator files are Apache-2.0; their masks are TotalSegmentator's predictions.

    python training/make_ct_distill_dataset.py OUT_FOLDER
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.io.sample_data import sample_paths

HERE = Path(__file__).resolve().parent


def _demo_builder():
    spec = importlib.util.spec_from_file_location("make_demo_dataset", HERE / "make_demo_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(out: Path) -> None:
    demo = _demo_builder()
    demo.main(out)  # example_ct for training, the DICOM series for validation, dataset.json
    dataset = json.loads((out / "dataset.json").read_text())
    aorta_value = next(label["value"] for label in dataset["medseg_labels"] if label["name"] == "aorta")
    samples = sample_paths()
    ct, aorta = read_image(samples["aorta_ct"]), read_image(samples["aorta_ct_aorta"])
    write_label_image(ct.array, ct, out / "imagesTr" / "thorax_abdomen_001_0000.nii.gz")
    write_label_image((aorta.array > 0).astype(np.uint8) * aorta_value, aorta, out / "labelsTr" / "thorax_abdomen_001.nii.gz")
    for name in ("lung_ct_1", "lung_ct_2"):
        image = read_image(samples[name])
        write_label_image(image.array, image, out / "imagesUnlabelled" / f"{name}.nii.gz")
    dataset["training"] = [
        {"image": "imagesTr/abdomen_000_0000.nii.gz", "label": "labelsTr/abdomen_000.nii.gz"},
        {"image": "imagesTr/thorax_abdomen_001_0000.nii.gz", "label": "labelsTr/thorax_abdomen_001.nii.gz",
         "labelled": ["aorta"]}]
    dataset["validation"] = [{"image": "imagesVal/upper_abdomen_dicom_000_0000.nii.gz",
                              "label": "labelsVal/upper_abdomen_dicom_000.nii.gz"}]
    dataset["numTraining"] = 2
    dataset["source"] += "; pyradiomics 3.1.0 chest CTs, unlabelled (BSD-3)"
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "ct_distill_dataset"))
