"""What the batch tests share: a cohort of phantom CTs, the manifest's lines, a batch process's pool workers."""

from __future__ import annotations

import json
from pathlib import Path

from MedSegEfficientLib.io.images import write_label_image
from phantoms import make_phantom

ROOT = Path(__file__).resolve().parents[1]


def cohort(folder: Path, count: int, shape=(24, 32, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        image, _ = make_phantom(shape=shape, seed=seed)
        write_label_image(image.array, image, folder / f"ct{seed}.nii.gz")
    return folder


def lines(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def workers_of(pid: int) -> list[int]:
    """The pool's worker processes: children running multiprocessing's spawn entry (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = []
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            workers.append(int(child))
    return workers


__all__ = ["ROOT", "cohort", "lines", "workers_of"]
