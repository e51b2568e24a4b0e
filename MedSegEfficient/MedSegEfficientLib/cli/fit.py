"""``medseg fit``: train from a prepared run, with the settings it was prepared with unless given here."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError

OVERRIDES = {"epochs": "epochs", "iterations_per_epoch": "iterations_per_epoch", "batch_size": "batch_size",
             "lr": "learning_rate", "max_minutes": "max_minutes", "workers": "workers", "seed": "seed",
             "weight_average": "weight_average", "init": "init"}


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.cli.train import report_written
    from MedSegEfficientLib.model.card import NetworkInfo
    from MedSegEfficientLib.training.prepared import load_prepared
    from MedSegEfficientLib.training.trainer import fit

    prepared = load_prepared(Path(args.prepared)).without(args.leave_out)
    if args.validate_on:
        prepared = prepared.validated_on(args.validate_on)
    changes = {field: getattr(args, flag) for flag, field in OVERRIDES.items() if getattr(args, flag) is not None}
    for flag in ("strong_augmentation", "contrast_enhancement"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    card = prepared.card
    if args.network:
        network, _, preset = args.network.partition(":")
        try:
            network_args = json.loads(args.args or "{}")
        except json.JSONDecodeError as error:
            raise MedSegError(f"--args is not valid JSON: {error}") from None
        card = dataclasses.replace(card, network=NetworkInfo(network, preset or None, network_args))
        changes.update(network=network, preset=preset or None, network_args=network_args)
    elif args.args:
        raise MedSegError("--args goes with --network")
    if args.name:
        card = dataclasses.replace(card, name=args.name)
        changes["name"] = args.name
    config = dataclasses.replace(prepared.config, device=args.device, **changes)
    config.check()
    command = args.command_line
    provenance = {**prepared.provenance, "fit_command": command, "training_items": prepared.item_names}
    card = fit(card, prepared.items, prepared.validation, Path(args.output), config,
               show_progress=not args.quiet, provenance=provenance)
    return report_written(args, card)
