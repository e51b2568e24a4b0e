"""The weights of a model file: build the card's network, save it with its card, load it back checked.

Every tensor name and shape must match the network in the card; a file cannot make the loader build anything
else. Reading the card alone is ``model_file.read_card``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from MedSegEfficientLib.errors import MedSegError, ModelFileError
from MedSegEfficientLib.files import write_atomically
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.library import resolve_model_path
from MedSegEfficientLib.model.model_file import CARD_METADATA_KEY, read_card
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.fold_average import FoldAverage
from MedSegEfficientLib.networks.multi_part import MultiPartNetwork


@dataclass
class LoadedModel:
    card: ModelCard
    network: nn.Module
    path: Path | None = None


def build_from_card(card: ModelCard) -> nn.Module:
    """The card's network; with ``folds`` in its arguments, that many copies averaged (networks/fold_average.py);
    a multi-part card's part networks together (networks/multi_part.py)."""
    if card.parts:
        return MultiPartNetwork(build_from_card(part) for part in card.parts)
    args = dict(card.network.args)
    folds = args.pop("folds", 1)

    def build() -> nn.Module:
        return build_network(card.network.name, card.spatial_dims, card.in_channels, card.out_channels,
                             preset=card.network.preset, args=args)

    if folds == 1:
        return build()
    try:
        return FoldAverage(build, folds)
    except ValueError as error:
        raise ModelFileError(f"network '{card.network.name}': {error}") from None


def save_model(path: str | os.PathLike, card: ModelCard, network: nn.Module, half: bool = False) -> Path:
    """Write atomically: a crash mid-write never leaves a half model file under the final name.

    ``half`` stores floating-point weights as float16 (half the file); loading casts them back to the network's
    float32, so a half file runs exactly like a float32 one rounded to float16 (``round_to_half``).
    """
    from safetensors.torch import save_file

    ModelCard.from_dict(card.to_dict())  # the card is checked before anything is written: a bad one keeps the old file
    tensors = {name: _stored(tensor, half) for name, tensor in _without_aliases(network).items()}
    metadata = {CARD_METADATA_KEY: json.dumps(card.to_dict())}
    return write_atomically(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def _without_aliases(network: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tensor once: a module reachable by two paths (nnU-Net's decoder holds its encoder)
    lists its tensors under both names, which safetensors refuses to store twice; loading fills the aliases."""
    seen: set[int] = set()
    unique = {}
    for name, tensor in network.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            unique[name] = tensor
    return unique


def _aliases(network: nn.Module) -> dict[str, set[str]]:
    """Each state-dict name with the other names of the same tensor."""
    groups: dict[int, set[str]] = {}
    state = network.state_dict(keep_vars=True)
    for name, tensor in state.items():
        groups.setdefault(id(tensor), set()).add(name)
    return {name: groups[id(tensor)] - {name} for name, tensor in state.items()}


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return (tensor.half() if half and tensor.is_floating_point() else tensor).contiguous()


def round_to_half(network: nn.Module) -> nn.Module:
    """A copy of the network whose weights went through float16, as a half model file stores them."""
    import copy

    rounded = copy.deepcopy(network)
    with torch.no_grad():
        for tensor in rounded.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())
    return rounded


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    from safetensors.torch import load_file

    path = resolve_model_path(path)
    card = read_card(path)
    try:
        tensors = load_file(str(path), device="cpu")  # read on the host: a device problem is not the file's
    except Exception as error:
        raise ModelFileError(f"{path.name}: the weights cannot be read (truncated or corrupt?): {error}") from None
    network = build_from_card(card)
    load_weights(network, tensors, path.name)
    try:
        network = network.eval().to(device)
    except (RuntimeError, AssertionError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MedSegError(f"device '{device}' is not available here: {detail}") from None
    return LoadedModel(card=card, network=network, path=path)


def load_weights(network: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Every tensor into the network, checked: names, shapes, a floating type where the network has one (load_state_dict
    would cast integers silently), and finite values (NaN weights give an empty result, not an error)."""
    expected = network.state_dict()
    for name, tensor in tensors.items():
        wanted = expected.get(name)
        if wanted is None or not wanted.is_floating_point():
            continue
        if not tensor.is_floating_point():
            raise ModelFileError(f"{source}: weight {name} is {str(tensor.dtype).replace('torch.', '')}; the network "
                                 "needs floating-point weights")
        if not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{source}: weight {name} holds NaN or infinite values")
    aliases = _aliases(network)
    for name, others in aliases.items():  # two names of one tensor must bring one value
        for other in others & set(tensors):
            if name in tensors and not torch.equal(tensors[name], tensors[other]):
                raise ModelFileError(f"{source}: weights {name} and {other} name one tensor of the network but differ")
    try:
        result = network.load_state_dict(dict(tensors), strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = str(error).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{source}: weights do not match the network in the card: {detail}") from None
    missing = [key for key in result.missing_keys if not aliases.get(key, set()) & set(tensors)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise ModelFileError(f"{source}: weights do not match the network in the card: " + ", ".join(problems))


__all__ = ["LoadedModel", "build_from_card", "load_model", "load_weights", "round_to_half", "save_model"]
