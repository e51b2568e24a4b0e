"""The batch manifest: one JSON line per finished case (input, output, status, seconds, device, error) beside the
outputs. Each line is written whole and flushed, so an interrupted batch leaves a manifest that is true; a rerun
skips the cases whose last line says done and whose output exists, and retries the rest."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from MedSegEfficientLib.errors import OutputError

MANIFEST_NAME = "medseg-manifest.jsonl"


@dataclass
class Entry:
    input: str
    output: str
    status: str  # "done" or "failed"
    seconds: float
    device: str = ""
    error: str = ""
    finished: float = 0.0  # Unix time


class Manifest:
    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MANIFEST_NAME

    def latest(self) -> dict[str, Entry]:
        """The last entry of each input; a line cut short (a crash mid-write) is ignored."""
        entries: dict[str, Entry] = {}
        if not self._check():
            return entries
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")  # a binary file: no line parses
        except OSError as error:
            raise OutputError(f"cannot read {self.path}: {error.strerror or error}") from None
        for line in text.splitlines():
            try:
                entry = Entry(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut short, or not an entry (a list, null, another program's text)
            entries[entry.input] = entry
        return entries

    def _check(self) -> bool:
        """Whether the manifest exists; one that is a link or not a regular file is refused, never written through
        (a link would make the batch append to a file outside the output folder)."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise OutputError(f"{self.path} is a link or not a regular file: move it away (the manifest is never "
                              f"written through a link)")
        return self.path.exists()

    def done(self) -> dict[str, str]:
        """Input -> output of the cases whose last line says done and whose output is still there."""
        return {key: entry.output for key, entry in self.latest().items()
                if entry.status == "done" and Path(entry.output).is_file()}

    def is_done(self, input_path: Path, output_path: Path, done: dict[str, str] | None = None) -> bool:
        """Done into this very output (a rerun in another --format is not done)."""
        done = self.done() if done is None else done
        return done.get(str(input_path)) == str(output_path)

    def append(self, entry: Entry) -> None:
        entry.finished = entry.finished or time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check()
        # O_NOFOLLOW: a link put in its place after the check is refused by the system, not followed
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                                 0o644)
            with os.fdopen(descriptor, "a") as stream:
                stream.write(json.dumps(asdict(entry)) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:  # a full disk: the batch stops here, its manifest true up to the last line
            raise OutputError(f"cannot write the manifest {self.path}: {error.strerror or error}; the batch "
                              "stopped (a rerun resumes it)") from None


__all__ = ["MANIFEST_NAME", "Entry", "Manifest"]
