"""The self-describing model file: safetensors weights with the model card as JSON in its metadata.

This module reads the card from the file's header with the standard library alone, so that listing models (the
Slicer panel when it opens, ``medseg models``) needs neither torch nor safetensors. The weights are in
``weights.py``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.model.card import ModelCard

CARD_METADATA_KEY = "medseg_card"
MODEL_SUFFIX = ".safetensors"
# A safetensors header is JSON describing the tensors plus our card: a few hundred kB for the largest network.
# Anything claiming more is not a model file, and is refused before it is read.
MAX_HEADER_BYTES = 64 << 20


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card alone, without reading the weights."""
    path = existing_model_file(path)
    metadata = _read_metadata(path)
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


def _read_metadata(path: Path) -> dict:
    """The safetensors header's ``__metadata__``: an 8-byte little-endian length, then that much JSON."""
    unreadable = f"{path.name} is not a readable model file (truncated or corrupt?)"
    size = path.stat().st_size
    with open(path, "rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{unreadable}: {size} bytes")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ModelFileError(f"{unreadable}: its header claims {length} bytes")
        raw = stream.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{unreadable}: {error}") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def existing_model_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return path


__all__ = ["CARD_METADATA_KEY", "MODEL_SUFFIX", "existing_model_file", "read_card"]
