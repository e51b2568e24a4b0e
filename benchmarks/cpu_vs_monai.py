"""Every shipped model end to end on the clinical-size CT on 2 CPU threads (`medseg segment`: a cold process and
warm runs, fast and full), beside MONAI's 3 mm pipeline (SegResNet, 96^3 windows, overlap 0.625, the labels back
on the input grid and saved) in the same call, as performance.md measured it.

    python benchmarks/make_clinical_ct.py /tmp/clinical.nii.gz
    python benchmarks/cpu_vs_monai.py /tmp/clinical.nii.gz [--models a,b] [--json OUT]

MONAI reads the CT with nibabel: pip install -e '.[bench]'.

Random SegResNet weights: speed does not depend on them. Peak RAM: the cold process's maximum resident size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "MedSegEfficient"), str(ROOT / "benchmarks")]
THREADS = 2


def monai_pipeline(image: str, output: str) -> float:
    """One MONAI 3 mm run, file in, label file out; returns its seconds."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet
    from monai.transforms import (Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, SaveImaged,
                                  ScaleIntensityRanged, Spacingd)

    started = time.perf_counter()
    torch.manual_seed(0)
    network = SegResNet(spatial_dims=3, in_channels=1, out_channels=12, init_filters=32).eval()
    pre = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), Orientationd("image", "RAS"),
                   Spacingd("image", (3.0, 3.0, 3.0), mode="bilinear"),
                   ScaleIntensityRanged("image", -1000, 1000, 0, 1, clip=True)])
    data = pre({"image": image})
    with torch.inference_mode():
        logits = sliding_window_inference(data["image"][None], (96, 96, 96), 2, network, overlap=0.625)
    data["pred"] = logits[0].argmax(0, keepdim=True).to(torch.uint8)
    post = Compose([Invertd("pred", pre, orig_keys="image", nearest_interp=True),
                    SaveImaged("pred", output_dir=str(Path(output).parent), output_postfix="monai",
                               separate_folder=False, print_log=False)])
    post(data)
    return time.perf_counter() - started


def monai_cold(image: str, workdir: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--monai-child", image, str(workdir / "monai.nii.gz")],
                          capture_output=True, text=True, check=True, env=_environment())
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_seconds": round(time.perf_counter() - started, 3), "peak_ram_bytes": child["peak_ram_bytes"]}


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--monai-child":
        import torch

        torch.set_num_threads(THREADS)
        monai_pipeline(sys.argv[2], sys.argv[3])
        print(json.dumps({"peak_ram_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--models", help="comma-separated (default: every shipped model)")
    parser.add_argument("--json")
    args = parser.parse_args()
    import torch

    from end_to_end import cold_run, warm_runs
    from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR, resolve_model_path

    torch.set_num_threads(THREADS)
    os.environ.update(_environment())  # the cold `medseg segment` processes inherit it
    models = ([resolve_model_path(name) for name in args.models.split(",")] if args.models
              else sorted(SHIPPED_MODELS_DIR.glob("*.safetensors")))
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} ({platform.machine()})",
              "threads": THREADS, "image": Path(args.image).name, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        report["monai_3mm"] = {"cold": monai_cold(args.image, workdir),
                               "warm_seconds": round(min(monai_pipeline(args.image, str(workdir / "m.nii.gz"))
                                                         for _ in range(2)), 3)}
        print(f"MONAI 3 mm: cold {report['monai_3mm']['cold']['wall_seconds']} s, warm "
              f"{report['monai_3mm']['warm_seconds']} s", flush=True)
        for model in models:
            runs = {}
            for quality, fast in (("fast", True), ("full", False)):
                runs[f"{quality}_cold"] = cold_run(args.image, str(model), "cpu", fast, workdir)
                runs[f"{quality}_warm"] = warm_runs(args.image, str(model), "cpu", fast, workdir, 1)
            monai = report["monai_3mm"]
            runs["fast_cold_over_monai_cold"] = round(runs["fast_cold"]["wall_seconds"] / monai["cold"]["wall_seconds"], 3)
            runs["fast_warm_over_monai_warm"] = round(runs["fast_warm"]["wall_seconds"] / monai["warm_seconds"], 3)
            report["models"][model.stem] = runs
            print(f"{model.stem}: fast cold {runs['fast_cold']['wall_seconds']} s "
                  f"({runs['fast_cold_over_monai_cold']}x MONAI), warm {runs['fast_warm']['wall_seconds']} s "
                  f"({runs['fast_warm_over_monai_warm']}x); full cold {runs['full_cold']['wall_seconds']} s, warm "
                  f"{runs['full_warm']['wall_seconds']} s; peak RAM {runs['fast_cold']['peak_ram_bytes'] / 2**30:.2f} "
                  "GiB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
