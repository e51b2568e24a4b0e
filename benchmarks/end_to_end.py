"""File in, .seg.nrrd out, on one CT: a cold `medseg segment` process (imports, device start-up, model load
included) and warm runs in one process (the model loaded once, as in Slicer), full and fast quality.

    python benchmarks/end_to_end.py CT.nii.gz --model MODEL --device cpu|cuda --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.inference.gpu.devices import describe_device, select_device
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.file_pipeline import segment_file


def cold_run(image: str, model: str, device: str, fast: bool, workdir: Path) -> dict:
    command = [sys.executable, "-m", "MedSegEfficientLib.cli.main", "segment", image, "-o", str(workdir / "cold.seg.nrrd"),
               "--model", model, "--device", device, "--quiet", "--json", str(workdir / "cold.json")]
    if fast:
        command.append("--fast")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    report = json.loads((workdir / "cold.json").read_text())
    return {"wall_seconds": round(wall, 3), "stage_seconds": report["seconds"],
            "peak_ram_bytes": report["peak_ram_bytes"], "peak_gpu_bytes": report["peak_gpu_bytes"]}


def warm_runs(image: str, model: str, device: str, fast: bool, workdir: Path, repeat: int) -> dict:
    segmenter = Segmenter.from_file(model, SegmentOptions(device=device, fast=fast))
    segment_file(segmenter, image, workdir / "warm.seg.nrrd")  # warm-up
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = segment_file(segmenter, image, workdir / "warm.seg.nrrd")
        wall = time.perf_counter() - started
        if best is None or wall < best["wall_seconds"]:
            best = {"wall_seconds": round(wall, 3), "stage_seconds": {k: round(v, 3) for k, v in result.report.seconds.items()},
                    "peak_ram_bytes": result.report.peak_ram_bytes, "peak_gpu_bytes": result.report.peak_gpu_bytes}
    return best


def respaced_copy(model: str, spacing: float, workdir: Path) -> Path:
    from MedSegEfficientLib.model.weights import load_model, save_model

    loaded = load_model(model)
    loaded.card.spacing = [spacing] * loaded.card.spatial_dims
    return save_model(workdir / f"respaced_{spacing}mm.safetensors", loaded.card, loaded.network)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image")
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--spacing", type=float, help="run the model's network at this spacing (mm) instead: "
                        "a speed measurement only, the labels are meaningless off the trained spacing")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"image": args.image, "model": Path(args.model).name, "python": platform.python_version(),
               "device": describe_device(select_device(args.device)), "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        if args.spacing:
            args.model = str(respaced_copy(args.model, args.spacing, workdir))
            results["spacing_override_mm"] = args.spacing
        for quality, fast in (("fast", True), ("full", False)):
            results["runs"][f"{quality}_cold"] = cold_run(args.image, args.model, args.device, fast, workdir)
            results["runs"][f"{quality}_warm"] = warm_runs(args.image, args.model, args.device, fast, workdir, args.repeat)
            print(quality, json.dumps(results["runs"][f"{quality}_cold"]), json.dumps(results["runs"][f"{quality}_warm"]),
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
