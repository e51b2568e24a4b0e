"""The batch engine of one machine: worker processes that each load the model once, with the cases as tasks.

One failing case never stops the batch: it is recorded as failed with its reason. A worker that dies mid-case
(killed, out of memory) loses nothing: the cases it and its pool held go to a fresh pool, each at most
``MAX_ATTEMPTS`` times. The manifest gets a line only for a case that finished, written when it finishes, so
Ctrl-C leaves it true; every output is written atomically by the file pipeline.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable

from MedSegEfficientLib.batch.cases import Case
from MedSegEfficientLib.batch.manifest import Entry, Manifest
from MedSegEfficientLib.errors import Cancelled, MedSegError

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class WorkerSettings:
    model: str
    device: str = "cpu"
    fast: bool = False
    threads: int = 1


@dataclass
class BatchSummary:
    done: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)
    skipped: int = 0
    requeued: int = 0  # cases sent to a fresh pool after a worker died


_segmenter = None  # each worker process's loaded model


def _start_worker(settings: WorkerSettings) -> None:
    global _segmenter
    import torch

    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter

    torch.set_num_threads(settings.threads)
    _segmenter = Segmenter.from_file(settings.model, SegmentOptions(device=settings.device, fast=settings.fast))


def _segment_case(input_path: str, output_path: str) -> dict:
    from MedSegEfficientLib.inference.file_pipeline import segment_file

    started = time.perf_counter()
    try:
        result = segment_file(_segmenter, input_path, output_path)
        return {"status": "done", "device": result.report.device, "seconds": time.perf_counter() - started}
    except MedSegError as error:
        return {"status": "failed", "error": str(error), "seconds": time.perf_counter() - started}
    except Exception as error:  # noqa: BLE001 - a bug on one case is that case's failure, not the batch's
        return {"status": "failed", "error": f"internal error: {type(error).__name__}: {error}",
                "seconds": time.perf_counter() - started}


def run_local(cases: list[Case], manifest: Manifest, settings: WorkerSettings, workers: int,
              on_entry: Callable[[Entry], None] = lambda entry: None) -> BatchSummary:
    """Every case not already done, on ``workers`` processes; ``on_entry`` sees each finished case."""
    summary = BatchSummary()
    done = manifest.done()
    pending = [case for case in cases if str(case.input) not in done]
    summary.skipped = len(cases) - len(pending)
    attempts: Counter = Counter()
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared across a fork
    while pending:
        pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))), mp_context=context,
                                   initializer=_start_worker, initargs=(settings,))
        futures = {pool.submit(_segment_case, str(case.input), str(case.output)): case for case in pending}
        pending = []
        try:
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    case = futures[future]
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        attempts[case] += 1
                        if attempts[case] < MAX_ATTEMPTS:
                            pending.append(case)
                            summary.requeued += 1
                            continue
                        outcome = {"status": "failed", "seconds": 0.0,
                                   "error": f"its worker died {MAX_ATTEMPTS} times (killed or out of memory)"}
                    entry = Entry(str(case.input), str(case.output), **outcome)
                    manifest.append(entry)
                    (summary.done if entry.status == "done" else summary.failed).append(entry)
                    on_entry(entry)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise Cancelled("cancelled by the user; the manifest lists the cases that finished") from None
        pool.shutdown(wait=True)
    return summary


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


__all__ = ["BatchSummary", "MAX_ATTEMPTS", "WorkerSettings", "run_local", "threads_per_worker"]
