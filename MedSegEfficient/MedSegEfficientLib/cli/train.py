"""``medseg train``: arguments to a TrainConfig and a dataset description."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.training.datasets import describe_folder, describe_pairs
    from MedSegEfficientLib.training.trainer import TrainConfig, train

    if bool(args.data) == bool(args.pairs):
        raise MedSegError("give either a dataset folder or --pairs IMAGE:LABEL ...")
    try:
        network_args = json.loads(args.args)
    except json.JSONDecodeError as error:
        raise MedSegError(f"--args is not valid JSON: {error}") from None
    config = TrainConfig(
        network=args.network, preset=args.preset, network_args=network_args, spatial_dims=args.dims,
        patch_size=args.patch_size, spacing=args.spacing, epochs=args.epochs,
        iterations_per_epoch=args.iterations_per_epoch, batch_size=args.batch_size, learning_rate=args.lr,
        device=args.device, seed=args.seed, init=args.init, name=args.name, description=args.description,
        workers=args.workers, max_minutes=args.max_minutes, half_weights=args.half_weights,
        command="medseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    config.check()  # every setting, before any data is read
    if args.data:
        description = describe_folder(Path(args.data))
    else:
        pairs = [tuple(item.rsplit(":", 1)) for item in args.pairs]
        if any(len(pair) != 2 for pair in pairs):
            raise MedSegError("--pairs entries must look like image.nii.gz:label.nii.gz")
        description = describe_pairs(pairs)
    card = train(description, Path(args.output), config, show_progress=not args.quiet)
    dice = card.metrics.get("validation_mean_dice")
    print(f"wrote {args.output}" + (f" (validation mean Dice {dice})" if dice is not None else ""))
    return 0
