"""``medseg models`` and ``medseg info``: the registered networks and model files, and what a network costs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from MedSegEfficientLib.errors import MedSegError, ModelFileError
from MedSegEfficientLib.model.library import list_model_files, resolve_model_path
from MedSegEfficientLib.model.model_file import MODEL_SUFFIX, read_card
from MedSegEfficientLib.model.weights import build_from_card
from MedSegEfficientLib.networks import available_networks, build_network, get_network_spec
from MedSegEfficientLib.networks.cost import measure_cost, parse_shape


def run_models(args: argparse.Namespace) -> int:
    networks, files = list_networks(), list_model_files()
    if args.json:
        print(json.dumps({"networks": networks, "models": files}, indent=2))
        return 0
    print("Networks:")
    for net in networks:
        presets = ", ".join(net["presets"]) or "-"
        print(f"  {net['name']:<18} {'/'.join(f'{d}D' for d in net['spatial_dims']):<6} presets: {presets}")
    print("Model files:")
    width = max((len(entry["name"]) for entry in files if "error" not in entry), default=0)
    for entry in files:
        if "error" in entry:
            print(f"  {entry['path']}: unreadable ({entry['error']})")
            continue
        dice = entry.get("validation_mean_dice")
        count = len(entry["labels"])
        print(f"  {entry['name']:<{width}}  {entry['network']} {entry['spatial_dims']}D, {count} "
              f"label{'' if count == 1 else 's'}, validation mean Dice {f'{dice:.3f}' if dice is not None else 'n/a'}"
              f"{_measured_on(entry)}\n    {entry['path']}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    if not args.json:  # building the network and counting its MACs takes seconds: the wait is said first
        print(f"medseg info: building {args.target} and counting its operations...", file=sys.stderr, flush=True)
    report = describe_cost(args.target, preset=args.preset, input_shape=args.input, classes=args.classes)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['network']} ({report['preset'] or 'no preset'}): {report['parameters'] / 1e6:.3f} M parameters, "
              f"{report['macs'] / 1e9:.3f} GMACs at input {'x'.join(map(str, report['input_shape']))}")
    return 0


def list_networks() -> list[dict[str, Any]]:
    return [{"name": spec.name, "spatial_dims": list(spec.spatial_dims), "presets": sorted(spec.presets),
             "default_preset": spec.default_preset, "description": spec.description}
            for spec in available_networks()]


def describe_cost(target: str, preset: str | None = None, input_shape: str | None = None,
                  classes: int = 2) -> dict[str, Any]:
    """Parameters and MACs of a registered network (``name``), or of the network of a model file given by path or
    by the name of a shipped or imported model."""
    model_file = _model_file(target)
    if model_file is not None:
        card = read_card(model_file)
        network, name, preset = build_from_card(card), card.network.name, card.network.preset
        default_spatial = card.patch_size or [256] * card.spatial_dims
        shape = parse_shape(input_shape) if input_shape else (1, card.in_channels, *default_spatial)
    else:
        spec = get_network_spec(target)
        shape = parse_shape(input_shape) if input_shape else (1, 1, *([96] * max(spec.spatial_dims)))
        name, preset = target, preset or spec.default_preset
        network = build_network(target, len(shape) - 2, shape[1], classes, preset=preset)
    try:
        cost = measure_cost(network, shape)
    except (RuntimeError, ValueError) as error:
        raise MedSegError(f"{name} cannot run on input {shape}: {str(error).splitlines()[0]}") from None
    return {"network": name, "preset": preset, "parameters": cost.parameters, "macs": cost.macs,
            "input_shape": list(cost.input_shape)}


def _model_file(target: str) -> Path | None:
    """The model file ``target`` names, or None for a registered network's name."""
    if target.endswith(MODEL_SUFFIX) or Path(target).is_file():
        return Path(target)
    if target in {spec.name for spec in available_networks()}:
        return None
    try:
        return resolve_model_path(target)
    except ModelFileError:
        return None  # neither: the registry's "unknown network" lists what is registered


def _measured_on(entry: dict) -> str:
    cases = entry.get("validation_cases") or []
    return f" on {', '.join(cases)}" if cases else ""
