"""``medseg evaluate``: per-label Dice of a model on an image against a reference label map."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from MedSegEfficientLib.inference.gpu.devices import select_device
from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.datasets import CasePaths, load_cases
from MedSegEfficientLib.training.validation import validate


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model or default_model_path())
    case = load_cases([CasePaths(Path(args.image), Path(args.reference))])
    scores = validate(model, case, select_device(args.device))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        for name, value in scores.items():
            print(f"{name:<24} {'absent' if value != value else f'{value:.4f}'}")
    return 0
