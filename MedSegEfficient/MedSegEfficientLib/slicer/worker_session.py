"""What the segmentation worker does with each request: the engine side of the pipe.

One session lives in the worker process and keeps the loaded models (a Segmenter per model and options), so a
second run of the same model pays neither the load nor the CUDA start-up. Requests and answers are the JSON
messages of worker_protocol; volumes come in and labels go out as memory-mapped files in the exchange folder.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from MedSegEfficientLib.errors import Cancelled, MedSegError
from MedSegEfficientLib.slicer.worker_protocol import ProtocolError, read_array, volume_from, write_array

Send = Callable[[dict[str, Any]], None]
PROGRESS_INTERVAL = 0.1  # seconds between progress messages for one stage: the panel polls at 10 Hz


class WorkerSession:
    def __init__(self, exchange: Path, send: Send) -> None:
        self.exchange = exchange
        self.send = send
        self._segmenters: dict[tuple, Any] = {}

    def handle(self, request: dict[str, Any], cancelled: Callable[[], bool]) -> None:
        """Answer one request with exactly one final event ('done', 'preflight', 'cancelled' or 'error')."""
        run_id = request.get("id")
        try:
            handler = {"segment": self._segment, "preflight": self._preflight, "import_model": self._import_model,
                       "add_case": self._add_case, "finetune": self._finetune}.get(request.get("op"))
            if handler is None:
                raise ProtocolError(f"unknown request {request.get('op')!r}")
            handler(run_id, request, cancelled)
        except Cancelled:
            self.send({"event": "cancelled", "id": run_id})
        except MedSegError as error:
            self.send({"event": "error", "id": run_id, "message": str(error), "kind": type(error).__name__})
        except BaseException as error:  # noqa: BLE001 - any failure goes back to Slicer, never lost
            self.send({"event": "error", "id": run_id, "message": f"{type(error).__name__}: {error}",
                       "kind": type(error).__name__, "traceback": traceback.format_exc()})

    # --- requests --------------------------------------------------------------------------------------------
    def _segment(self, run_id, request: dict[str, Any], cancelled: Callable[[], bool]) -> None:
        options = self._options(request.get("options", {}))
        volume = volume_from(read_array(request["input"], self.exchange), request["geometry"])
        if request.get("check_first") and not self._answer_preflight(run_id, volume, request["model"], options,
                                                                     only_if_short=True):
            return
        progress = _ThrottledProgress(run_id, self.send)
        progress(0.0, "loading the model")
        segmenter = self.segmenter(request["model"], options)
        result = segmenter.segment(volume, progress=progress, cancel=cancelled)
        labels = write_array(self.exchange / f"labels-{run_id}.npy", np.ascontiguousarray(result.labels))
        self.send({"event": "done", "id": run_id, "labels": labels, "report": result.report.to_dict()})

    def _preflight(self, run_id, request: dict[str, Any], cancelled: Callable[[], bool]) -> None:
        shape, dtype = tuple(int(n) for n in request["shape"]), np.dtype(str(request["dtype"]))
        # Only the shape and geometry matter: a zero-strided array of that shape costs no memory.
        volume = volume_from(np.broadcast_to(np.zeros((), dtype), shape), request["geometry"])
        self._answer_preflight(run_id, volume, request["model"], self._options(request.get("options", {})),
                               only_if_short=False)

    def _import_model(self, run_id, request: dict[str, Any], cancelled: Callable[[], bool]) -> None:
        from MedSegEfficientLib.model.user_import import import_model_file  # validates every weight: torch

        self.send({"event": "done", "id": run_id, "result": str(import_model_file(request["path"]))})

    def _add_case(self, run_id, request: dict[str, Any], cancelled: Callable[[], bool]) -> None:
        """Keep a corrected case (labels already in the model's numbering) in the model's case folder."""
        from MedSegEfficientLib.model.model_file import read_card
        from MedSegEfficientLib.training.user_cases import add_case, cases_folder, stored_cases

        volume = volume_from(read_array(request["input"], self.exchange), request["geometry"])
        labels = np.asarray(read_array(request["labels"], self.exchange))
        model = Path(request["model"])
        card = read_card(model)
        folder = Path(request["cases"]) if request.get("cases") else cases_folder(model, card)
        stored = add_case(volume, labels, card, folder, name=request.get("name"), source=str(request.get("source", "")))
        self.send({"event": "done", "id": run_id, "result": {"case": stored.name, "folder": str(folder),
                                                             "count": len(stored_cases(folder))}})

    def _finetune(self, run_id, request: dict[str, Any], cancelled: Callable[[], bool]) -> None:
        """Improve the model on its cases (training/finetune.py): progress with the time left, Cancel between
        steps; the result says whether the new model was kept and where it is."""
        from MedSegEfficientLib.training.finetune import FinetuneSettings, finetune

        self._segmenters.clear()  # training needs the memory a warm model holds
        settings = FinetuneSettings(minutes=request.get("minutes"), device=str(request.get("device", "auto")),
                                    command=f"MedSegEfficient panel: Improve model ({Path(request['model']).name})")
        outcome = finetune(request["model"], Path(request["output"]) if request.get("output") else None,
                           Path(request["cases"]) if request.get("cases") else None, settings,
                           _ThrottledProgress(run_id, self.send), cancelled, log=lambda line: None)
        self.send({"event": "done", "id": run_id, "result": {
            "kept": outcome.kept, "output": str(outcome.output) if outcome.output else None,
            "summary": outcome.summary(), "mean_before": outcome.mean_before, "mean_after": outcome.mean_after,
            "estimate_seconds": outcome.estimate_seconds, "seconds": outcome.seconds, "notes": outcome.notes}})

    # --- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def _options(fields: dict[str, Any]):
        from MedSegEfficientLib.inference.engine import SegmentOptions
        from MedSegEfficientLib.inference.gpu.devices import select_device

        known = {field.name for field in dataclasses.fields(SegmentOptions)}
        unknown = set(fields) - known
        if unknown:
            raise ProtocolError(f"unknown run options: {', '.join(sorted(unknown))}")
        options = SegmentOptions(**fields)
        if options.batch_size is None and select_device(options.device).type == "cpu":
            options.batch_size = 1  # one tile a pass: as fast on a CPU, and Cancel then answers after one tile
        return options

    def segmenter(self, model_path: str, options):
        """The loaded model for these options: every option is in the key (check_memory too, so that 'Run
        anyway' is honoured by a model loaded for an earlier, checked run); a changed file is loaded again."""
        from MedSegEfficientLib.inference.engine import Segmenter

        stat = os.stat(model_path)
        key = (str(model_path), stat.st_mtime_ns, stat.st_size, tuple(dataclasses.astuple(options)))
        if key not in self._segmenters:
            self._segmenters.clear()  # one model at a time: the GPU memory goes to the model in use
            self._segmenters[key] = Segmenter.from_file(model_path, options)
        return self._segmenters[key]

    def _answer_preflight(self, run_id, volume, model_path: str, options, only_if_short: bool) -> bool:
        """Send the memory check; with ``only_if_short`` only when the run would not fit. True: go on."""
        from MedSegEfficientLib.inference.gpu.devices import select_device
        from MedSegEfficientLib.inference.preflight import check, free_memory
        from MedSegEfficientLib.model.model_file import read_card

        kind = select_device(options.device).type
        free_gpu, free_ram = free_memory(kind)
        preflight = check(volume, read_card(model_path), kind == "cuda", free_gpu, free_ram)
        if only_if_short and preflight.fits:
            return True
        self.send({"event": "preflight", "id": run_id, "fits": preflight.fits, "message": preflight.message(),
                   "advice": list(preflight.advice), "ram_bytes": int(preflight.estimate.ram_bytes),
                   "gpu_bytes": int(preflight.estimate.gpu_bytes or 0)})
        return False


class _ThrottledProgress:
    """Progress messages at most every PROGRESS_INTERVAL per stage (a new stage is always sent)."""

    def __init__(self, run_id, send: Send) -> None:
        self.run_id, self.send = run_id, send
        self._last, self._stage = 0.0, None

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage != self._stage or now - self._last >= PROGRESS_INTERVAL or fraction >= 1.0:
            self._last, self._stage = now, stage
            self.send({"event": "progress", "id": self.run_id, "fraction": float(fraction), "stage": str(stage)})


__all__ = ["WorkerSession"]
