"""Where a model puts each reference structure of the validation scans: for every label, the share of its
reference voxels that the model calls each of its labels (or background). experiments/distillation-log.md uses it to see
what a missed spleen became. With ``--per-slice``, also the share found on each slice of the scan's array (its
first axis), which shows where a structure is lost along the scan.

    python experiments/training/held_out_confusion.py MODEL --data DATASET_FOLDER [--labels spleen liver] [--per-slice]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.model.library import resolve_model_path
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.datasets import describe_folder, load_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True, help="dataset folder whose validation cases are scored")
    parser.add_argument("--labels", nargs="+", help="label names to report (default: all)")
    parser.add_argument("--per-slice", action="store_true", help="also the share found on each slice")
    args = parser.parse_args()
    model = load_model(resolve_model_path(args.model))
    names = {0: "background", **{label.value: label.name for label in model.card.labels}}
    wanted = [value for value, name in names.items() if value and (not args.labels or name in args.labels)]
    segmenter = Segmenter(model, SegmentOptions(device="cpu"))
    for case in load_cases(describe_folder(Path(args.data), need_training=False).validation):
        found = segmenter.segment(case.image).labels
        for value in wanted:
            inside = found[case.labels.array == value]
            if not inside.size:
                print(f"{case.name} {names[value]}: not in the reference")
                continue
            values, counts = np.unique(inside, return_counts=True)
            shares = ", ".join(f"{names.get(int(v), str(int(v)))} {c / inside.size:.1%}"
                               for v, c in sorted(zip(values, counts), key=lambda pair: -pair[1]))
            print(f"{case.name} {names[value]} ({inside.size} voxels): {shares}")
            if args.per_slice:
                reference = case.labels.array == value
                recall = [f"{z}: {np.mean(found[z][reference[z]] == value):.2f}"
                          for z in range(reference.shape[0]) if reference[z].any()]
                print(f"  found per slice: {', '.join(recall)}")


if __name__ == "__main__":
    main()
