"""Build the demo model's training folder (nnU-Net / MSD layout) from the real sample CTs.

Training: TotalSegmentator's example_ct (abdomen-pelvis, 3 mm) with its 'total' labels merged into the major
structures of demo_labels.json. Validation: the DICOM series of the upper abdomen with its mask, merged the same
way. The masks are TotalSegmentator predictions, so Dice against them is agreement with TotalSegmentator.

    python training/make_demo_dataset.py OUT_FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.io.sample_data import sample_paths

ANATOMICAL_STRUCTURE = ["SCT", "123037004", "Anatomical Structure"]


def merge_labels(source: np.ndarray, labels: list[dict]) -> np.ndarray:
    lookup = np.zeros(256, np.uint8)
    for label in labels:
        lookup[label["source"]] = label["value"]
    return lookup[source.astype(np.int64)]


def main(out: Path) -> None:
    spec = json.loads((Path(__file__).parent / "demo_labels.json").read_text())
    samples = sample_paths()
    cases = {"Tr": ("abdomen_000", samples["example_ct"], samples["example_seg"]),
             "Val": ("upper_abdomen_dicom_000", samples["example_ct_dicom"], samples["example_seg_dicom"])}
    for split, (name, image_path, label_path) in cases.items():
        image, labels = read_image(image_path), read_image(label_path)
        write_label_image(image.array, image, out / f"images{split}" / f"{name}_0000.nii.gz")
        write_label_image(merge_labels(labels.array, spec["labels"]), labels, out / f"labels{split}" / f"{name}.nii.gz")
    medseg_labels = [{k: v for k, v in label.items() if k != "source"} | {"category": ANATOMICAL_STRUCTURE}
                     for label in spec["labels"]]
    dataset = {
        "name": "AbdomenCTDemo", "description": spec["description"], "channel_names": {"0": "CT"},
        "labels": {"background": 0} | {label["name"]: label["value"] for label in spec["labels"]},
        "medseg_labels": medseg_labels, "numTraining": 1, "file_ending": ".nii.gz",
        "source": "TotalSegmentator 2.18.0 test files (Apache-2.0; Wasserthal et al., Radiology: AI 2023)",
    }
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_dataset"))
