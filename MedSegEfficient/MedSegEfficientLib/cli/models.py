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
