"""The batch manifest: one JSON line per finished case (input, output, status, seconds, device, error) beside the
outputs. Each line is written whole and flushed, so an interrupted batch leaves a manifest that is true; a rerun
skips the cases whose last line says done and whose output exists, and retries the rest."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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
        if not self.path.is_file():
            return entries
        for line in self.path.read_text().splitlines():
            try:
                entry = Entry(**json.loads(line))
            except (ValueError, TypeError):
                continue
            entries[entry.input] = entry
        return entries

    def done(self) -> set[str]:
        return {key for key, entry in self.latest().items() if entry.status == "done" and Path(entry.output).is_file()}

    def append(self, entry: Entry) -> None:
        entry.finished = entry.finished or time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as stream:
            stream.write(json.dumps(asdict(entry)) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


__all__ = ["MANIFEST_NAME", "Entry", "Manifest"]
