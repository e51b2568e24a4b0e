"""CUDA graphs in the engine: the labels with and without them, side by side, for registered networks (3D tiles
or 2D slice batches) with random weights on a synthetic CT (and whether each network could be captured at all).

  python benchmarks/cuda_graph_check.py --networks tokenseg:tokenseg100,nnunet_plain:3d_fullres --json OUT.json
  python benchmarks/cuda_graph_check.py --networks mlla_unet:t,hrmedseg --input 1x1x512x512x64 --batch 8
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from MedSegEfficientLib.cli.bench import bench_model, machine_description, synthetic_volume
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.networks.cost import parse_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", required=True)
    parser.add_argument("--input", default="1x1x256x256x128")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--batch", type=int, default=4, help="tiles (3D) or slices (2D) per pass")
    parser.add_argument("--json")
    args = parser.parse_args()
    args.image, args.batch_size = None, args.batch
    volume = synthetic_volume(parse_shape(args.input))
    rows = []
    for entry in args.networks.split(","):
        torch.manual_seed(0)
        model = bench_model(entry, volume, args)
        row = {"entry": entry}
        labels = {}
        for graphs in (False, True, True):  # the second graphed run is timed warm
            segmenter = Segmenter(model, SegmentOptions(device="cuda", batch_size=args.batch, cuda_graphs=graphs))
            torch.cuda.synchronize()
            start = time.perf_counter()
            result = segmenter.segment(volume)
            torch.cuda.synchronize()
            row[f"seconds_{'graph' if graphs else 'eager'}"] = round(time.perf_counter() - start, 3)
            labels[graphs] = result.labels
            row["notices"] = result.report.notices
        row["label_agreement"] = float(np.mean(labels[False] == labels[True]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine_description(torch.device("cuda")), "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
