"""What GPU a machine has, found without torch and without starting CUDA: the Slicer panel's device line when it
opens, before any dependency is installed. ``nvidia-smi`` reads the driver; no CUDA context is made. The probe runs
as a child process that the panel polls, so opening the panel never waits for a slow or hung driver."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time

PROBE_SECONDS = 5.0  # a hung driver must not hold the device line for longer
QUERY = ["--query-gpu=name,memory.free,memory.total", "--format=csv,noheader,nounits"]


class GpuProbe:
    """``start()``, then ``poll()`` until it gives the device line ('Auto: ...'); never blocks."""

    def __init__(self, timeout: float = PROBE_SECONDS) -> None:
        self.timeout = timeout
        self._process: subprocess.Popen | None = None
        self._started = 0.0
        self._line: str | None = None

    def start(self) -> "GpuProbe":
        self._started = time.monotonic()
        if sys.platform == "darwin" and platform.machine() == "arm64":
            self._line = "Apple GPU (MPS)"
            return self
        smi = shutil.which("nvidia-smi")
        if smi is None:
            self._line = ""
            return self
        try:
            self._process = subprocess.Popen([smi, *QUERY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self._line = ""
        return self

    def poll(self) -> str | None:
        """The device line once known, else None."""
        if self._line is None and self._process is not None:
            if self._process.poll() is not None:
                output = self._process.stdout.read() if self._process.returncode == 0 else ""
                self._process.stdout.close()
                self._line = "; ".join(gpu for gpu in map(parse_gpu_line, output.splitlines()) if gpu)
            elif time.monotonic() - self._started > self.timeout:
                self._process.kill()
                self._process.wait()
                self._process.stdout.close()
                self._line = ""
        if self._line is None:
            return None
        return f"Auto: {self._line}" if self._line else "Auto: CPU (no GPU found)"

    def wait(self) -> str:
        while (line := self.poll()) is None:
            time.sleep(0.02)
        return line


def describe_gpus_without_cuda() -> str:
    """The device line, waited for (the CLI and scripts)."""
    return GpuProbe().start().wait()


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


__all__ = ["GpuProbe", "describe_gpus_without_cuda", "parse_gpu_line"]
