"""The self-describing model file: safetensors weights with the model card as JSON in its metadata.

Nothing is ever unpickled. A plain PyTorch state dict (.pth) is imported with ``torch.load(weights_only=True)``,
which refuses any pickled Python object beyond tensors and containers.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from .card import ModelCard
from .errors import MedSegError, ModelFileError
from .networks import build_network

CARD_METADATA_KEY = "medseg_card"
MODEL_SUFFIX = ".safetensors"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass
class LoadedModel:
    card: ModelCard
    network: nn.Module
    path: Path | None = None

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.network.parameters())


def build_from_card(card: ModelCard) -> nn.Module:
    return build_network(card.network.name, card.spatial_dims, card.in_channels, card.out_channels,
                         preset=card.network.preset, args=card.network.args)


def save_model(path: str | os.PathLike, card: ModelCard, network: nn.Module, half: bool = False) -> Path:
    """Write atomically: a crash mid-write never leaves a half model file under the final name.

    ``half`` stores floating-point weights as float16 (half the file); loading casts them back to the network's
    float32, so a half file runs exactly like a float32 one rounded to float16 (``round_to_half``).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: _stored(tensor, half) for name, tensor in network.state_dict().items()}
    metadata = {CARD_METADATA_KEY: json.dumps(card.to_dict())}
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.chmod(temporary, 0o644)  # mkstemp creates owner-only files; a model file is meant to be shared
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


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


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card alone, without reading the weights."""
    from safetensors import safe_open

    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path.name} is not a readable model file (truncated or corrupt?): {error}") from None
    if CARD_METADATA_KEY not in metadata:
        raise ModelFileError(f"{path.name} has no model card (metadata key '{CARD_METADATA_KEY}')")
    try:
        data = json.loads(metadata[CARD_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path.name}: the model card is not valid JSON ({error})") from None
    try:
        return ModelCard.from_dict(data)
    except ModelFileError as error:
        raise ModelFileError(f"{path.name}: {error}") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    from safetensors.torch import load_file

    path = resolve_model_path(path)
    card = read_card(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as error:
        raise ModelFileError(f"{path.name}: the weights cannot be read (truncated or corrupt?): {error}") from None
    network = build_from_card(card)
    _load_weights(network, tensors, path.name)
    return LoadedModel(card=card, network=network.eval().to(device), path=path)


def import_state_dict(pth_path: str | os.PathLike, card: ModelCard, output: str | os.PathLike) -> Path:
    """Import a plain PyTorch state dict (.pth/.pt) given the card that describes it."""
    pth_path = _existing_file(pth_path)
    state = load_state_dict_safely(pth_path)
    for wrapper in ("state_dict", "model", "network_weights", "model_state_dict"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    state = {strip_wrapper_prefix(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    network = build_from_card(card)
    _load_weights(network, state, pth_path.name)
    return save_model(output, card, network)


# Data-only reconstructors that training checkpoints (nnU-Net's logs) use for numpy numbers and arrays; they
# rebuild values from bytes and call nothing else, so allowing them keeps the load free of arbitrary code.
NUMPY_DATA_GLOBALS = ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype",
                      "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray")


def load_state_dict_safely(pth_path: str | os.PathLike, numpy_values: bool = False) -> dict[str, Any]:
    """``torch.load`` restricted to tensors and plain containers (plus numpy numbers and arrays with
    ``numpy_values``); any other pickled object is refused before anything runs."""
    pth_path = _existing_file(pth_path)
    allowed = _numpy_globals(pth_path) if numpy_values else []
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(str(pth_path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelFileError(f"{pth_path.name} holds pickled Python objects, which are never loaded "
                             f"(save a plain state dict instead): {first_line}") from None
    except Exception as error:
        raise ModelFileError(f"{pth_path.name} is not a readable PyTorch file: {error}") from None
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{pth_path.name} does not hold a state dict (found {type(state).__name__})")
    return dict(state)


def _numpy_globals(pth_path: Path) -> list[Any]:
    """The numpy reconstructors this file needs, resolved; any other global is left for torch to refuse."""
    import importlib

    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(pth_path))
    except Exception:  # unreadable: torch.load reports it
        return []
    resolved = []
    for name in needed:
        if name in NUMPY_DATA_GLOBALS:
            module, _, attribute = name.rpartition(".")
            try:
                resolved.append(getattr(importlib.import_module(module), attribute))
            except (ImportError, AttributeError):
                continue
    if "numpy.dtype" in needed:  # a dtype unpickles as its class in numpy.dtypes (Float64DType, ...)
        import numpy.dtypes

        resolved += [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith("DType")]
    return resolved


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A path as is, or the name of a shipped or user-imported model."""
    candidate = Path(name_or_path)
    if candidate.suffix == MODEL_SUFFIX or candidate.exists():
        return _existing_file(candidate)
    for folder in model_search_folders():
        match = folder / f"{name_or_path}{MODEL_SUFFIX}"
        if match.is_file():
            return match
    names = ", ".join(sorted(p.stem for f in model_search_folders() for p in f.glob(f"*{MODEL_SUFFIX}")))
    raise ModelFileError(f"no model file or known model named '{name_or_path}' (known: {names or 'none'})")


def model_search_folders() -> list[Path]:
    folders = [SHIPPED_MODELS_DIR, user_models_folder()]
    return [folder for folder in folders if folder.is_dir()]


def user_models_folder() -> Path:
    root = os.environ.get("MEDSEG_MODELS_DIR")
    return Path(root) if root else Path.home() / ".medsegefficient" / "models"


def default_model_path() -> Path:
    return SHIPPED_MODELS_DIR / "abdomen_ct_demo.safetensors"


def _load_weights(network: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    try:
        result = network.load_state_dict(dict(tensors), strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = str(error).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{source}: weights do not match the network in the card: {detail}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise ModelFileError(f"{source}: weights do not match the network in the card: " + ", ".join(problems))


def strip_wrapper_prefix(key: str) -> str:
    # DataParallel and torch.compile wrap names; the network itself never has these prefixes.
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return path


__all__ = ["LoadedModel", "MedSegError", "build_from_card", "default_model_path", "import_state_dict",
           "strip_wrapper_prefix",
           "load_model", "load_state_dict_safely", "read_card", "resolve_model_path", "save_model",
           "user_models_folder"]
