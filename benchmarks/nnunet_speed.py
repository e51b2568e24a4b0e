"""Speed against nnU-Net's own predictor, the same trained model at parity (benchmarks/nnunet_parity.py): a CT file
in, a label file out.

- fresh process: ``nnUNetPredictor.predict_from_files`` in a new Python (what ``nnUNetv2_predict`` runs) against
  ``medseg segment`` of the imported model, wall time of each whole process, alternating;
- warm: the file read, predicted and written again in one process, the model loaded once (median of --repeat).

    python benchmarks/nnunet_speed.py CT.nii.gz [--device cpu|cuda] [--repeat 3] [--json OUT.json]

Both run the model's two folds, mirrored along three axes, tile step 0.5 (nnUNetPredictor's defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MedSegEfficient"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nnunet_parity import FOLDS, MODEL, nnunet_predictor  # noqa: E402

NNUNET_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[5])
from nnunet_predictor import nnunet_predictor
predictor = nnunet_predictor(sys.argv[1], (0, 1), torch.device(sys.argv[4]))
predictor.predict_from_files([[sys.argv[2]]], [sys.argv[3]], save_probabilities=False, overwrite=True,
                             num_processes_preprocessing=1, num_processes_segmentation_export=1)
"""


def timed(command: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh_process(ct: Path, model_file: Path, device: str, repeat: int, folder: Path) -> dict[str, float]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "MedSegEfficient"),
                                                                 os.environ.get("PYTHONPATH", "")])}
    nnunet = [sys.executable, "-c", NNUNET_SCRIPT, str(MODEL), str(ct), str(folder / "nnunet"), device,
              str(ROOT / "benchmarks")]
    medseg = [sys.executable, "-m", "MedSegEfficientLib.cli", "segment", str(ct), "-o", str(folder / "medseg.nii.gz"),
              "--model", str(model_file), "--device", device]
    times: dict[str, list[float]] = {"nnUNetPredictor": [], "medseg": []}
    for _ in range(repeat):  # alternating, so that a slow spell of a shared machine hits both
        times["nnUNetPredictor"].append(timed(nnunet, environment))
        (folder / "medseg.nii.gz").unlink(missing_ok=True)
        times["medseg"].append(timed(medseg, environment))
    return {name: statistics.median(values) for name, values in times.items()}


def warm(ct: Path, model_file: Path, device: str, repeat: int, folder: Path) -> dict[str, float]:
    import torch

    from MedSegEfficientLib.inference.file_pipeline import segment_file
    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter

    predictor = nnunet_predictor(MODEL, torch.device(device))
    segmenter = Segmenter.from_file(model_file, SegmentOptions(device=device))
    times: dict[str, list[float]] = {"nnUNetPredictor": [], "medseg": []}
    for index in range(repeat + 1):  # the first of each warms up and is not counted
        started = time.perf_counter()
        predictor.predict_from_files([[str(ct)]], [str(folder / "nnunet_warm")], save_probabilities=False,
                                     overwrite=True, num_processes_preprocessing=1,
                                     num_processes_segmentation_export=1)
        if index:
            times["nnUNetPredictor"].append(time.perf_counter() - started)
        started = time.perf_counter()
        segment_file(segmenter, ct, folder / f"medseg_warm_{index}.nii.gz")
        if index:
            times["medseg"].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from MedSegEfficientLib.importers.nnunet_v2 import import_nnunet

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        model_file = import_nnunet(MODEL, folder / "parity.safetensors", [str(f) for f in FOLDS])
        results = {"fresh process": fresh_process(args.ct, model_file, args.device, args.repeat, folder),
                   "warm": warm(args.ct, model_file, args.device, args.repeat, folder)}
    for kind, times in results.items():
        ratio = times["nnUNetPredictor"] / times["medseg"]
        print(f"{kind:14s} nnUNetPredictor {times['nnUNetPredictor']:.2f} s, medseg {times['medseg']:.2f} s: "
              f"{ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "machine": platform.node(), "ct": args.ct.name,
                                         "date": time.strftime("%Y-%m-%d"), "results": results}, indent=1))


if __name__ == "__main__":
    main()
