"""Peak RAM, for run reports and benchmarks: the process's peak so far, or the peak within a stretch of work (the
process's own peak only grows, so a second network in one benchmark would inherit the first's)."""

from __future__ import annotations

import os
import sys
import threading

SAMPLE_SECONDS = 0.02


def peak_ram_bytes() -> int:
    """Peak resident memory of this process so far (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def resident_bytes() -> int | None:
    """Resident memory now (Linux /proc, else psutil where installed; None where neither says)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return None


class RamSampler:
    """The largest resident memory seen while the ``with`` block runs, sampled every SAMPLE_SECONDS."""

    def __init__(self) -> None:
        self.peak = resident_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="RAM sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, resident_bytes() or 0)

    def __enter__(self) -> "RamSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes() or 0)


__all__ = ["RamSampler", "peak_ram_bytes", "resident_bytes"]
