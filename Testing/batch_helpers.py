"""What the batch tests share: a cohort of phantom CTs, the manifest's lines, a batch process's pool workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def batch_process(*arguments: str) -> subprocess.Popen:
    """``medseg batch ARGUMENTS --quiet`` in its own process, the test networks importable in its workers."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "MedSegEfficient"), str(ROOT / "Testing")])}
    return subprocess.Popen([sys.executable, "-m", "MedSegEfficientLib.cli", "batch", *arguments, "--quiet"],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def batch_under_way(inputs: Path, out: Path) -> tuple[subprocess.Popen, list[int]]:
    """A two-worker batch of the demo model, once its first case has finished (both workers have the model loaded
    and hold cases), and its workers' process ids."""
    batch = batch_process(str(inputs), "-o", str(out), "--workers", "2", "--device", "cpu", "--model", "abdomen_ct_demo")
    manifest = out / "medseg-manifest.jsonl"
    deadline = time.time() + 180
    while not (manifest.is_file() and manifest.read_text()) and time.time() < deadline and batch.poll() is None:
        time.sleep(0.05)
    workers = workers_of(batch.pid)
    assert workers, "the pool never started"
    return batch, workers


__all__ = ["ROOT", "batch_process", "batch_under_way", "cohort", "lines", "workers_of"]
