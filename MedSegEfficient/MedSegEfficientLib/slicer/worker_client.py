"""Slicer's side of the segmentation worker: start it, send it runs, poll them, cancel them, end it.

Nothing here blocks Slicer's main thread while a run goes on: ``WorkerRun.status()`` only drains what a reader
thread has taken off the worker's stdout (the reader sleeps in a read that releases the GIL, so Slicer's event loop,
which holds the GIL, does not starve it of anything it needs). The panel polls ``status()`` from a QTimer; scripts
call ``wait()``. A Cancel the worker does not answer within ``CANCEL_GRACE`` seconds ends its whole process tree;
a worker that dies (a CUDA fault, out of memory, killed) ends the run with one line, and the next run starts a new
worker. Torch-free.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.run_report import RunReport, SegmentationResult
from MedSegEfficientLib.slicer.worker_protocol import ProtocolError, decode, encode, read_array, write_array

LIB_PARENT = Path(__file__).resolve().parents[2]  # the folder that holds MedSegEfficientLib
CANCEL_GRACE = 2.0  # seconds a worker has to answer a Cancel before its process tree is ended
IDLE_SECONDS = float(os.environ.get("MEDSEG_WORKER_IDLE_SECONDS", "600"))  # a warm worker ends after this
EXCHANGE_ROOM = 2 << 30  # bytes free in shared memory before the exchange folder goes there
STDERR_TAIL = 4000  # characters of the worker's stderr kept to explain a crash


class WorkerError(MedSegError):
    """The worker process could not be started, or stopped without answering."""


@dataclass(frozen=True)
class RunStatus:
    fraction: float
    stage: str
    done: bool
    result: Any = None
    error: str | None = None
    traceback: str = ""
    cancelled: bool = False
    preflight: dict | None = None  # the memory check, when the run stopped to ask before it started
    seconds: float = 0.0


def worker_python() -> str:
    """Slicer's own Python: ``sys.executable`` is PythonSlicer inside Slicer; where it is the application itself,
    the PythonSlicer beside it."""
    executable = Path(sys.executable)
    if executable.stem.lower().startswith("slicer"):
        for candidate in (executable.with_name("PythonSlicer" + executable.suffix),
                          executable.parent / "bin" / ("PythonSlicer" + executable.suffix)):
            if candidate.exists():
                return str(candidate)
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return str(executable)


def _exchange_parent() -> str | None:
    """Shared memory (/dev/shm) where the system has it with room for a large CT and its labels: pages shared by
    both processes that never go to disk (3x faster to write than /tmp here); else the temporary folder."""
    shared = Path("/dev/shm")
    try:
        if shared.is_dir() and shutil.disk_usage(shared).free > EXCHANGE_ROOM:
            return str(shared)
    except OSError:
        pass
    return None


class SegmentationWorker:
    """One worker process, started on the first run and kept warm (models loaded) until ``stop()`` or idle."""

    def __init__(self, python: str | None = None, idle_seconds: float = IDLE_SECONDS, threads: int = 0) -> None:
        self.python = python or worker_python()
        self.idle_seconds, self.threads = idle_seconds, threads
        self.process: subprocess.Popen | None = None
        self.exchange: Path | None = None
        self._events: queue.Queue = queue.Queue()
        self._runs: dict[int, WorkerRun] = {}
        self._ids = itertools.count(1)
        self._stderr_path: Path | None = None
        self.starts = 0  # how many processes this worker has started (a crash makes the next run start one)

    # --- the process ------------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self) -> None:
        self._discard_process()
        self.exchange = Path(tempfile.mkdtemp(prefix="medseg-worker-", dir=_exchange_parent()))  # 0700: patient voxels
        self._stderr_path = self.exchange / "worker-stderr.txt"
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join([str(LIB_PARENT), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        environment["PYTHONUNBUFFERED"] = "1"
        command = [self.python, "-m", "MedSegEfficientLib.slicer.worker_main", "--exchange", str(self.exchange),
                   "--idle-seconds", str(self.idle_seconds), "--threads", str(self.threads)]
        own_group = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32"
                     else {"start_new_session": True})  # so that the whole tree can be ended at once
        with open(self._stderr_path, "wb") as stderr:
            try:
                self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                                env=environment, cwd=str(self.exchange), **own_group)
            except OSError as error:
                raise WorkerError(f"the segmentation worker could not be started ({self.python}): {error}") from None
        self.starts += 1
        self._events = queue.Queue()
        threading.Thread(target=self._read_events, args=(self.process.stdout, self._events), name="medseg-worker-events",
                         daemon=True).start()

    @staticmethod
    def _read_events(stdout, events: queue.Queue) -> None:
        for line in stdout:
            try:
                events.put(decode(line))
            except ProtocolError as error:
                events.put({"event": "error", "id": None, "message": f"the worker wrote {error}"})
        events.put(None)  # the worker closed its stdout: it has ended

    def stop(self, timeout: float = 5.0) -> None:
        """End the worker (its GPU memory with it): a polite 'quit', then the whole process tree."""
        if self.alive():
            try:
                self._send({"op": "quit"})
                self.process.wait(timeout)
            except (OSError, subprocess.TimeoutExpired, WorkerError):
                self.kill_tree()
        self._discard_process()

    def kill_tree(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if sys.platform == "win32":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True, check=False)
        else:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def _discard_process(self) -> None:
        if self.process is not None:
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        for run in self._runs.values():
            run._worker_gone(self._why_gone())
        self._runs.clear()
        self.process = None
        if self.exchange is not None:
            shutil.rmtree(self.exchange, ignore_errors=True)
            self.exchange = None

    def _why_gone(self) -> str:
        code = self.process.poll() if self.process is not None else None
        tail = ""
        if self._stderr_path is not None and self._stderr_path.exists():
            lines = [line for line in self._stderr_path.read_text(errors="replace")[-STDERR_TAIL:].splitlines() if line.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        return f"the segmentation worker stopped unexpectedly (exit code {code}){tail}"

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.process.stdin.write(encode(message))
            self.process.stdin.flush()
        except (OSError, ValueError, AttributeError):
            raise WorkerError(self._why_gone()) from None

    # --- runs -------------------------------------------------------------------------------------------------
    def submit(self, op: str, fields: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> "WorkerRun":
        """Send one request; ``arrays`` are written to the exchange folder and passed by name."""
        if not self.alive():
            self._start()
        run_id = next(self._ids)
        request = {"op": op, "id": run_id, **fields}
        for name, array in (arrays or {}).items():
            request[name] = write_array(self.exchange / f"{name}-{run_id}.npy", array)
        run = WorkerRun(self, run_id, [Path(spec["path"]) for spec in request.values() if isinstance(spec, dict) and "path" in spec])
        self._runs[run_id] = run
        try:
            self._send(request)
        except WorkerError as error:
            run._worker_gone(str(error))
        return run

    def _pump(self) -> None:
        """Hand every event that has arrived to its run; notice a worker that has gone."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event is None:
                if self.process is not None:
                    try:
                        self.process.wait(5)
                    except subprocess.TimeoutExpired:
                        self.kill_tree()
                self._discard_process()
                return
            run = self._runs.get(event.get("id"))
            if run is not None:
                run._event(event)
                if run._final is not None:
                    self._runs.pop(run.run_id, None)


