"""Time and memory of a network against image size (2D: side^2, 3D: side^3), linear mLSTM beside the quadratic form.

    python benchmarks/scaling.py --network tm_unet:t --sizes 256,512,1024 [--device cuda] [--json OUT]
    python benchmarks/scaling.py --network xlstm_unet:enc_3d --dims 3 --sizes 64,128,192 --parallel-limit 64
    GPU figures: bash experiments/probes/run_gpu_scaling.sh
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.linear_attention.attention import LinearAttention, quadratic_reference
from MedSegEfficientLib.networks.mlstm.vil import ViLLayer
from MedSegEfficientLib.inference.peak_ram import peak_ram_bytes


def set_backend(network: torch.nn.Module, backend: str) -> None:
    """mLSTM backends (triton, chunkwise, parallel) for ViL layers; linear or quadratic for linear attention."""
    for layer in network.modules():
        if isinstance(layer, ViLLayer):
            layer.backend = backend
        elif isinstance(layer, LinearAttention):
            layer.__class__ = QuadraticAttention if backend in ("quadratic", "parallel") else LinearAttention


class QuadraticAttention(LinearAttention):
    """The benchmark's quadratic form: the same weights through the N x N reference (the fused CUDA path, which
    implements only LinearAttention's linear form, then steps aside)."""

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return quadratic_reference(self, x, height, width)


def time_forward(network, size: int, dims: int, batch: int, device: torch.device, repeat: int) -> tuple[float, int]:
    image = torch.randn(batch, network.in_channels_for_bench, *([size] * dims), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best = float("inf")
    with torch.inference_mode():
        network(image)  # warm-up
        for _ in range(repeat):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            network(image)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_ram_bytes()
    return best, int(memory)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", default="tm_unet:t")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--dims", type=int, choices=[2, 3], default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parallel-limit", type=int, default=512, help="largest size for the quadratic form")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backends", default="chunkwise,parallel",
                        help="mLSTM backends, the first one summarised (on a GPU: triton,chunkwise,parallel)")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    name, _, preset = args.network.partition(":")
    network = build_network(name, args.dims, 3, 2, preset=preset or None).eval().to(device)
    network.in_channels_for_bench = 3
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for backend in args.backends.split(","):
            if backend == "parallel" and size > args.parallel_limit:
                continue
            set_backend(network, backend)
            try:
                seconds, memory = time_forward(network, size, args.dims, args.batch, device, args.repeat)
            except torch.OutOfMemoryError:  # the quadratic form's S x S matrices: recorded, not fatal
                torch.cuda.empty_cache()
                rows.append({"size": size, "backend": backend, "error": "out of memory"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            rows.append({"size": size, "backend": backend, "seconds": seconds, "peak_memory_bytes": memory})
            print(json.dumps(rows[-1]), flush=True)
    first = args.backends.split(",")[0]
    linear = [row for row in rows if row["backend"] == first]
    for small, large in zip(linear, linear[1:]):
        print(f"{args.network} {first}: {(large['size'] / small['size']) ** args.dims:.1f}x the voxels -> "
              f"{large['seconds'] / small['seconds']:.2f}x the time")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"network": args.network, "dims": args.dims, "device": str(device), "threads": torch.get_num_threads(),
                       "batch": args.batch, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
