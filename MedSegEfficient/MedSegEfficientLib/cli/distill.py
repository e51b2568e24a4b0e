"""``medseg distill``: teachers, images and settings to a DistillSources, then the student trained."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.cli.train import parse_pairs, report_written, training_config
    from MedSegEfficientLib.model.library import resolve_model_path
    from MedSegEfficientLib.training.datasets import CasePaths, describe_folder
    from MedSegEfficientLib.training.distillation import DistillOptions, DistillSources, distill

    config = training_config(args, strong_by_default=True)
    config.check()
    options = DistillOptions(args.label_weight, args.licence, args.teacher_description)
    options.check()
    sources = DistillSources(
        teachers=[resolve_model_path(teacher) for teacher in args.teachers],
        images=image_files(args.images),
        soft_maps=[(Path(image), Path(probabilities)) for image, probabilities in
                   parse_pairs(args.soft_targets, "--soft-targets")],
        validation=[CasePaths(Path(image), Path(label)) for image, label in parse_pairs(args.validation, "--validation")],
        labels=_labels(args.labels) if args.labels else None, modality=args.modality)
    if args.data:
        dataset = describe_folder(Path(args.data))
        sources.labelled, sources.validation = dataset.training, sources.validation + dataset.validation
        sources.modality = sources.modality or dataset.modality
    card = distill(sources, Path(args.output), config, options, show_progress=not args.quiet,
                   prepare_only=args.prepare_only)
    return report_written(args, card)

def image_files(entries: list[str]) -> list[Path]:
    """Files as they are; a folder gives its image files, or is a DICOM series itself where it has none."""
    from MedSegEfficientLib.training.datasets import IMAGE_SUFFIXES

    found: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if not path.exists():
            raise MedSegError(f"{path} does not exist")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(IMAGE_SUFFIXES))
            found.extend(files or [path])
        else:
            found.append(path)
    return found


def _labels(path: str):
    from MedSegEfficientLib.training.datasets import parse_labels

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MedSegError(f"--labels {path}: {error}") from None
    return parse_labels({"medseg_labels": data} if isinstance(data, list) else data)
