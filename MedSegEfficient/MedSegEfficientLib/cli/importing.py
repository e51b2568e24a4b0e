"""``medseg import``: other projects' released weights (a plain state dict, the xLSTM-UNet authors' nnU-Net models,
pretrained MLLA and HRMedSeg encoders) into model files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.hrmedseg_pfd import import_hrmedseg_pfd
from MedSegEfficientLib.importers.mlla_imagenet import import_mlla_imagenet
from MedSegEfficientLib.importers.xlstm_unet_nnunet import import_xlstm_unet_nnunet
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.pth_import import import_state_dict


def add_parser(commands) -> None:
    importer = commands.add_parser("import", help="import weights into a model file",
                                   description="pth: a plain PyTorch state dict described by --card; "
                                               "xlstm-unet-nnunet: an nnU-Net v2 trained model folder of the "
                                               "xLSTM-UNet authors (plans.json, dataset.json, fold_*/checkpoint); "
                                               "mlla-imagenet / hrmedseg-pfd: pretrained encoder weights into a "
                                               "new MLLA-UNet / HRMedSeg model to train with medseg train --init")
    importer.add_argument("format", choices=["pth", "xlstm-unet-nnunet", "mlla-imagenet", "hrmedseg-pfd"])
    importer.add_argument("source", help="the .pth file, or the trained model folder")
    importer.add_argument("--card", help="pth: model card JSON describing the network")
    importer.add_argument("--fold", help="nnU-Net: which fold_* to take (default: the only one)")
    importer.add_argument("--checkpoint", help="nnU-Net: checkpoint file name (default: checkpoint_final.pth)")
    importer.add_argument("--name", help="model name shown in pickers (default: from the source)")
    importer.add_argument("--classes", type=int, default=2, help="encoder imports: output classes with background")
    importer.add_argument("-o", "--output", required=True)
    importer.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "xlstm-unet-nnunet":
        output = import_xlstm_unet_nnunet(args.source, args.output, args.fold, args.checkpoint, args.name)
    elif args.format == "mlla-imagenet":
        output = import_mlla_imagenet(args.source, args.output, args.classes, args.name)
    elif args.format == "hrmedseg-pfd":
        output = import_hrmedseg_pfd(args.source, args.output, args.classes, args.name)
    else:
        if not args.card:
            raise MedSegError("import pth needs --card CARD.json describing the network")
        try:
            card = ModelCard.from_dict(json.loads(Path(args.card).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise MedSegError(f"cannot read the card {args.card}: {error}") from None
        output = import_state_dict(args.source, card, args.output)
    print(f"wrote {output}")
    return 0
