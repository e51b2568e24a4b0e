"""What ITK's NIfTI reader lets through, checked from the file itself: a file shorter than its header says (ITK
reads the missing part as zeros), a gzip stream that ends early, and NaN or infinite floats (ITK reads them as 0).

Only the header is parsed here (NIfTI-1 and NIfTI-2, either byte order); the voxels are read by SimpleITK.
"""

from __future__ import annotations

import gzip
import math
import shutil
import tempfile
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSegEfficientLib.errors import InputImageError

FLOAT_TYPES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}  # NIfTI datatype codes -> numpy kinds
CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class NiftiHeader:
    data_offset: int
    data_bytes: int
    datatype: int
    byte_order: str  # "<" or ">"

    @property
    def expected_bytes(self) -> int:
        return self.data_offset + self.data_bytes


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def read_header(path: Path) -> NiftiHeader:
    try:
        with _open(path) as stream:
            raw = stream.read(540)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise InputImageError(f"cannot read {path.name} as an image: {error}") from None
    if len(raw) < 348:
        raise InputImageError(f"{path.name} is truncated: {len(raw)} bytes, shorter than a NIfTI header")
    for order in "<>":
        (size,) = struct.unpack(order + "i", raw[:4])
        if size == 348:
            dims = struct.unpack(order + "8h", raw[40:56])
            datatype, bitpix = struct.unpack(order + "2h", raw[70:74])
            (offset,) = struct.unpack(order + "f", raw[108:112])
            break
        if size == 540 and len(raw) >= 540:
            datatype, bitpix = struct.unpack(order + "2h", raw[12:16])
            dims = struct.unpack(order + "8q", raw[16:80])
            (offset,) = struct.unpack(order + "q", raw[168:176])
            break
    else:
        raise InputImageError(f"{path.name} is not a NIfTI file (its header size field is not 348 or 540)")
    rank = dims[0]
    if not 1 <= rank <= 7 or any(n < 1 for n in dims[1:rank + 1]) or bitpix <= 0 or bitpix % 8:
        raise InputImageError(f"{path.name} has an invalid NIfTI header (dimensions {dims[:rank + 1]}, "
                              f"{bitpix} bits per voxel)")
    voxels = math.prod(dims[1:rank + 1])
    return NiftiHeader(max(int(offset), 348), voxels * bitpix // 8, datatype, order)


def check_nifti(path: Path) -> NiftiHeader:
    """Raises InputImageError for a truncated file or stream, or NaN / infinite voxels."""
    header = read_header(path)
    compressed = path.name.lower().endswith(".gz")
    if not compressed:
        size = path.stat().st_size
        if size < header.expected_bytes:
            raise InputImageError(f"{path.name} is truncated: its header says {header.expected_bytes} bytes, "
                                  f"the file has {size}")
    elif not _gzip_trailer_matches(path, header.expected_bytes) and _stream_length(path) < header.expected_bytes:
        raise InputImageError(f"{path.name} is truncated: its header says {header.expected_bytes} bytes of "
                              "image, the compressed stream ends before")
    if header.datatype in FLOAT_TYPES:
        _check_finite(path, header)
    return header


_NIFTI_NAMES = (".nii", ".nii.gz", ".hdr", ".hdr.gz", ".img", ".img.gz")


@contextmanager
def unambiguous_nifti_path(path: Path) -> Iterator[Path]:
    """A name under which ITK reads this very file. ITK's NIfTI reader, given ``scan.nii.gz``, opens ``scan.nii``
    (or ``scan.hdr``) instead when one sits beside it: a different image, read without a word. Where such a
    sibling exists the file is read through a link in a private folder, where it has none."""
    name = path.name.lower()
    base = next((path.name[: -len(suffix)] for suffix in _NIFTI_NAMES if name.endswith(suffix)), None)
    siblings = [] if base is None else [path.with_name(base + suffix) for suffix in _NIFTI_NAMES]
    if not any(sibling.name != path.name and sibling.exists() for sibling in siblings):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="medseg-read-") as folder:
        alone = Path(folder) / ("image" + path.name[len(base):])
        try:
            alone.symlink_to(path.resolve())
        except OSError:  # no symbolic links (Windows without the privilege): a copy is exact too
            shutil.copyfile(path, alone)
        yield alone


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _gzip_trailer_matches(path: Path, expected: int) -> bool:
    """A whole gzip stream ends with its length modulo 2^32: the quick test, before reading it all."""
    size = path.stat().st_size
    if size < 18:
        return False
    with open(path, "rb") as stream:
        stream.seek(size - 4)
        (length,) = struct.unpack("<I", stream.read(4))
    return length == expected % (1 << 32)


def _stream_length(path: Path) -> int:
    """Bytes the gzip stream really holds; a stream that stops early counts what came before the break."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while block := stream.read(CHUNK_BYTES):
                total += len(block)
    except (EOFError, OSError, zlib.error):
        pass
    return total


def _check_finite(path: Path, header: NiftiHeader) -> None:
    kind = np.dtype(header.byte_order + FLOAT_TYPES[header.datatype])
    remaining, bad = header.data_bytes, 0
    with _open(path) as stream:  # complete: checked before this is called
        stream.read(header.data_offset)  # forward only: a gzip stream cannot seek cheaply
        while remaining > 0:
            block = stream.read(min(CHUNK_BYTES - CHUNK_BYTES % kind.itemsize, remaining))
            if not block:
                break
            remaining -= len(block)
            values = np.frombuffer(block[: len(block) - len(block) % kind.itemsize], dtype=kind)
            bad += int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise InputImageError(f"{path.name} has {bad} NaN or infinite voxels")


__all__ = ["NiftiHeader", "check_nifti", "is_nifti", "read_header", "unambiguous_nifti_path"]
