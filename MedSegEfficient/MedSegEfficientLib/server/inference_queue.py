"""Requests to one worker thread per device (one per GPU, or one for the CPU), each holding its models loaded
once. Admission is bounded: a request takes a slot before its upload is read, and when every worker is busy and
``waiting`` requests already wait, the next is refused at once (the HTTP layer answers 503)."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError


class QueueFull(MedSegError):
    pass


class Slot:
    """A place in the queue; released once, by the worker that ran its job or by the handler that gave up."""

    def __init__(self, owner: "InferenceQueue") -> None:
        self._owner = owner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._owner._give_back()


@dataclass
class _Job:
    model: str
    input: Path
    output: Path
    slot: Slot
    future: Future


class InferenceQueue:
    def __init__(self, models: dict[str, Path], devices: list[str], waiting: int = 16, fast: bool = False) -> None:
        if waiting < 0:
            raise MedSegError(f"--queue must be 0 or more, not {waiting}")
        self.models = models
        self.capacity = len(devices) + waiting
        self.fast = fast
        self._lock = threading.Lock()
        self._taken = 0
        self._jobs: queue.Queue = queue.Queue()
        self._workers = [threading.Thread(target=self._work, args=(device,), name=f"medseg-{device}", daemon=True)
                         for device in devices]
        self._ready = threading.Barrier(len(devices) + 1)
        self._start_errors: list[BaseException] = []
        for worker in self._workers:
            worker.start()
        self._ready.wait()  # every worker has loaded the first model, or said why not
        if self._start_errors:
            self.close()
            raise self._start_errors[0]

    @property
    def taken(self) -> int:
        with self._lock:
            return self._taken

    def admit(self) -> Slot:
        with self._lock:
            if self._taken >= self.capacity:
                raise QueueFull(f"the server is busy: {self._taken} requests running or waiting; try again later")
            self._taken += 1
        return Slot(self)

    def submit(self, slot: Slot, model: str, input_path: Path, output_path: Path) -> Future:
        if model not in self.models:
            slot.release()
            raise MedSegError(f"unknown model '{model}' (served: {', '.join(self.models)})")
        future: Future = Future()
        self._jobs.put(_Job(model, input_path, output_path, slot, future))
        return future

    def close(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(timeout=60)

    def _give_back(self) -> None:
        with self._lock:
            self._taken -= 1

    def _work(self, device: str) -> None:
        from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
        from MedSegEfficientLib.inference.file_pipeline import segment_file

        loaded: dict[str, Segmenter] = {}
        options = SegmentOptions(device=device, fast=self.fast)
        try:
            first = next(iter(self.models))
            loaded[first] = Segmenter.from_file(self.models[first], options)
        except BaseException as error:  # noqa: BLE001 - reported by the constructor
            self._start_errors.append(error)
        self._ready.wait()
        while (job := self._jobs.get()) is not None:
            try:
                if job.model not in loaded:
                    loaded[job.model] = Segmenter.from_file(self.models[job.model], options)
                job.future.set_result(segment_file(loaded[job.model], job.input, job.output))
            except BaseException as error:  # noqa: BLE001 - the request's failure, not the worker's
                job.future.set_exception(error)
            finally:
                job.slot.release()


__all__ = ["InferenceQueue", "QueueFull", "Slot"]
