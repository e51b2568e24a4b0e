"""Cases per minute of `medseg batch` with 1 and then 2 workers, on the local engine and on Ray, in one call, on
one cohort.

    python benchmarks/batch_scaling.py [--cases 8] [--model abdomen_ct_demo] [--device cpu]
                                       [--engines local,ray] [--json OUT]

With --device cuda and --engines ray, the workers are Ray actors of one GPU each (a host with 2 GPUs: 1 vs 2 GPUs).

The cohort is built from the real sample CTs: example_ct and the aorta CT, each whole and cropped at several
offsets, so that the cases differ in size as a study's do. Each worker count runs on a fresh output folder; the
figure is the wall time of the whole batch, model loads included (what a user waits for).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from MedSegEfficientLib.batch.cases import collect_cases
from MedSegEfficientLib.batch.local_pool import run_local
from MedSegEfficientLib.batch.worker import WorkerSettings, threads_per_worker
from MedSegEfficientLib.batch.manifest import Manifest
from MedSegEfficientLib.batch.ray_engine import run_ray
from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.io.sample_data import sample_paths
from MedSegEfficientLib.model.library import resolve_model_path


def build_cohort(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    samples = sample_paths()
    sources = [read_image(samples[name]) for name in ("example_ct", "aorta_ct")]
    for index in range(count):
        volume = sources[index % len(sources)]
        k, j, i = volume.grid_shape
        step = index // len(sources)
        start = min(step * k // 8, k // 3)  # whole, then crops that start further down the scan
        crop = volume.with_array(volume.array[start:])
        write_label_image(crop.array, crop, folder / f"case{index:02d}.nii.gz")
    return folder


def measure(cohort: Path, out: Path, model: str, device: str, workers: int, engine: str) -> dict:
    cases = collect_cases([str(cohort)], out)
    settings = WorkerSettings(str(resolve_model_path(model)), device, False, threads_per_worker(workers))
    started = time.perf_counter()
    if engine == "ray":  # the Ray start is inside the figure, as a user waits for it
        summary = run_ray(cases, Manifest(out), settings, workers)
    else:
        summary = run_local(cases, Manifest(out), settings, workers)
    seconds = time.perf_counter() - started
    return {"engine": engine, "workers": workers, "threads_per_worker": settings.threads, "cases": len(cases),
            "done": len(summary.done), "failed": len(summary.failed), "seconds": round(seconds, 2),
            "cases_per_minute": round(60 * len(summary.done) / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--model", default="abdomen_ct_demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--json")
    args = parser.parse_args()
    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        cohort = build_cohort(Path(scratch) / "cohort", args.cases)
        rows = [measure(cohort, Path(scratch) / f"{engine}{workers}", args.model, args.device, workers, engine)
                for engine in engines for workers in (1, 2)]
    speed_ups = {engine: round(rows[2 * index + 1]["cases_per_minute"] / rows[2 * index]["cases_per_minute"], 2)
                 for index, engine in enumerate(engines)}
    report = {"machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
              "date": time.strftime("%Y-%m-%d"), "model": args.model, "device": args.device, "runs": rows,
              "speed_up_2_vs_1": speed_ups}
    for row in rows:
        print(f"{row['engine']}: {row['workers']} worker(s) x {row['threads_per_worker']} thread(s): "
              f"{row['done']}/{row['cases']} cases in {row['seconds']} s = {row['cases_per_minute']} cases/min")
    for engine, speed_up in speed_ups.items():
        print(f"{engine}: 2 workers vs 1: {speed_up}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
