"""File safety shared by every writer: atomic replacement of an output, and the SHA-256 of a file or folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

SHARED_FILE_MODE = 0o644  # mkstemp makes owner-only files; outputs and model files are meant to be shared


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` on a fresh name beside ``path``, then rename it onto ``path``.

    The user never sees a half-written file, and a failed write leaves an existing file untouched. The temporary
    name is unique per call (two processes writing the same output never share it) and keeps the output's
    extensions, which writers such as SimpleITK read to choose the format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=f".part{suffix}")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, SHARED_FILE_MODE)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, or of a folder's files concatenated in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


__all__ = ["sha256_of", "write_atomically"]
