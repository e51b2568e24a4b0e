"""Reading PyTorch ``.pth`` files without running pickled code: ``torch.load(weights_only=True)``, which refuses
any pickled Python object beyond tensors and containers, and a plain state dict imported with its card."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.model_file import existing_model_file
from MedSegEfficientLib.model.weights import build_from_card, load_weights, save_model

# Bounds on what a checkpoint may make the importers allocate: the largest the importers take (an nnU-Net fold, an
# MLLA or HRMedSeg encoder) is a few hundred MB; weights compress by at most a few times.
MAX_UNPACKED_BYTES = 2 << 30
MAX_COMPRESSION_RATIO = 20


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
    ``numpy_values``); any other pickled object is refused before anything runs, and a file that would inflate
    beyond ``MAX_UNPACKED_BYTES`` is refused before it is read."""
    pth_path = existing_model_file(pth_path)
    check_unpacked_size(pth_path)
    allowed = _numpy_globals(pth_path) if numpy_values else []
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(str(pth_path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = _plain(str(error))
        if "GLOBAL" not in message and not _is_pickle(pth_path):
            raise ModelFileError(f"{pth_path.name} is not a PyTorch file (its pickle data is unreadable: "
                                 f"{message.splitlines()[0] if message else 'damaged'})") from None
        found = re.search(r"GLOBAL (\S+)", message)
        what = f" (it refers to {found.group(1)})" if found else ""
        raise ModelFileError(f"{pth_path.name} holds pickled Python objects{what}, which are never loaded; save a "
                             "plain state dict instead") from None
    except Exception as error:  # random or damaged bytes fail anywhere inside the unpickler
        message = _plain(str(error)).splitlines()
        raise ModelFileError(f"{pth_path.name} is not a readable PyTorch file"
                             f"{': ' + message[0] if message else ''}") from None
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{pth_path.name} does not hold a state dict (found {type(state).__name__})")
    return dict(state)


def check_unpacked_size(pth_path: Path) -> None:
    """A torch.save file is a zip archive: its directory says how large every entry unpacks, before any is read."""
    if not zipfile.is_zipfile(pth_path):
        return  # the legacy format is not compressed: the file's own size bounds it
    with zipfile.ZipFile(pth_path) as archive:
        entries = archive.infolist()
    unpacked = sum(entry.file_size for entry in entries)
    packed = sum(entry.compress_size for entry in entries)
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelFileError(f"{pth_path.name} would unpack to {unpacked / 2**30:.1f} GiB; the importers take "
                             f"checkpoints up to {MAX_UNPACKED_BYTES / 2**30:.0f} GiB")
    if unpacked > (1 << 26) and unpacked > MAX_COMPRESSION_RATIO * packed:
        raise ModelFileError(f"{pth_path.name} unpacks {unpacked / max(packed, 1):.0f}-fold "
                             f"({packed / 2**20:.1f} MB to {unpacked / 2**30:.1f} GiB): refused as a zip bomb")


def _is_pickle(path: Path) -> bool:
    """A torch.save zip archive, or a pickle stream (PROTO opcode and protocol 2..5): random bytes are neither."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as stream:
        start = stream.read(2)
    return len(start) == 2 and start[0] == 0x80 and 2 <= start[1] <= 5


def _plain(message: str) -> str:
    """torch's message without its terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", message).strip()


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


__all__ = ["check_unpacked_size", "import_state_dict", "load_state_dict_safely", "strip_wrapper_prefix"]
