"""Reading PyTorch ``.pth`` files without running pickled code: ``torch.load(weights_only=True)``, which refuses
any pickled Python object beyond tensors and containers, and a plain state dict imported with its card."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.model_file import existing_model_file
from MedSegEfficientLib.model.weights import build_from_card, load_weights, save_model


def import_state_dict(pth_path: str | os.PathLike, card: ModelCard, output: str | os.PathLike) -> Path:
    """Import a plain PyTorch state dict (.pth/.pt) given the card that describes it."""
    pth_path = existing_model_file(pth_path)
    state = load_state_dict_safely(pth_path)
    for wrapper in ("state_dict", "model", "network_weights", "model_state_dict"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    state = {strip_wrapper_prefix(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    network = build_from_card(card)
    load_weights(network, state, pth_path.name)
    return save_model(output, card, network)


# Data-only reconstructors that training checkpoints (nnU-Net's logs) use for numpy numbers and arrays; they
# rebuild values from bytes and call nothing else, so allowing them keeps the load free of arbitrary code.
NUMPY_DATA_GLOBALS = ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype",
                      "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray")


def load_state_dict_safely(pth_path: str | os.PathLike, numpy_values: bool = False) -> dict[str, Any]:
    """``torch.load`` restricted to tensors and plain containers (plus numpy numbers and arrays with
    ``numpy_values``); any other pickled object is refused before anything runs."""
    pth_path = existing_model_file(pth_path)
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


def strip_wrapper_prefix(key: str) -> str:
    # DataParallel and torch.compile wrap names; the network itself never has these prefixes.
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


__all__ = ["import_state_dict", "load_state_dict_safely", "strip_wrapper_prefix"]
