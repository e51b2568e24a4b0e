"""``medseg train``: arguments to a TrainConfig and a dataset description."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.training.datasets import describe_folder, describe_pairs
    from MedSegEfficientLib.training.trainer import train

    if bool(args.data) == bool(args.pairs):
        raise MedSegError("give either a dataset folder or --pairs IMAGE:LABEL ...")
    config = training_config(args, strong_by_default=False)
    config.check()  # every setting, before any data is read
    if args.data:
        description = describe_folder(Path(args.data))
    else:
        description = describe_pairs(parse_pairs(args.pairs, "--pairs"))
    card = train(description, Path(args.output), config, show_progress=not args.quiet, prepare_only=args.prepare_only)
    return report_written(args, card)

def training_config(args: argparse.Namespace, strong_by_default: bool):
    """The shared training settings (arguments.add_training_options); ``--network NAME:PRESET`` names both."""
    from MedSegEfficientLib.training.trainer import TrainConfig

    try:
        network_args = json.loads(args.args)
    except json.JSONDecodeError as error:
        raise MedSegError(f"--args is not valid JSON: {error}") from None
    network, _, preset = args.network.partition(":")
    if preset and args.preset and preset != args.preset:
        raise MedSegError(f"--network {args.network} and --preset {args.preset} name different presets")
    strong = strong_by_default if args.strong_augmentation is None else args.strong_augmentation
    return TrainConfig(
        network=network, preset=preset or args.preset, network_args=network_args, spatial_dims=args.dims,
        patch_size=args.patch_size, spacing=args.spacing, epochs=args.epochs,
        iterations_per_epoch=args.iterations_per_epoch, batch_size=args.batch_size, learning_rate=args.lr,
        device=args.device, seed=args.seed, init=args.init, name=args.name, description=args.description,
        workers=args.workers, max_minutes=args.max_minutes, half_weights=args.half_weights,
        weight_average=args.weight_average,
        strong_augmentation=strong, contrast_enhancement=args.contrast_enhancement, command=args.command_line,
    )


def parse_pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    """``IMAGE:OTHER`` entries (the last colon splits, so that Windows drive letters survive)."""
    pairs = [tuple(item.rsplit(":", 1)) for item in items]
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        raise MedSegError(f"{flag} entries must look like image.nii.gz:other.nii.gz")
    return pairs


def report_written(args: argparse.Namespace, card) -> int:
    if getattr(args, "prepare_only", False):
        print(f"wrote the prepared run {args.output}: train it with medseg fit")
        return 0
    dice = card.metrics.get("validation_mean_dice")
    print(f"wrote {args.output}" + (f" (validation mean Dice {dice})" if dice is not None else ""))
    return 0
