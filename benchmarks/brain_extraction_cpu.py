"""The shipped brain model against its teacher on 2 CPU threads, head by head, in one call: `medseg segment` in a
cold process and warm (fast and full), beside deepbet 1.0.2 (our runner of its TorchScript files, warm and in a
cold process), and each one's Dice against deepbet's mask and the atlas masks.

    python training/make_brain_dataset.py /tmp/brain
    python benchmarks/brain_extraction_cpu.py /tmp/brain [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "MedSegEfficient"), str(ROOT / "benchmarks"), str(ROOT / "training" / "teachers")]
THREADS = 2
MODEL = "brain_t1_tokenseg"


def dice(found: np.ndarray, truth: np.ndarray) -> float:
    found, truth = found > 0, truth > 0
    return round(float(2 * (found & truth).sum() / max(found.sum() + truth.sum(), 1)), 4)


def teacher_times(models: Path, head: Path, workdir: Path) -> dict:
    import SimpleITK as sitk
    from deepbet_teacher import DeepbetTeacher, brain_mask

    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "training" / "teachers" / "deepbet_teacher.py"), str(models),
                    str(head), str(workdir / "p.nii.gz"), str(workdir / "m.nii.gz")], check=True, capture_output=True)
    cold = time.perf_counter() - started
    teacher, image = DeepbetTeacher(models), sitk.ReadImage(str(head))
    brain_mask(teacher.probability(image))  # warm-up
    started = time.perf_counter()
    brain_mask(teacher.probability(image))
    return {"cold_wall_seconds": round(cold, 3), "warm_seconds": round(time.perf_counter() - started, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the folder training/make_brain_dataset.py wrote")
    parser.add_argument("--deepbet-models", help="deepbet's data/models folder (default: where that script cached it)")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ.update({"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)})
    import torch

    torch.set_num_threads(THREADS)
    from end_to_end import cold_run, warm_runs
    from MedSegEfficientLib.io.images import read_image
    from MedSegEfficientLib.model.library import resolve_model_path
    from MedSegEfficientLib.model.model_file import read_card
    from MedSegEfficientLib.io.sample_data import cache_root

    data = Path(args.data)
    models = Path(args.deepbet_models) if args.deepbet_models else cache_root() / "deepbet-1.0.2"
    model = resolve_model_path(MODEL)
    trained_on = read_card(model).training.get("training_items", [])
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} ({platform.machine()})",
              "threads": THREADS, "model": MODEL, "trained_on": trained_on, "heads": {}}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        for head in sorted((data / "heads").glob("*_t1.nii.gz")):
            name = head.name[:-len("_t1.nii.gz")]
            entry = {"seen_in_training": f"{name}_t1" in trained_on, "deepbet": teacher_times(models, head, workdir)}
            for quality, fast in (("fast", True), ("full", False)):
                entry[f"{quality}_cold"] = cold_run(str(head), str(model), "cpu", fast, workdir)
                entry[f"{quality}_warm"] = warm_runs(str(head), str(model), "cpu", fast, workdir, 1)
            labels = read_image(workdir / "warm.seg.nrrd")  # the last warm run: full quality
            entry["dice_vs_deepbet"] = dice(labels.array, read_image(data / "teacher" / f"{name}_mask.nii.gz").array)
            atlas = data / "atlas" / f"{name}_mask.nii.gz"
            if atlas.exists():
                entry["dice_vs_atlas"] = dice(labels.array, read_image(atlas).array)
                entry["deepbet_vs_atlas"] = dice(read_image(data / "teacher" / f"{name}_mask.nii.gz").array,
                                                 read_image(atlas).array)
            report["heads"][name] = entry
            print(f"{name}{' (trained on)' if entry['seen_in_training'] else ' (held out)'}: ours fast cold "
                  f"{entry['fast_cold']['wall_seconds']} s, warm {entry['fast_warm']['wall_seconds']} s, full warm "
                  f"{entry['full_warm']['wall_seconds']} s; deepbet cold {entry['deepbet']['cold_wall_seconds']} s, "
                  f"warm {entry['deepbet']['warm_seconds']} s; Dice vs deepbet {entry['dice_vs_deepbet']}"
                  + (f", vs atlas {entry['dice_vs_atlas']} (deepbet {entry['deepbet_vs_atlas']})"
                     if "dice_vs_atlas" in entry else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
