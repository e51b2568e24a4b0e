"""``medseg evaluate``: per-label Dice of a model on an image against a reference label map.

Labels are matched by number, or by name: from a ``.seg.nrrd`` reference's segment names, or from ``--label-map``
(``liver=5,spleen=1`` or a JSON object of name to number). A reference that shares no number with the model is
said in a warning, since every Dice would then be 0 or absent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.gpu.devices import select_device
from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.datasets import CasePaths, load_cases
from MedSegEfficientLib.training.validation import validate


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model or default_model_path())
    case = load_cases([CasePaths(Path(args.image), Path(args.reference))])
    mapping = reference_numbers(model.card.labels, Path(args.reference), args.label_map)
    present = set(np.unique(case[0].labels.array).tolist())
    wanted = set(mapping.values()) if mapping else {label.value for label in model.card.labels}
    found = present - {0}
    if not wanted & present:
        print("medseg: warning: no label number of the model is in the reference "
              f"(it has {sorted(found)[:12]}); match them with --label-map NAME=NUMBER,...", file=sys.stderr)
    elif mapping is None and len(found) > 2 * len(model.card.labels):
        print(f"medseg: warning: the reference has {len(found)} label numbers and the model "
              f"{len(model.card.labels)}: if they are numbered otherwise, give --label-map NAME=NUMBER,...",
              file=sys.stderr)
    scores = validate(model, case, select_device(args.device), mapping)
    scored = [value for value in scores.values() if not math.isnan(value)]
    mean = sum(scored) / len(scored) if scored else math.nan
    if args.json:
        absent_as_null = {name: None if math.isnan(value) else value for name, value in scores.items()}
        print(json.dumps({"dice": absent_as_null, "mean_dice": None if math.isnan(mean) else mean,
                          "labels_scored": len(scored)}, indent=2))
    else:
        for name, value in scores.items():
            print(f"{name:<24} {'absent' if math.isnan(value) else f'{value:.4f}'}")
        print(f"{'mean':<24} {'n/a' if math.isnan(mean) else f'{mean:.4f}'} ({len(scored)} labels present)")
    return 0


def reference_numbers(labels: list[LabelInfo], reference: Path, label_map: str | None) -> dict[int, int] | None:
    """The reference's number for each model label value, or None where the numbers are the model's own."""
    if label_map:
        by_name = _parse_label_map(label_map)
    elif reference.name.lower().endswith(".seg.nrrd"):
        by_name = _segment_numbers(reference)
    else:
        return None
    known = {label.name.lower(): label.value for label in labels}
    unknown = sorted(set(by_name) - set(known))
    if label_map and unknown:
        raise MedSegError(f"--label-map names {', '.join(unknown)}, which the model does not have "
                          f"(it has {', '.join(label.name for label in labels)})")
    return {known[name]: number for name, number in by_name.items() if name in known}


def _parse_label_map(text: str) -> dict[str, int]:
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        raw = json.loads(source) if source.strip().startswith("{") else dict(
            item.rsplit("=", 1) for item in source.split(",") if item.strip())
        return {str(name).strip().lower(): int(number) for name, number in raw.items()}
    except (ValueError, TypeError) as error:
        raise MedSegError(f"--label-map: give NAME=NUMBER,... or a JSON object of names to numbers ({error})") from None


def _segment_numbers(path: Path) -> dict[str, int]:
    """Segment names and label values from a Slicer .seg.nrrd header."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    keys = set(reader.GetMetaDataKeys())
    numbers = {}
    for index in range(1000):
        name_key, value_key = f"Segment{index}_Name", f"Segment{index}_LabelValue"
        if name_key not in keys:
            break
        numbers[reader.GetMetaData(name_key).strip().lower()] = int(reader.GetMetaData(value_key))
    return numbers
