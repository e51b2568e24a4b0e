"""``medseg finetune``: a model improved on the user's corrected cases, kept only if it is not worse on the cases
held out (training/finetune.py). Exit code 3 when the fine-tuned model was discarded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from MedSegEfficientLib.cli.progress import ProgressBar

EXIT_DISCARDED = 3


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.training.finetune import FinetuneSettings, finetune

    settings = FinetuneSettings(minutes=args.minutes, epochs=args.epochs, learning_rate=args.lr, device=args.device,
                                seed=args.seed, command=args.command_line,
                                base_data=Path(args.base_data) if args.base_data else None)
    with ProgressBar(not args.quiet) as bar:
        outcome = finetune(args.model, Path(args.output) if args.output else None,
                           Path(args.cases) if args.cases else None, settings, bar.update,
                           log=lambda line: print(f"medseg: {line}", file=sys.stderr))
    for note in outcome.notes:
        print(f"medseg: note: {note}", file=sys.stderr)
    print(outcome.summary())
    return 0 if outcome.kept else EXIT_DISCARDED
