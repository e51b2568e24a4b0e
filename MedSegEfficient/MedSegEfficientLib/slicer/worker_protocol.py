"""What Slicer and its segmentation worker process say to each other.

Messages are JSON objects, one a line, over the worker's stdin (requests) and stdout (events): never pickle, so
neither side can be made to run code by the other. Volumes and labels do not travel in the pipe: they are raw
``.npy`` files in a private temporary folder that both sides map into memory (no compression, no copy through the
pipe). Torch-free: Slicer's side imports this module without the engine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.volume import Volume

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # a line longer than this is a broken worker, not a message
MAX_ARRAY_BYTES = 1 << 36  # 64 GiB: bounds what a header can make the other side map
ARRAY_DTYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
                "float16", "bool"}


class ProtocolError(MedSegError):
    """A message or an exchanged array that does not follow the protocol."""


def encode(message: dict[str, Any]) -> bytes:
    line = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(line) >= MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {len(line)} bytes is over the limit")
    return line + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    if len(line) >= MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {len(line)} bytes is over the limit")
    try:
        message = json.loads(line)
    except ValueError as error:
        raise ProtocolError(f"not a JSON message: {line[:80]!r}") from error
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


def write_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Copy ``array`` into a new memory-mapped ``.npy`` file; returns its spec for the other side."""
    if array.dtype.name not in ARRAY_DTYPES:
        raise ProtocolError(f"arrays of {array.dtype} are not exchanged")
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    mapped[...] = array
    del mapped  # no flush: both processes map the same pages, and an msync to disk would only cost time
    return {"path": str(path), "shape": list(array.shape), "dtype": array.dtype.name}


def read_array(spec: dict[str, Any], folder: Path) -> np.ndarray:
    """Map an exchanged array read-only, after checking that it is the file, shape and type the spec says and
    that it lies in the run's own folder."""
    try:
        path = Path(spec["path"]).resolve()
        shape = tuple(int(n) for n in spec["shape"])
        dtype = str(spec["dtype"])
    except (KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"a bad array spec: {spec!r}") from error
    if path.parent != folder.resolve():
        raise ProtocolError(f"an array outside the exchange folder: {path}")
    if dtype not in ARRAY_DTYPES or any(n < 0 for n in shape) or len(shape) > 4:
        raise ProtocolError(f"a bad array spec: {spec!r}")
    if math.prod(shape) * np.dtype(dtype).itemsize > MAX_ARRAY_BYTES:
        raise ProtocolError(f"an array of {shape} {dtype} is over the size limit")
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise ProtocolError(f"{path.name} holds {array.shape} {array.dtype}, not {shape} {dtype}")
    return array


def volume_header(volume: Volume) -> dict[str, Any]:
    return {"ijk_to_ras": volume.ijk_to_ras().tolist()}


def volume_from(array: np.ndarray, header: dict[str, Any]) -> Volume:
    matrix = np.asarray(header["ijk_to_ras"], dtype=float)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ProtocolError("a bad volume geometry")
    return Volume.from_ijk_to_ras(array, matrix)


__all__ = ["MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "ProtocolError", "decode", "encode", "read_array",
           "volume_from", "volume_header", "write_array"]
