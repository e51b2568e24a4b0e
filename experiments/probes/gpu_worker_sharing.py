"""Cases per minute of 1 against 2 batch workers sharing one GPU, in one call: each worker is a process holding the
model once (as `medseg batch` workers and Ray actors do), taking the next case from a shared queue.

    python experiments/probes/gpu_worker_sharing.py [--models abdomen_ct_demo,abdomen_ct_mlla_unet] [--cases 16]
                                            [--json OUT]

Each case is a CT-sized int16 volume (512 x 512 x 160-320 slices, HU-like values) made in the worker from its
index, standing in for the file read: the device machine has no SimpleITK, so `medseg batch` itself (files in
and out) cannot run there. The figure is the wall time of the whole cohort, model loads included.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MedSegEfficient"))

SLICES = (160, 200, 240, 280, 320)


def case_volume(index: int):
    import numpy as np

    from MedSegEfficientLib.volume import Volume

    rng = np.random.default_rng(index)
    array = rng.integers(-1000, 1500, size=(SLICES[index % len(SLICES)], 512, 512), dtype=np.int16)
    return Volume(array, spacing=(0.8, 0.8, 1.5))


def worker(model: str, cases, results) -> None:
    import torch

    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
    from MedSegEfficientLib.model.library import resolve_model_path

    torch.set_num_threads(4)
    segmenter = Segmenter.from_file(resolve_model_path(model), SegmentOptions(device="cuda"))
    while (index := cases.get()) is not None:
        started = time.perf_counter()
        result = segmenter.segment(case_volume(index))
        results.put((index, time.perf_counter() - started, int(result.labels.max()),
                     result.report.seconds.get("network", 0.0)))


def measure(model: str, workers: int, count: int) -> dict:
    context = multiprocessing.get_context("spawn")
    cases, results = context.Queue(), context.Queue()
    for index in range(count):
        cases.put(index)
    for _ in range(workers):
        cases.put(None)
    started = time.perf_counter()
    processes = [context.Process(target=worker, args=(model, cases, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    finished = [results.get(timeout=600) for _ in range(count)]
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    return {"model": model, "workers": workers, "cases": len(finished), "seconds": round(seconds, 2),
            "cases_per_minute": round(60 * len(finished) / seconds, 2),
            "mean_case_seconds": round(sum(row[1] for row in finished) / len(finished), 3),
            "mean_network_seconds": round(sum(row[3] for row in finished) / len(finished), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="abdomen_ct_demo,abdomen_ct_mlla_unet")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--json")
    args = parser.parse_args()
    import torch

    rows = [measure(model, workers, args.cases) for model in args.models.split(",") for workers in (1, 2)]
    for row in rows:
        print(f"{row['model']}: {row['workers']} worker(s): {row['cases']} cases in {row['seconds']} s = "
              f"{row['cases_per_minute']} cases/min (case {row['mean_case_seconds']} s, network "
              f"{row['mean_network_seconds']} s)", flush=True)
    speed_ups = {rows[i]["model"]: round(rows[i + 1]["cases_per_minute"] / rows[i]["cases_per_minute"], 2)
                 for i in range(0, len(rows), 2)}
    print(f"2 workers vs 1 on one GPU: {speed_ups}")
    report = {"machine": platform.node(), "device": torch.cuda.get_device_name(0), "date": time.strftime("%Y-%m-%d"),
              "torch": torch.__version__, "runs": rows, "speed_up_2_vs_1": speed_ups}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
