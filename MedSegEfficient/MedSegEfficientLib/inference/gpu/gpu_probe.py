"""What GPU a machine has, found without torch and without starting CUDA: the Slicer panel's device line when it
opens, before any dependency is installed. ``nvidia-smi`` reads the driver; no CUDA context is made."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

PROBE_SECONDS = 5.0  # a hung driver must not hang the panel


def describe_gpus_without_cuda() -> str | None:
    """'NVIDIA H200 (139.1 of 140.4 GiB free)' (one line per GPU, joined by '; '), 'Apple GPU (MPS)', or None."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "Apple GPU (MPS)"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "--query-gpu=name,memory.free,memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    gpus = [parse_gpu_line(line) for line in done.stdout.splitlines() if line.strip()]
    return "; ".join(gpu for gpu in gpus if gpu) or None


def parse_gpu_line(line: str) -> str | None:
    """One ``nvidia-smi --format=csv,noheader,nounits`` line (name, free MiB, total MiB) in words."""
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != 3:
        return None
    name, free, total = parts
    try:
        return f"{name} ({float(free) / 1024:.1f} of {float(total) / 1024:.1f} GiB free)"
    except ValueError:
        return name or None


__all__ = ["describe_gpus_without_cuda", "parse_gpu_line"]
