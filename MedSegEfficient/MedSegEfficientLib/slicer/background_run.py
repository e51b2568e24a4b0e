"""Run a long job off the main thread and let the main thread poll it: Slicer's event loop never blocks.

The job gets ``progress(fraction, stage)`` and ``cancel()`` callables; the engine calls both between tiles or
slices, so a cancel stops the job at the next tile (well within a second on a GPU, one tile on a CPU). The job
must not touch the scene: the caller applies the result on the main thread once ``status().done`` is true.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from MedSegEfficientLib.errors import Cancelled

Job = Callable[[Callable[[float, str], None], Callable[[], bool]], Any]


@dataclass(frozen=True)
class RunStatus:
    fraction: float
    stage: str
    done: bool
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""
    cancelled: bool = False
    seconds: float = 0.0


class BackgroundRun:
    def __init__(self, job: Job, name: str = "MedSegEfficient run") -> None:
        self._job, self._lock = job, threading.Lock()
        self._cancel = threading.Event()
        self._fraction, self._stage = 0.0, "starting"
        self._finished: RunStatus | None = None
        self._started = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "BackgroundRun":
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> RunStatus:
        self._thread.join(timeout)
        return self.status()

    def status(self) -> RunStatus:
        with self._lock:
            if self._finished is not None:
                return self._finished
            return RunStatus(self._fraction, self._stage, False, seconds=time.perf_counter() - self._started)

    def _progress(self, fraction: float, stage: str) -> None:
        with self._lock:
            self._fraction, self._stage = max(self._fraction, float(fraction)), stage

    def _run(self) -> None:
        try:
            result = self._job(self._progress, self._cancel.is_set)
            finished = RunStatus(1.0, "done", True, result=result)
        except Cancelled as error:
            finished = RunStatus(self._fraction, "cancelled", True, error=error, cancelled=True)
        except BaseException as error:  # noqa: BLE001 - any failure is reported to the main thread, never lost
            finished = RunStatus(self._fraction, "failed", True, error=error, traceback=traceback.format_exc())
        with self._lock:
            self._finished = RunStatus(**{**finished.__dict__, "seconds": time.perf_counter() - self._started})


__all__ = ["BackgroundRun", "RunStatus"]
