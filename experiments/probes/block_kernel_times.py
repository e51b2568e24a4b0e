"""GPU time of each kernel in one MLLA block, per stage of MLLA-UNet-T at 512^2 with batch 32 (half precision,
inference: ``mlla_fused.block_path``'s choice, fused_block or wide_block).

    python3 experiments/probes/block_kernel_times.py [--stages 1,2,3,4] [--calls 10] [--json FILE]

The block runs ``--calls`` times under torch's profiler; each kernel's mean GPU time per block call is printed with
the block's total and the bandwidth the token tensors alone would need at that time (four token-sized reads and
writes per kernel is the floor for most of them). Run under Nsight Compute with ``--calls 1`` for the kernels'
limits, e.g. ``ncu -k regex:"^_(attention|depthwise|norm)" --launch-skip 21 --launch-count 7 --section
WarpStateStats python3 experiments/probes/block_kernel_times.py --stages 1 --calls 1 --plain`` (three warm-up calls of
seven kernels are skipped).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import ProfilerActivity, profile

from MedSegEfficientLib.networks.linear_attention.mlla_unet import MLLABlock

STAGES = {1: (64, 2, 128), 2: (128, 4, 64), 3: (256, 8, 32), 4: (512, 16, 16)}  # width, heads, grid side


def kernel_times(stage: int, batch: int, calls: int, plain: bool = False) -> dict | None:
    channels, heads, side = STAGES[stage]
    torch.manual_seed(stage)
    block = MLLABlock(channels, heads).cuda().eval().half()
    x = torch.randn(batch, side * side, channels, device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        for _ in range(3):  # compiles the kernels, prepares the weights
            block(x, side, side)
        torch.cuda.synchronize()
        if plain:  # Nsight Compute measures; torch's profiler would compete for the counters
            for _ in range(calls):
                block(x, side, side)
            torch.cuda.synchronize()
            return None
        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            for _ in range(calls):
                block(x, side, side)
            torch.cuda.synchronize()
    kernels = {}
    for event in profiler.key_averages():
        gpu_us = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        if gpu_us and event.key and not event.key.startswith("aten::"):
            kernels[event.key[:48]] = {"us_per_block": round(gpu_us / calls, 1), "launches": event.count // calls}
    total = sum(k["us_per_block"] for k in kernels.values())
    token_bytes = x.numel() * x.element_size()
    return {"stage": stage, "width": channels, "tokens": x.shape[0] * x.shape[1], "block_us": round(total, 1),
            "token_tensor_MB": round(token_bytes / 1e6, 1), "kernels": kernels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="1,2,3,4")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--plain", action="store_true", help="no torch profiler: for running under Nsight Compute")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = [kernel_times(int(stage), args.batch, args.calls, args.plain) for stage in args.stages.split(",")]
    if args.plain:
        return
    for result in results:
        print(f"stage {result['stage']} (width {result['width']}, {result['tokens']} tokens, token tensor "
              f"{result['token_tensor_MB']} MB): {result['block_us']} us per block")
        for name, figures in sorted(result["kernels"].items(), key=lambda item: -item[1]["us_per_block"]):
            moved_mb = 2 * result["token_tensor_MB"] * figures["launches"]  # one token read and one write per launch
            print(f"  {name:<48} {figures['us_per_block']:>7.1f} us  x{figures['launches']}  "
                  f"{1000 * moved_mb / figures['us_per_block']:>6.0f} GB/s at 2 token passes")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"device": torch.cuda.get_device_name(), "batch": args.batch, "stages": results}, stream,
                      indent=1)


if __name__ == "__main__":
    main()
