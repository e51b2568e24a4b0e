"""Time and peak memory of the mLSTM cell against sequence length: chunkwise (linear) beside parallel (quadratic).

    python experiments/probes/mlstm_scaling.py [--device cpu|cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from MedSegEfficientLib.networks.mlstm.cell import mlstm_chunkwise, mlstm_parallel
from MedSegEfficientLib.networks.mlstm.mlstm_kernels_backend import mlstm_triton, triton_available


def best_time(function, inputs, device, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            function(*inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--parallel-limit", type=int, default=4096, help="longest sequence for the quadratic form")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for length in (int(n) for n in args.lengths.split(",")):
        q, k, v = (torch.randn(1, 4, length, 32, device=device) for _ in range(3))
        i, f = torch.randn(1, 4, length, device=device), torch.randn(1, 4, length, device=device) + 3
        row = {"length": length, "chunkwise_s": best_time(mlstm_chunkwise, (q, k, v, i, f), device)}
        if length <= args.parallel_limit:
            row["parallel_s"] = best_time(mlstm_parallel, (q, k, v, i, f), device)
        if triton_available(device):
            row["triton_s"] = best_time(mlstm_triton, (q, k, v, i, f), device)
            with torch.inference_mode():
                reference = mlstm_chunkwise(q, k, v, i, f)
                error = (mlstm_triton(q, k, v, i, f) - reference).norm() / reference.norm()
            row["triton_relative_error"] = float(error)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for shorter, longer in zip(rows, rows[1:]):
        ratio = longer["chunkwise_s"] / shorter["chunkwise_s"]
        print(f"chunkwise: {longer['length'] // shorter['length']}x the length -> {ratio:.2f}x the time")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"device": str(device), "threads": torch.get_num_threads(), "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
