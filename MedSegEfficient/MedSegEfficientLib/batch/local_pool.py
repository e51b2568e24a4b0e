"""The batch engine of one machine: worker processes that each load the model once, with the cases as tasks.

One failing case never stops the batch: it is recorded as failed with its reason. A worker that dies mid-case
(killed, out of memory) loses nothing: the cases it and its pool held go to a fresh pool, each at most
``MAX_ATTEMPTS`` times. The manifest gets a line only for a case that finished, written when it finishes, so
Ctrl-C leaves it true; every output is written atomically by the file pipeline.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from MedSegEfficientLib.batch.cases import Case
from MedSegEfficientLib.batch.ledger import BatchSummary, Ledger
from MedSegEfficientLib.batch.manifest import Entry, Manifest
from MedSegEfficientLib.batch.worker import WorkerSettings, load_segmenter, segment_case
from MedSegEfficientLib.errors import Cancelled

_segmenter = None  # each worker process's loaded model


def _start_worker(settings: WorkerSettings) -> None:
    global _segmenter
    _segmenter = load_segmenter(settings)


def _segment_case(input_path: str, output_path: str) -> dict:
    return segment_case(_segmenter, input_path, output_path)


def run_local(cases: list[Case], manifest: Manifest, settings: WorkerSettings, workers: int,
              on_entry: Callable[[Entry], None] = lambda entry: None) -> BatchSummary:
    """Every case not already done, on ``workers`` processes; ``on_entry`` sees each finished case."""
    ledger = Ledger(cases, manifest, on_entry)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared across a fork
    while ledger.pending:
        pending, ledger.pending = ledger.pending, []
        pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))), mp_context=context,
                                   initializer=_start_worker, initargs=(settings,))
        futures = {pool.submit(_segment_case, str(case.input), str(case.output)): case for case in pending}
        try:
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    case = futures[future]
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        if ledger.worker_died(case):
                            ledger.pending.append(case)
                        continue
                    ledger.record(case, outcome)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise Cancelled("cancelled by the user; the manifest lists the cases that finished") from None
        pool.shutdown(wait=True)
    return ledger.summary


__all__ = ["run_local"]
