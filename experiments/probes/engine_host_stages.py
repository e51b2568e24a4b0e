"""Per-stage times of every shipped model on a clinical-size CT held in memory, as Slicer hands the engine a volume
node's array: host stages (preprocessing, labels back to the input grid) against the network stage, warm, full and
fast quality.

    python experiments/probes/engine_host_stages.py --save-npz CT.npz            # here: the sample CT to a NumPy file
    python experiments/probes/engine_host_stages.py --npz CT.npz --device cuda --json OUT.json

The clinical-size CT is TotalSegmentator's example_ct (a real 3 mm CT) resampled linearly to 0.8 x 0.8 x 1.5 mm
(about 420 x 379 x 244 voxels, int16), on the run's device: no SimpleITK or file reader is needed where it runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MedSegEfficient"))

CLINICAL_SPACING = (0.8, 0.8, 1.5)


def save_npz(path: Path) -> None:
    from MedSegEfficientLib.io.images import read_image
    from MedSegEfficientLib.io.sample_data import sample_paths

    volume = read_image(sample_paths()["example_ct"])
    np.savez_compressed(path, array=volume.array.astype(np.int16), spacing=volume.spacing, origin=volume.origin,
                        direction=volume.direction)
    print(f"wrote {path}: {volume.grid_shape} at {volume.spacing} mm")


def clinical_volume(npz: Path, device):
    from MedSegEfficientLib.inference.torch_preprocessing import resampled
    from MedSegEfficientLib.volume import Volume

    with np.load(npz) as data:
        source = Volume(data["array"], tuple(data["spacing"]), tuple(data["origin"]), data["direction"])
    return resampled(source, CLINICAL_SPACING, device)


def measure(model: Path, volume, device: str, fast: bool, repeat: int) -> dict:
    import torch

    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter

    segmenter = Segmenter.from_file(model, SegmentOptions(device=device, fast=fast))
    segmenter.segment(volume)  # warm-up: kernels, allocator, graphs
    reports = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        reports.append(segmenter.segment(volume).report)
    best = min(reports, key=lambda report: sum(report.seconds.values()))
    seconds = {name: round(value, 4) for name, value in best.seconds.items()}
    network = seconds.get("network", 0.0)
    host = sum(value for name, value in seconds.items() if name != "network")
    return {"model": model.stem, "fast": fast, "seconds": seconds, "total_seconds": round(sum(seconds.values()), 4),
            "host_over_network": round(host / network, 3) if network else None,
            "total_over_network": round(sum(seconds.values()) / network, 3) if network else None,
            "peak_gpu_bytes": best.peak_gpu_bytes, "device": best.device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save-npz", help="write the sample CT here and stop")
    parser.add_argument("--npz", help="the sample CT written by --save-npz")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", help="comma-separated (default: every shipped model)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.save_npz:
        return save_npz(Path(args.save_npz))
    import torch

    from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR, resolve_model_path

    models = ([resolve_model_path(name) for name in args.models.split(",")] if args.models
              else sorted(SHIPPED_MODELS_DIR.glob("*.safetensors")))
    volume = clinical_volume(Path(args.npz), torch.device(args.device))
    rows = []
    for model in models:
        for fast in (False, True):
            row = measure(model, volume, args.device, fast, args.repeat)
            rows.append(row)
            stages = ", ".join(f"{name} {value:.3f}" for name, value in row["seconds"].items())
            print(f"{row['model']}{' fast' if fast else ''}: {row['total_seconds']:.3f} s ({stages}); whole run "
                  f"{row['total_over_network']}x the network stage", flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": platform.node(), "device": rows[0]["device"],
              "torch": torch.__version__, "volume_kji": list(volume.grid_shape), "spacing": list(volume.spacing),
              "runs": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
