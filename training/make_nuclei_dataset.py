"""Build the 2D nuclei training folder (nnU-Net / MSD layout) from stardist's real fluorescence image.

stardist 0.9.2 (BSD-3) ships img2d.tif, 512 x 512 nuclei from the 2018 Data Science Bowl, with an instance mask.
Its left 60 % (columns 0..306) trains; the right 40 % validates and is never trained on. Instances become one
"nucleus" label.

    python training/make_nuclei_dataset.py OUT_FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.io.sample_data import sample_paths
from MedSegEfficientLib.volume import Volume

SPLIT_COLUMN = 307  # of 512: left 60 % trains, right 40 % validates
LABELS = [{"value": 1, "name": "nucleus", "color": [95, 176, 224],
           "category": ["SCT", "91723000", "Anatomical Structure"], "type": ["SCT", "84640000", "Cell nucleus"]}]


def columns(volume: Volume, start: int, stop: int) -> Volume:
    """Columns (array axis 2, image x) start..stop of a one-slice volume, its origin moved with them."""
    origin = np.asarray(volume.origin) + volume.direction[:, 0] * volume.spacing[0] * start
    return Volume(np.ascontiguousarray(volume.array[:, :, start:stop]), volume.spacing, tuple(origin),
                  volume.direction)


def main(out: Path) -> None:
    samples = sample_paths()
    image, instances = read_image(samples["nuclei_2d"]), read_image(samples["nuclei_2d_mask"])
    nuclei = instances.with_array((instances.array > 0).astype(np.uint8))
    width = image.array.shape[2]
    for split, name, (start, stop) in (("Tr", "nuclei_left", (0, SPLIT_COLUMN)),
                                       ("Val", "nuclei_right", (SPLIT_COLUMN, width))):
        part = columns(image, start, stop)
        write_label_image(part.array, part, out / f"images{split}" / f"{name}_0000.nii.gz")
        labels = columns(nuclei, start, stop)
        write_label_image(labels.array, labels, out / f"labels{split}" / f"{name}.nii.gz")
    dataset = {
        "name": "NucleiFluorescence2D", "channel_names": {"0": "fluorescence microscopy"},
        "labels": {"background": 0, "nucleus": 1}, "medseg_labels": LABELS, "numTraining": 1,
        "file_ending": ".nii.gz",
        "source": "stardist 0.9.2 img2d.tif / mask2d.tif (BSD-3; 2018 Data Science Bowl, Caicedo et al., "
                  "Nature Methods 2019)",
    }
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "nuclei_dataset"))
