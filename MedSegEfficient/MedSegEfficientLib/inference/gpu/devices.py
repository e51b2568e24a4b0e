"""Device choice and the GPU facts a user wants to see."""

from __future__ import annotations

import torch

from MedSegEfficientLib.errors import MedSegError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def select_device(choice: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit GPU that is absent is an error, not a silent CPU run."""
    choice = (choice or "auto").lower()
    if choice not in DEVICE_CHOICES and not choice.startswith("cuda:"):
        raise MedSegError(f"unknown device '{choice}' (choose from {', '.join(DEVICE_CHOICES)})")
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise MedSegError("no CUDA GPU is available here; use --device cpu or --device auto")
    if choice == "mps" and not _mps_available():
        raise MedSegError("Apple MPS is not available here; use --device cpu or --device auto")
    return torch.device(choice)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        return f"{torch.cuda.get_device_name(index)} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


# How each device says it is out of memory: CUDA's and MPS's messages, and the CPU allocator's (torch's
# DefaultCPUAllocator says "can't allocate memory"; numpy raises MemoryError).
_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    return any(words in message for words in _OUT_OF_MEMORY_WORDS)


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
