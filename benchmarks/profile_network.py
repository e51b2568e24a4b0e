"""Where a network's forward time goes: raw images/s (no engine) and the heaviest CUDA kernels.

    python3 benchmarks/profile_network.py --network mlla_unet:t --size 512 --batch 32 [--channels-last] [--top 20]

fp16 autocast, inference mode, random weights and input; best of ``--repeat`` timed passes after two warm-ups.
This is the tool behind the engine and network changes of issue 5; the figures that docs quote come from
``medseg bench`` through the engine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from MedSegEfficientLib.networks import build_network, get_network_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True, help="NAME[:PRESET]")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network first (what fusion could give)")
    parser.add_argument("--top", type=int, default=0, help="print the N kernels with the most CUDA time")
    parser.add_argument("--json", help="append the figures to this JSON-lines file")
    args = parser.parse_args()

    name, _, preset = args.network.partition(":")
    spec = get_network_spec(name)
    torch.manual_seed(0)
    network = build_network(name, spec.dims_for(preset or None), args.channels, args.classes,
                            preset or None).cuda().eval()
    image = torch.randn(args.batch, args.channels, args.size, args.size, device="cuda")
    if args.channels_last:
        network = network.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    if args.compile:
        network = torch.compile(network)

    def forward() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            return network(image)

    for _ in range(2):
        forward()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        forward()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    best = min(times)
    figures = {"network": args.network, "size": args.size, "batch": args.batch, "channels_last": args.channels_last, "compiled": args.compile,
               "images_per_second": round(args.batch / best, 1), "ms_per_batch": round(1000 * best, 2),
               "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
               "device": torch.cuda.get_device_name()}
    print(json.dumps(figures), flush=True)
    if args.json:
        with open(args.json, "a") as stream:
            stream.write(json.dumps(figures) + "\n")
    if args.top:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as profiler:
            forward()
            torch.cuda.synchronize()
        # Operators with their input shapes, by the GPU time of their own kernels.
        print(profiler.key_averages(group_by_input_shape=True).table(
            sort_by="self_cuda_time_total", row_limit=args.top, max_name_column_width=40, max_shapes_column_width=80))


if __name__ == "__main__":
    main()
