"""Shared steps of importing a pretrained backbone (encoder weights only) into a new model file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from MedSegEfficientLib.model.card import LabelInfo, ModelCard
from MedSegEfficientLib.model.pth_import import load_state_dict_safely, strip_wrapper_prefix
from MedSegEfficientLib.model.weights import build_from_card, load_weights, save_model
from MedSegEfficientLib.training.datasets import PALETTE
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.networks.rope import rope_rotations


def placeholder_labels(classes: int) -> list[LabelInfo]:
    """Labels for a model whose decoder is still untrained: ``medseg train --init`` replaces them."""
    if classes < 2:
        raise MedSegError("--classes counts background: give at least 2")
    return [LabelInfo(value=v, name=f"class {v}", color=PALETTE[(v - 1) % len(PALETTE)]) for v in range(1, classes)]


def read_backbone(path: str | Path, wrapper: str | None = None) -> dict[str, torch.Tensor]:
    state = load_state_dict_safely(path, numpy_values=True)
    if wrapper and isinstance(state.get(wrapper), dict):
        state = state[wrapper]
    tensors = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[strip_wrapper_prefix(key)] = value
    if not tensors:
        raise MedSegError(f"{Path(path).name} holds no tensors")
    return tensors


def check_rope_buffer(key: str, stored: torch.Tensor) -> None:
    """Stored rotations must be the ones we compute for that grid: a file from another RoPE would not fit."""
    height, width, pairs, _ = stored.shape
    if not torch.allclose(stored.float(), rope_rotations(height, width, 2 * pairs), atol=1e-4):
        raise MedSegError(f"{key}: the stored RoPE rotations differ from 2D RoPE with base 10000")


def import_backbone(source: str | Path, output: str | Path, card: ModelCard, tensors: dict[str, torch.Tensor],
                    rename: Callable[[str], str | None], encoder_prefixes: tuple[str, ...],
                    derive: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], dict[str, torch.Tensor]]
                    | None = None) -> Path:
    """Load the renamed tensors into the card's freshly built network (the decoder keeps its initialisation, or
    takes what ``derive(loaded, own)`` gives it): every tensor must land with its shape, and every encoder tensor
    must be given."""
    name = Path(source).name
    network = build_from_card(card)
    own = network.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if key.endswith("rope.rotations"):
            check_rope_buffer(key, tensor)
            continue
        ours = rename(key)
        if ours is None:
            continue
        if ours not in own:
            raise MedSegError(f"{name}: {key} has no place in the network (as {ours})")
        if own[ours].shape != tensor.shape:
            raise MedSegError(f"{name}: {key} has shape {tuple(tensor.shape)}, the network wants {tuple(own[ours].shape)}")
        loaded[ours] = tensor
    missing = [key for key in own if key.startswith(encoder_prefixes) and key not in loaded
               and not key.endswith("num_batches_tracked")]  # a counter, not a weight
    if missing:
        raise MedSegError(f"{name}: {len(missing)} encoder tensors are missing (e.g. {missing[0]})")
    if derive is not None:
        loaded.update(derive(loaded, own))
    network.load_state_dict(loaded, strict=False)
    return save_model(output, card, network)


def save_whole_network(card: ModelCard, tensors: dict[str, torch.Tensor], source: str | Path,
                       output: str | Path) -> Path:
    """A whole network's renamed tensors into the card's network, every name and shape checked, then saved."""
    network = build_from_card(card)
    load_weights(network, tensors, Path(source).name)
    return save_model(output, card, network)


def apply_renames(key: str, rules: list) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key
