"""Where a cold `medseg segment` spends its time before the first voxel: each step in a fresh process.

    python benchmarks/startup_profile.py [--device cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

STEPS = {
    "python": "pass",
    "import torch": "import torch",
    "torch + CUDA context": "import torch; torch.zeros(1).cuda(); torch.cuda.synchronize()",
    "import SimpleITK": "import SimpleITK",
    "import monai.inferers": "import monai.inferers",
    "import medseg engine": "import MedSegEfficientLib.inference.engine, MedSegEfficientLib.inference.file_pipeline",
    "engine + model on CUDA": ("import torch; from MedSegEfficientLib.inference.engine import Segmenter, SegmentOptions; "
                               "from MedSegEfficientLib.model.model_file import default_model_path; "
                               "Segmenter.from_file(default_model_path(), SegmentOptions(device='cuda')); "
                               "torch.cuda.synchronize()"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for name, code in STEPS.items():
        if args.device != "cuda" and "cuda" in code.lower():
            continue
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        results[name] = round(time.perf_counter() - started, 3)
        print(f"{name:<26} {results[name]:.2f} s", flush=True)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(results, stream, indent=2)


if __name__ == "__main__":
    main()
