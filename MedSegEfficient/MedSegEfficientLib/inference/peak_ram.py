"""Peak RAM of this process, for run reports and benchmarks."""

from __future__ import annotations

import sys


def peak_ram_bytes() -> int:
    """Peak resident memory of this process so far (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
