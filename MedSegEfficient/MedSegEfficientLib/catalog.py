"""What is available: registered networks, model files on disk, and the cost of running them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import MODEL_SUFFIX, build_from_card, model_search_folders, read_card
from .errors import MedSegError
from .networks import available_networks, build_network, get_network_spec
from .profiling import measure_cost, parse_shape


def list_networks() -> list[dict[str, Any]]:
    return [{"name": spec.name, "spatial_dims": list(spec.spatial_dims), "presets": sorted(spec.presets),
             "default_preset": spec.default_preset, "description": spec.description}
            for spec in available_networks()]


def list_model_files() -> list[dict[str, Any]]:
    entries = []
    for folder in model_search_folders():
        for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
            entries.append(describe_model_file(path))
    return entries


def describe_model_file(path: Path) -> dict[str, Any]:
    try:
        card = read_card(path)
    except MedSegError as error:
        return {"path": str(path), "error": str(error)}
    return {
        "path": str(path), "name": path.stem, "title": card.name, "description": card.description,
        "network": card.network.name + (f":{card.network.preset}" if card.network.preset else ""),
        "spatial_dims": card.spatial_dims, "in_channels": card.in_channels, "modality": card.modality,
        "labels": [label.name for label in card.labels], "size_bytes": path.stat().st_size,
        "validation_dice": card.metrics.get("validation_dice"),
        "validation_mean_dice": card.metrics.get("validation_mean_dice"),
    }


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
