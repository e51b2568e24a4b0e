"""The Slicer panel's path against the engine called directly, on one CT (issue: the panel as a real Slicer runs it).

The panel sends the volume to its worker process and polls it every 100 ms from a QTimer; this script does the
same through the same worker client, with the main thread either idle between polls or, as in Slicer, holding the
GIL in a C call (``ctypes.PyDLL``) between them. It prints, warm runs as the median of ``--repeat``:

- a cold ``medseg segment`` process and the worker's first run (process start, imports, model load included);
- warm: the engine called directly in this process, the worker path with an idle main thread, the worker path in
  Slicer's regime, and their ratios;
- Cancel: from the click to the run reported over, mid-network;
- the GPU memory the worker held while warm and what is held after it is ended (nvidia-smi, whole card).

With ``--panel`` (needs slicer-core and PySide6: the test set-up) it also times the whole panel run through the
module's real widget under Testing/slicer_application_standin.py, the segmentation added to a real MRML scene.

    python benchmarks/slicer_worker.py CT.nii.gz --device cpu|cuda [--model NAME] [--repeat 3] [--panel] [--json OUT]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.model.library import default_model_path, resolve_model_path
from MedSegEfficientLib.slicer.worker_client import SegmentationWorker
from MedSegEfficientLib.slicer.worker_protocol import volume_header

POLL_SECONDS = 0.1  # the panel's QTimer
_HOLD_GIL = ctypes.PyDLL(None).usleep  # PyDLL: the GIL stays held during the call


def poll_until_done(run, slicer_regime: bool):
    while True:
        status = run.status()
        if status.done:
            return status
        if slicer_regime:
            _HOLD_GIL(int(POLL_SECONDS * 1e6))
        else:
            time.sleep(POLL_SECONDS)


def worker_run(worker, volume, model: str, device: str, slicer_regime: bool = False) -> float:
    started = time.perf_counter()
    run = worker.submit("segment", {"model": model, "options": {"device": device}, "geometry": volume_header(volume)},
                        {"input": volume.array})
    status = poll_until_done(run, slicer_regime)
    if status.error or status.result is None:
        raise SystemExit(f"worker run failed: {status.error}")
    return time.perf_counter() - started


def cancel_latency(worker, volume, model: str, device: str) -> float:
    run = worker.submit("segment", {"model": model, "options": {"device": device}, "geometry": volume_header(volume)},
                        {"input": volume.array})
    while run.status().fraction < 0.3 and not run.status().done:  # the network is running
        time.sleep(0.01)
    started = time.perf_counter()
    run.cancel()
    status = poll_until_done(run, slicer_regime=True)
    if not status.cancelled:
        raise SystemExit("the run ended before it could be cancelled: use a larger image")
    return time.perf_counter() - started


def gpu_memory_used_mib() -> float | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return float(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.strip() else None


def cold_cli(image: str, model: str, device: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "MedSegEfficientLib.cli.main", "segment", image, "-o",
                   str(Path(folder) / "cold.nii.gz"), "--model", model, "--device", device, "--quiet"]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        return time.perf_counter() - started


def direct_runs(volume, model: str, device: str, repeat: int) -> list[float]:
    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter

    options = SegmentOptions(device=device, batch_size=1 if device == "cpu" else None)  # as the worker chooses
    segmenter = Segmenter.from_file(model, options)
    segmenter.segment(volume)  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        segmenter.segment(volume)
        times.append(time.perf_counter() - started)
    return times


def panel_runs(volume, model: str, device: str, repeat: int) -> list[float]:
    """The module's widget under the Slicer stand-in: click Segment, poll, add the segmentation to the scene."""
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "Testing")]
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication
    import slicer

    from slicer_application_standin import SlicerEventLoop, import_module_file
    from slicer_scene import SlicerLogics

    QApplication.instance() or QApplication([])
    logics = SlicerLogics()
    logics.install_application_globals()
    module = import_module_file()
    module.application.complete_startup()
    widget = module.application.open_module()
    node = logics.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    slicer.util.updateVolumeFromArray(node, volume.array)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras()))
    widget._parameterNode.inputVolume = node
    widget._parameterNode.modelPath = model
    widget._parameterNode.device = {"cpu": "CPU", "cuda": "GPU"}.get(device, "Auto")
    loop = SlicerEventLoop(slicer_regime=False)
    times = []
    for _ in range(repeat + 1):  # the first one starts the worker
        widget.ui.segmentButton.click()
        times.append(loop.run_until(lambda: widget._run is None))
        if widget.ui.statusLabel.text != "Done.":
            raise SystemExit(f"panel run failed: {widget.ui.statusLabel.text} {module.application.errors}")
    module.application.quit()
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--panel", action="store_true", help="also the whole panel run (slicer-core, PySide6)")
    parser.add_argument("--json")
    args = parser.parse_args()
    model = str(resolve_model_path(args.model))
    volume = read_image(args.image)
    figures: dict = {"image": Path(args.image).name, "grid": list(volume.grid_shape), "model": Path(model).stem,
                     "device": args.device, "machine": platform.node(), "date": time.strftime("%Y-%m-%d")}
    figures["cold_cli_seconds"] = cold_cli(args.image, model, args.device)
    memory_before = gpu_memory_used_mib()
    worker = SegmentationWorker()
    figures["worker_first_run_seconds"] = worker_run(worker, volume, model, args.device)
    idle, regime = [], []
    for _ in range(args.repeat):  # alternated, so that a slow moment hits both
        idle.append(worker_run(worker, volume, model, args.device, slicer_regime=False))
        regime.append(worker_run(worker, volume, model, args.device, slicer_regime=True))
    figures["cancel_to_ready_seconds"] = cancel_latency(worker, volume, model, args.device)
    memory_warm = gpu_memory_used_mib()
    worker.stop()
    time.sleep(1.0)
    memory_after = gpu_memory_used_mib()
    direct = direct_runs(volume, model, args.device, args.repeat)
    figures["runs"] = {"direct": direct, "worker_idle": idle, "worker_slicer_regime": regime}
    figures["direct_seconds"] = statistics.median(direct)
    figures["worker_idle_seconds"] = statistics.median(idle)
    figures["worker_slicer_regime_seconds"] = statistics.median(regime)
    figures["worker_over_direct"] = figures["worker_idle_seconds"] / figures["direct_seconds"]
    figures["slicer_regime_over_idle"] = figures["worker_slicer_regime_seconds"] / figures["worker_idle_seconds"]
    figures["first_run_over_cold_cli"] = figures["worker_first_run_seconds"] / figures["cold_cli_seconds"]
    if memory_before is not None:
        figures["gpu_mib_held_by_warm_worker"] = memory_warm - memory_before
        figures["gpu_mib_held_after_worker_ended"] = memory_after - memory_before
    if args.panel:
        figures["runs"]["panel"] = panel_runs(volume, model, args.device, args.repeat)
        figures["panel_seconds"] = statistics.median(figures["runs"]["panel"])
        figures["panel_over_direct"] = figures["panel_seconds"] / figures["direct_seconds"]
    for name, value in figures.items():
        if name == "runs":
            value = {run: " ".join(f"{seconds:.2f}" for seconds in times) for run, times in value.items()}
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
