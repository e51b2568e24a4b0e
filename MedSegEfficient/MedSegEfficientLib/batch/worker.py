"""What every batch engine's worker does: load the model once, then segment case after case, turning each case's
failure into that case's record instead of the worker's death."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from MedSegEfficientLib.errors import MedSegError


@dataclass(frozen=True)
class WorkerSettings:
    model: str
    device: str = "cpu"
    fast: bool = False
    threads: int = 1


def load_segmenter(settings: WorkerSettings):
    import torch

    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
    from MedSegEfficientLib.networks.plugins import import_network_plugins

    import_network_plugins()  # a researcher's own networks load in the workers too
    torch.set_num_threads(settings.threads)
    return Segmenter.from_file(settings.model, SegmentOptions(device=settings.device, fast=settings.fast))


def segment_case(segmenter, input_path: str, output_path: str, where: str = "") -> dict[str, Any]:
    """One case's outcome as the manifest records it: status, seconds, device (``where`` appended), error."""
    from MedSegEfficientLib.inference.file_pipeline import segment_file

    started = time.perf_counter()
    try:
        result = segment_file(segmenter, input_path, output_path)
        device = result.report.device + (f" on {where}" if where else "")
        return {"status": "done", "device": device, "seconds": time.perf_counter() - started}
    except MedSegError as error:
        return {"status": "failed", "error": str(error), "seconds": time.perf_counter() - started}
    except Exception as error:  # noqa: BLE001 - a bug on one case is that case's failure, not the batch's
        return {"status": "failed", "error": f"internal error: {type(error).__name__}: {error}",
                "seconds": time.perf_counter() - started}


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


__all__ = ["WorkerSettings", "load_segmenter", "segment_case", "threads_per_worker"]
