"""``medseg train``: arguments to a TrainConfig and a dataset description."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model on an nnU-Net/MSD folder or image/label pairs")
    train.add_argument("data", nargs="?", help="folder with dataset.json, imagesTr/, labelsTr/")
    train.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    train.add_argument("--pairs", nargs="+", metavar="IMAGE:LABEL", help="image/label pairs instead of a folder")
    train.add_argument("--network", default="monai_unet")
    train.add_argument("--preset")
    train.add_argument("--args", default="{}", help="network constructor arguments as JSON")
    train.add_argument("--dims", type=int, choices=[2, 3], default=3)
    train.add_argument("--patch-size", type=int, nargs="+")
    train.add_argument("--spacing", type=float, nargs="+", help="model spacing in mm (default: median of data)")
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--iterations-per-epoch", type=int, default=50)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--device", default="auto")
    train.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    train.add_argument("--init", help="start from this model file's weights")
    train.add_argument("--name", help="model name in the card")
    train.add_argument("--description", default="")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-minutes", type=float, help="stop after this many minutes, keeping the best model")
    train.add_argument("--half-weights", action="store_true",
                       help="store float16 weights (half the file); validation Dice is measured on them")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.training.datasets import describe_folder, describe_pairs
    from MedSegEfficientLib.training.trainer import TrainConfig, train

    if bool(args.data) == bool(args.pairs):
        raise MedSegError("give either a dataset folder or --pairs IMAGE:LABEL ...")
    if args.data:
        description = describe_folder(Path(args.data))
    else:
        pairs = [tuple(item.rsplit(":", 1)) for item in args.pairs]
        if any(len(pair) != 2 for pair in pairs):
            raise MedSegError("--pairs entries must look like image.nii.gz:label.nii.gz")
        description = describe_pairs(pairs)
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
    card = train(description, Path(args.output), config, show_progress=not args.quiet)
    dice = card.metrics.get("validation_mean_dice")
    print(f"wrote {args.output}" + (f" (validation mean Dice {dice})" if dice is not None else ""))
    return 0
