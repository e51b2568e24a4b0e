"""``medseg import``: other projects' released weights (a plain state dict, trained nnU-Net v2 models,
TotalSegmentator's multi-part tasks, the xLSTM-UNet authors' nnU-Net models, pretrained MLLA and HRMedSeg encoders) into model files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.hrmedseg_pfd import import_hrmedseg_pfd
from MedSegEfficientLib.importers.mlla_imagenet import import_mlla_imagenet
from MedSegEfficientLib.importers.mlla_unet import import_mlla_unet
from MedSegEfficientLib.importers.nnunet_v2 import import_nnunet
from MedSegEfficientLib.importers.tm_unet import import_tm_unet
from MedSegEfficientLib.importers.totalsegmentator import import_totalsegmentator
from MedSegEfficientLib.importers.xlstm_unet_nnunet import import_xlstm_unet_nnunet
from MedSegEfficientLib.io.outputs import refuse_inputs_as_outputs
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.pth_import import import_state_dict


def run(args: argparse.Namespace) -> int:
    # The checkpoint (or results folder) and the card are read, never written: -o may be neither.
    refuse_inputs_as_outputs([Path(args.source)] + ([Path(args.card)] if getattr(args, "card", None) else []),
                             [Path(args.output)])
    if args.format == "nnunet":
        output = import_nnunet(args.source, args.output, args.folds, args.checkpoint, args.name, not args.no_mirroring)
    elif args.format == "totalsegmentator":
        output = import_totalsegmentator(args.source, args.output, args.task, args.name)
    elif args.format == "xlstm-unet-nnunet":
        output = import_xlstm_unet_nnunet(args.source, args.output, args.folds, args.checkpoint, args.name,
                                          not args.no_mirroring)
    elif args.format == "mlla-imagenet":
        output = import_mlla_imagenet(args.source, args.output, args.classes, args.name, args.decoder_init)
    elif args.format == "hrmedseg-pfd":
        output = import_hrmedseg_pfd(args.source, args.output, args.classes, args.name)
    elif args.format == "tm-unet":
        output = import_tm_unet(args.source, args.output, args.name, args.size or 512)
    elif args.format == "mlla-unet":
        output = import_mlla_unet(args.source, args.output, args.name, args.in_channels, args.size or 224)
    else:
        if not args.card:
            raise MedSegError("import pth needs --card CARD.json describing the network")
        try:
            card = ModelCard.from_dict(json.loads(Path(args.card).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise MedSegError(f"cannot read the card {args.card}: {error}") from None
        output = import_state_dict(args.source, card, args.output)
    for note in read_card(output).training.get("import_notes", []):
        print(f"medseg: note: {note}", file=sys.stderr)
    print(f"wrote {output}")
    return 0
