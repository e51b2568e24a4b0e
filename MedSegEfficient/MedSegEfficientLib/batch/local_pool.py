"""The batch engine of one machine: worker processes that each load the model once, with the cases as tasks.

One failing case never stops the batch: it is recorded as failed with its reason. A worker that dies mid-case
(killed, out of memory) loses nothing, and blames no innocent case: a pool's death breaks every case it held, so
those cases are run again one worker at a time, where the case running when a worker dies is the one that killed
it; only that case counts a death, and after ``MAX_ATTEMPTS`` it is failed. The manifest gets a line only for a
case that finished, written when it finishes, so Ctrl-C or SIGTERM leaves it true; every output is written
atomically by the file pipeline. Workers end with the batch however it ends (``orphan_watch``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from MedSegEfficientLib.batch.cases import Case
from MedSegEfficientLib.batch.ledger import BatchSummary, Ledger
from MedSegEfficientLib.batch.manifest import Entry, Manifest
from MedSegEfficientLib.batch.worker import WorkerSettings, load_segmenter, segment_case
from MedSegEfficientLib.errors import Cancelled

_segmenter = None  # each worker process's loaded model
_start_error = ""  # or why it could not be loaded: every case then fails with that line, no worker dies
ORPHAN_POLL_SECONDS = 0.2


def _start_worker(settings: WorkerSettings, parent: int) -> None:
    global _segmenter, _start_error
    threading.Thread(target=orphan_watch, args=(parent,), name="medseg-orphan-watch", daemon=True).start()
    try:
        _segmenter = load_segmenter(settings)
    except Exception as error:  # noqa: BLE001 - reported per case, as the case's failure
        _start_error = f"the worker could not load the model: {error}".splitlines()[0]


def orphan_watch(parent: int) -> None:
    """End this worker as soon as the batch process is gone (SIGKILL included, which no handler sees): its cases
    would write outputs that no manifest records."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(ORPHAN_POLL_SECONDS)


def _segment_case(input_path: str, output_path: str) -> dict:
    if _start_error:
        return {"status": "failed", "error": _start_error, "seconds": 0.0}
    return segment_case(_segmenter, input_path, output_path)


def run_local(cases: list[Case], manifest: Manifest, settings: WorkerSettings, workers: int,
              on_entry: Callable[[Entry], None] = lambda entry: None) -> BatchSummary:
    """Every case not already done, on ``workers`` processes; ``on_entry`` sees each finished case."""
    ledger = Ledger(cases, manifest, on_entry)
    suspects: list[Case] = []  # cases whose pool died under them: run alone, one at a time, until cleared
    while ledger.pending or suspects:
        if ledger.pending:
            batch, ledger.pending = ledger.pending, []
            suspects += _run_pool(batch, ledger, settings, workers, alone=False)
        else:
            suspects = _run_pool(suspects, ledger, settings, 1, alone=True)
    return ledger.summary


def _run_pool(batch: list[Case], ledger: Ledger, settings: WorkerSettings, workers: int, alone: bool) -> list[Case]:
    """Runs ``batch``; returns the cases to run again alone. ``alone``: one worker, cases in order, so the first
    unfinished case when the worker dies is the one it was running."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared across a fork
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(batch))), mp_context=context,
                               initializer=_start_worker, initargs=(settings, os.getpid()))
    futures: dict[Future, Case] = {pool.submit(_segment_case, str(case.input), str(case.output)): case
                                   for case in batch}
    again: list[Case] = []
    broken = False
    try:
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=list(futures).index):
                case = futures[future]
                try:
                    ledger.record(case, future.result())
                except BrokenProcessPool:
                    culprit = alone and not broken  # the first case the dead worker had not finished
                    broken = True
                    if not culprit:
                        ledger.send_again(case)
                        again.append(case)
                    elif ledger.worker_died(case):
                        again.append(case)
    except BaseException as error:
        _end(pool)
        if isinstance(error, KeyboardInterrupt):
            raise Cancelled("cancelled by the user; the manifest lists the cases that finished") from None
        raise
    pool.shutdown(wait=True)
    return again


def _end(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now: cancelled queued cases, and the running ones killed (their outputs are written
    atomically, so a killed case leaves only a temporary file that the next run removes)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()


__all__ = ["run_local"]
