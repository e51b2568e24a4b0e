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


MAX_LABEL_NUMBER = 2**31 - 1


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model or default_model_path())
    case = load_cases([CasePaths(Path(args.image), Path(args.reference))])
    mapping = reference_numbers(model.card.labels, Path(args.reference), args.label_map)
    present = set(np.unique(case[0].labels.array).tolist())
    wanted = {number for numbers in mapping.values() for number in numbers} if mapping else \
        {label.value for label in model.card.labels}
    found = present - {0}
    if not wanted & present:
        print("medseg: warning: no label number of the model is in the reference "
              f"(it has {sorted(found)[:12]}); match them with --label-map NAME=NUMBER,...", file=sys.stderr)
    elif mapping is None and len(found) > 2 * len(model.card.labels):
        print(f"medseg: warning: the reference has {len(found)} label numbers and the model "
              f"{len(model.card.labels)}: if they are numbered otherwise, give --label-map NAME=NUMBER,...",
              file=sys.stderr)
    scores = validate(model, case, select_device(args.device), mapping)
    # A label the mapping does not name has no reference number: not scored, which is not the same as absent.
    unmatched = [] if mapping is None else [label.name for label in model.card.labels if label.value not in mapping]
    why = "not in --label-map" if args.label_map else "not a segment of the reference"
    scored = [value for name, value in scores.items() if not math.isnan(value) and name not in unmatched]
    mean = sum(scored) / len(scored) if scored else math.nan
    if args.json:
        dice = {name: None if math.isnan(value) or name in unmatched else value for name, value in scores.items()}
        print(json.dumps({"dice": dice, "mean_dice": None if math.isnan(mean) else mean,
                          "labels_scored": len(scored), "labels_not_matched": unmatched}, indent=2))
    else:
        for name, value in scores.items():
            shown = why if name in unmatched else "absent" if math.isnan(value) else f"{value:.4f}"
            print(f"{name:<24} {shown}")
        note = f"; {len(unmatched)} {why}" if unmatched else ""
        print(f"{'mean':<24} {'n/a' if math.isnan(mean) else f'{mean:.4f}'} ({_count(len(scored), 'label')} "
              f"scored{note})")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def reference_numbers(labels: list[LabelInfo], reference: Path,
                      label_map: str | None) -> dict[int, tuple[int, ...]] | None:
    """The reference's numbers for each model label value it names, or None where the numbers are the model's."""
    if label_map:
        by_name = _parse_label_map(label_map)
    elif reference.name.lower().endswith(".seg.nrrd"):
        by_name = {name: (number,) for name, number in _segment_numbers(reference).items()}
    else:
        return None
    known = {label.name.lower(): label.value for label in labels}
    unknown = sorted(set(by_name) - set(known))
    if label_map and unknown:
        raise MedSegError(f"--label-map names {', '.join(unknown)}, which the model does not have "
                          f"(it has {', '.join(label.name for label in labels)})")
    claimed: dict[int, str] = {}
    for name, numbers in by_name.items():
        for number in numbers:
            if number in claimed and claimed[number] != name:
                raise MedSegError(f"--label-map gives reference number {number} to both {claimed[number]} and {name}")
            claimed[number] = name
    return {known[name]: numbers for name, numbers in by_name.items() if name in known}


def _parse_label_map(text: str) -> dict[str, tuple[int, ...]]:
    """``liver=5,vertebrae=13+14+15`` or a JSON object (a file or inline) of names to a number or a list of them,
    or a label merge file (``training/demo_labels.json``: ``labels`` with each ``name`` and its ``source`` numbers)."""
    source = Path(text).read_text() if Path(text).is_file() else text
    usage = "--label-map: give NAME=NUMBER,... (NAME=N1+N2 for several numbers) or a JSON object of names to numbers"
    try:
        if source.strip().startswith("{"):
            raw = json.loads(source)
        else:
            raw = {}
            for item in filter(str.strip, source.split(",")):
                name, numbers = item.rsplit("=", 1)
                raw[name] = [number.strip() for number in numbers.split("+")]
    except (ValueError, RecursionError):
        raise MedSegError(usage) from None
    if isinstance(raw, dict) and isinstance(raw.get("labels"), list):  # a merge file: [{name, source: [...]}]
        raw = {entry.get("name"): entry.get("source") for entry in raw["labels"] if isinstance(entry, dict)}
    if not isinstance(raw, dict) or not raw:
        raise MedSegError(usage)
    return {str(name).strip().lower(): _label_numbers(str(name).strip(), value) for name, value in raw.items()}


def _label_numbers(name: str, value) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    numbers = []
    for item in values:
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_LABEL_NUMBER:
            raise MedSegError(f"--label-map {name}={text[:20]}: a reference label number is a whole number from 1 to "
                              f"{MAX_LABEL_NUMBER} (0 is the background)")
        numbers.append(int(text))
    if not numbers:
        raise MedSegError(f"--label-map {name}: no number given")
    return tuple(numbers)


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
