"""``medseg cases``: the user's corrected cases of a model (training/user_cases.py), added from files and listed."""

from __future__ import annotations

import argparse
import json

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.model.library import default_model_path, resolve_model_path
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.training.datasets import label_array
from MedSegEfficientLib.training.user_cases import add_case, cases_folder, stored_cases


def add(args: argparse.Namespace) -> int:
    from pathlib import Path

    model = resolve_model_path(args.model or default_model_path())
    card = read_card(model)
    image, labels = read_image(args.image), read_image(args.labels)
    if not labels.same_grid(image, tolerance=1e-3):
        raise MedSegError(f"{Path(args.labels).name} {labels.grid_shape} is not on {Path(args.image).name}'s grid "
                          f"{image.grid_shape}: a case's labels must cover its image voxel for voxel")
    folder = Path(args.cases) if args.cases else cases_folder(model, card)
    stored = add_case(image, label_array(labels.array, Path(args.labels)), card, folder,
                      name=args.name or Path(args.labels).name.split(".")[0], source=str(Path(args.image).resolve()))
    print(f"added case {stored.name} to {folder} ({len(stored_cases(folder))} case(s))")
    return 0


def list_cases(args: argparse.Namespace) -> int:
    from pathlib import Path

    model = resolve_model_path(args.model or default_model_path())
    folder = Path(args.cases) if args.cases else cases_folder(model, read_card(model))
    cases = stored_cases(folder, read_card(model))
    if args.json:
        print(json.dumps({"folder": str(folder), "cases": [{"name": c.name, "image": str(c.image),
                                                              "labels": str(c.labels)} for c in cases]}, indent=1))
    else:
        print(f"{folder}: {len(cases)} case(s)")
        for case in cases:
            print(f"  {case.name}")
    return 0
