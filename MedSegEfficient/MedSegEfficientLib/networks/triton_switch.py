"""Whether this process may use Triton: installed, and not switched off after a failure.

A Slicer machine may have Triton but no C compiler, and Triton compiles its kernels on first use; the engine then
switches Triton off for the process (``disable_triton``) and reruns the network on its torch modules, saying so.
Every Triton path (the linear-attention kernels, the mLSTM's ``mlstm_kernels``) asks ``triton_usable`` first.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

_disabled_because: str | None = None


def triton_usable() -> bool:
    return _disabled_because is None and _installed()


def disable_triton(reason: str) -> None:
    global _disabled_because
    _disabled_because = reason


def enable_triton() -> None:
    """Undo ``disable_triton`` (tests; a user who fixed the compiler restarts instead)."""
    global _disabled_because
    _disabled_because = None


def is_triton_failure(error: BaseException) -> bool:
    """An error raised from Triton's compiler or runtime, not from our code or the input."""
    kinds = [type(error), *(type(cause) for cause in (error.__cause__, error.__context__) if cause is not None)]
    return any(kind.__module__.split(".")[0] == "triton" for kind in kinds)


@lru_cache(maxsize=1)
def _installed() -> bool:
    return importlib.util.find_spec("triton") is not None


__all__ = ["disable_triton", "enable_triton", "is_triton_failure", "triton_usable"]
