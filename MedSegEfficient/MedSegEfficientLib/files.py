"""File safety shared by every writer: outputs replaced atomically (together, for a run with several), and the
SHA-256 of a file or folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from glob import escape
from pathlib import Path
from typing import Callable

SHARED_FILE_MODE = 0o644  # mkstemp makes owner-only files; outputs and model files are meant to be shared


class StagedOutputs:
    """The outputs of one run, each written under a temporary name beside its target and renamed onto it only
    when every one of them has been written: a failure anywhere leaves every existing file as it was.

    Temporary names are unique per call (two processes writing the same output never share one; the last complete
    rename wins) and keep the output's extensions, which writers such as SimpleITK read to choose the format.

        with StagedOutputs() as outputs:
            outputs.stage(labels_path, write_labels)
            outputs.stage(picture_path, write_picture)
        # both renamed here; on an exception neither is, and no temporary file is left
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _temporary_name_parts(path)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
        os.close(handle)
        temporary = Path(name)
        self._staged.append((temporary, path))
        write(temporary)
        os.chmod(temporary, SHARED_FILE_MODE)
        return path

    def commit(self) -> None:
        for temporary, path in self._staged:
            os.replace(temporary, path)
        self._staged.clear()

    def discard(self) -> None:
        for temporary, _ in self._staged:
            temporary.unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            try:
                self.commit()
            finally:
                self.discard()  # whatever a failed rename left behind
        else:
            self.discard()


def resolved(path: str | os.PathLike) -> Path:
    """The path with links followed, or made absolute where they cannot be (a link loop)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a link loop
        return Path(path).absolute()


def _temporary_name_parts(path: Path) -> tuple[str, str]:
    """The prefix and suffix of ``path``'s temporary names: ``.STEM.<random>.partSUFFIXES``."""
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return f".{stem}.", f".part{suffix}"


def remove_leftover_temporaries(path: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer of ``path`` left beside it (a process killed mid-write cannot
    clean up after itself); call it only while no other process writes ``path``. Returns how many went."""
    path = Path(path)
    prefix, suffix = _temporary_name_parts(path)
    removed = 0
    for leftover in path.parent.glob(f"{escape(prefix)}*{escape(suffix)}") if path.parent.is_dir() else []:
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None],
                     outputs: StagedOutputs | None = None) -> Path:
    """``write(temporary)``, then rename onto ``path``: the user never sees a half-written file, and a failed
    write leaves an existing file untouched. Given ``outputs``, the rename waits for that run's other outputs."""
    if outputs is not None:
        return outputs.stage(path, write)
    with StagedOutputs() as alone:
        return alone.stage(path, write)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, or of a folder's files concatenated in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


__all__ = ["StagedOutputs", "remove_leftover_temporaries", "sha256_of", "write_atomically"]