class WorkerRun:
    def __init__(self, worker: SegmentationWorker, run_id: int, inputs: list[Path]) -> None:
        self.worker, self.run_id, self._inputs = worker, run_id, inputs
        self._fraction, self._stage = 0.0, "waiting for the segmentation worker"
        self._final: RunStatus | None = None
        self._started = time.perf_counter()
        self._cancel_sent: float | None = None

    def status(self) -> RunStatus:
        if self._final is None:
            self.worker._pump()
        if self._final is None and self._cancel_sent is not None and time.perf_counter() - self._cancel_sent > CANCEL_GRACE:
            self.worker.kill_tree()  # the worker did not answer: end it, the next run starts another
            self._finish(RunStatus(self._fraction, "cancelled", True, cancelled=True))
            self.worker._discard_process()
        if self._final is not None:
            return self._final
        return RunStatus(self._fraction, self._stage, False, seconds=time.perf_counter() - self._started)

    def cancel(self) -> None:
        if self._final is not None or self._cancel_sent is not None:
            return
        self._cancel_sent = time.perf_counter()
        try:
            self.worker._send({"op": "cancel", "id": self.run_id})
        except WorkerError:
            pass  # gone already: status() reports it

    def wait(self, timeout: float | None = None, poll: float = 0.02) -> RunStatus:
        deadline = None if timeout is None else time.perf_counter() + timeout
        status = self.status()
        while not status.done and (deadline is None or time.perf_counter() < deadline):
            time.sleep(poll)
            status = self.status()
        return status

    # --- from the worker ----------------------------------------------------------------------------------------
    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            self._fraction = max(self._fraction, float(event.get("fraction", 0.0)))
            self._stage = str(event.get("stage", ""))
        elif kind == "done":
            try:
                self._finish(RunStatus(1.0, "done", True, result=self._result(event)))
            except MedSegError as error:
                self._finish(RunStatus(self._fraction, "failed", True, error=str(error)))
        elif kind == "preflight":
            self._finish(RunStatus(self._fraction, "needs a choice", True, preflight=event))
        elif kind == "cancelled":
            self._finish(RunStatus(self._fraction, "cancelled", True, cancelled=True))
        elif kind == "error":
            self._finish(RunStatus(self._fraction, "failed", True, error=str(event.get("message")),
                                   traceback=str(event.get("traceback", ""))))

    def _result(self, event: dict[str, Any]):
        if "labels" not in event:
            return event.get("result")
        spec = event["labels"]
        try:
            labels = np.array(read_array(spec, self.worker.exchange))  # a copy: the file goes now
        finally:
            self._inputs.append(Path(str(spec.get("path", ""))) if isinstance(spec, dict) else self._inputs[0])
        return SegmentationResult(labels, RunReport.from_dict(event.get("report", {})))

    def _worker_gone(self, why: str) -> None:
        if self._final is None:
            cancelled = self._cancel_sent is not None
            self._finish(RunStatus(self._fraction, "cancelled" if cancelled else "failed", True,
                                   error=None if cancelled else why, cancelled=cancelled))

    def _finish(self, status: RunStatus) -> None:
        self._final = RunStatus(**{**status.__dict__, "seconds": time.perf_counter() - self._started})
        for path in self._inputs:
            try:
                path.unlink(missing_ok=True)
            except OSError:  # Windows: still mapped by the worker; the folder goes when the worker ends
                pass


__all__ = ["CANCEL_GRACE", "RunStatus", "SegmentationWorker", "WorkerError", "WorkerRun", "worker_python"]
