"""``medseg tune``: a model's clean-up and test-time mirroring chosen on labelled validation scans, each option
kept only where it raises the Dice there, written into a new model file with the figures in its card."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.gpu.devices import select_device
from MedSegEfficientLib.io.outputs import check_writable
from MedSegEfficientLib.model.library import resolve_model_path
from MedSegEfficientLib.model.weights import load_model, save_model
from MedSegEfficientLib.training.datasets import describe_folder, load_cases
from MedSegEfficientLib.training.postprocessing_choice import choose_postprocessing, mean_dice
from MedSegEfficientLib.training.validation import dice_for_card, validation_metrics

NOTE = ("chosen on these validation scans and scored on them: with few scans the 'after' figures are optimistic "
        "by the choice itself")


def run(args: argparse.Namespace) -> int:
    source = resolve_model_path(args.model)
    output = Path(args.output)
    check_writable(output)
    dataset = describe_folder(Path(args.data), need_training=False)
    if not dataset.validation:
        raise MedSegError(f"{args.data} has no validation cases (imagesVal/labelsVal or dataset.json 'validation')")
    model = load_model(source)
    cases = load_cases(dataset.validation)
    say = (lambda line: None) if args.quiet else (lambda line: print(f"medseg tune: {line}", file=sys.stderr))
    device = select_device(args.device)
    choice = choose_postprocessing(model, cases, device, say=say)
    metrics = {**choice.card.metrics, **validation_metrics(choice.after, cases),
               "postprocessing_choice": {
                   "before": dice_for_card(choice.before),
                   "seconds_per_scan": {name: round(v, 3) for name, v in choice.seconds.items()},
                   "tried": choice.tried, "device": device.type, "date": time.strftime("%Y-%m-%d"), "note": NOTE}}
    training = {**choice.card.training, "tune_command": args.command_line}
    if "tune_command" in choice.card.training:  # a model tuned again keeps the record of how it was tuned before
        training["earlier_tune_commands"] = [*choice.card.training.get("earlier_tune_commands", []),
                                             choice.card.training["tune_command"]]
    card = dataclasses.replace(choice.card, metrics=metrics, training=training)
    save_model(output, card, model.network, half=_stored_in_half(source))
    rules = ", ".join(f"{name}: {'largest piece' if rule.largest_component else f'islands < {rule.min_island_mm3:g} mm3'}"
                      for name, rule in card.postprocessing.items()) or "no clean-up"
    print(f"{output}: {rules}; mirroring {card.mirroring or 'none'}; validation mean Dice "
          f"{mean_dice(choice.before):.4f} -> {mean_dice(choice.after):.4f} ({NOTE})")
    return 0


def _stored_in_half(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return any(handle.get_slice(name).get_dtype() == "F16" for name in handle.keys())

