"""``medseg models`` and ``medseg info``: the registered networks and model files, and what a network costs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.model.library import list_model_files
from MedSegEfficientLib.model.model_file import MODEL_SUFFIX, read_card
from MedSegEfficientLib.model.weights import build_from_card
from MedSegEfficientLib.networks import available_networks, build_network, get_network_spec
from MedSegEfficientLib.networks.cost import measure_cost, parse_shape


def add_parser(commands) -> None:
    models = commands.add_parser("models", help="list registered networks and shipped/imported model files")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=run_models)

    info = commands.add_parser("info", help="parameters and MACs of a network or model file")
    info.add_argument("target", help="registered network name or model file")
    info.add_argument("--preset")
    info.add_argument("--input", help="input shape, e.g. 1x1x96x96x96 (default: the model's patch size)")
    info.add_argument("--classes", type=int, default=2, help="output channels for a bare network name")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=run_info)


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
    for entry in files:
        if "error" in entry:
            print(f"  {entry['path']}: unreadable ({entry['error']})")
            continue
        dice = entry.get("validation_mean_dice")
        print(f"  {entry['name']:<22} {entry['network']} {entry['spatial_dims']}D, {len(entry['labels'])} labels, "
              f"validation mean Dice {dice if dice is not None else 'n/a'}\n    {entry['path']}")
    return 0


def run_info(args: argparse.Namespace) -> int:
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
    """Parameters and MACs of a registered network (``name``) or of a model file's network."""
    if target.endswith(MODEL_SUFFIX) or Path(target).is_file():
        card = read_card(target)
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
