"""Where a network's forward time goes: raw images/s (no engine) and the heaviest CUDA kernels.

    python3 experiments/probes/profile_network.py --network mlla_unet:t --size 512 --batch 32 [--channels-last] [--top 20]

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
    parser.add_argument("--graphs", action="store_true", help="time replays of a CUDA graph of the forward pass, "
                        "as the engine runs 2D slice batches")
    parser.add_argument("--top", type=int, default=0, help="print the N kernels with the most CUDA time")
    parser.add_argument("--modules", default="", help="comma-separated class names (MLLABlock,Downsample,...): "
                        "milliseconds per call of each between CUDA events (eager), grouped by class and input width")
    parser.add_argument("--fused-max-width", type=int, help="MLLA blocks up to this width take the fused kernels "
                        "(mlla_fused.FUSED_BLOCK_MAX_WIDTH; 0: none)")
    parser.add_argument("--wide-min-width", type=int, help="MLLA blocks from this width take the wide path, cuBLAS "
                        "products around the Triton attention (mlla_fused.WIDE_BLOCK_MIN_WIDTH)")
    parser.add_argument("--project-in-kernel-max-width", type=int, help="fused MLLA blocks up to this width "
                        "project the attention in its output kernel (mlla_fused.PROJECT_IN_KERNEL_MAX_WIDTH)")
    parser.add_argument("--json", help="append the figures to this JSON-lines file")
    args = parser.parse_args()

    from MedSegEfficientLib.networks.linear_attention import mlla_fused
    for option, setting in (("fused_max_width", "FUSED_BLOCK_MAX_WIDTH"), ("wide_min_width", "WIDE_BLOCK_MIN_WIDTH"),
                            ("project_in_kernel_max_width", "PROJECT_IN_KERNEL_MAX_WIDTH")):
        if getattr(args, option) is not None:
            setattr(mlla_fused, setting, getattr(args, option))
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

    def eager() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, cache_enabled=not args.graphs):
            return network(image)

    forward = eager
    if args.graphs:
        from MedSegEfficientLib.inference.gpu.cuda_graphs import GraphedForward

        graphed = GraphedForward(lambda batch: network(batch))

        def forward() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                return graphed(image)

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
    if args.graphs and graphed.disabled_because:
        print(f"no graph: {graphed.disabled_because}")
    figures = {"network": args.network, "graphs": args.graphs, "wide_min_width": mlla_fused.WIDE_BLOCK_MIN_WIDTH,
               "project_in_kernel_max_width": mlla_fused.PROJECT_IN_KERNEL_MAX_WIDTH, "size": args.size,
               "batch": args.batch, "channels_last": args.channels_last, "compiled": args.compile,
               "images_per_second": round(args.batch / best, 1), "ms_per_batch": round(1000 * best, 2),
               "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
               "device": torch.cuda.get_device_name()}
    print(json.dumps(figures), flush=True)
    if args.json:
        with open(args.json, "a") as stream:
            stream.write(json.dumps(figures) + "\n")
    if args.modules:
        print_module_times(network, eager, args.modules.split(","))
    if args.top:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as profiler:
            eager()
            torch.cuda.synchronize()
        # Operators with their input shapes, by the GPU time of their own kernels.
        print(profiler.key_averages(group_by_input_shape=True).table(
            sort_by="self_cuda_time_total", row_limit=args.top, max_name_column_width=40, max_shapes_column_width=80))


def print_module_times(network: torch.nn.Module, forward, class_names: list[str]) -> None:
    """CUDA events recorded before and after every module of the named classes during one eager forward pass; per
    (class, input width): calls and mean milliseconds between the events. Where the host launches kernels more
    slowly than the GPU runs them (small late stages), launch gaps count too."""
    events: dict[tuple[str, int], list] = {}
    handles = []
    for module in network.modules():
        kind = type(module).__name__
        if kind not in class_names:
            continue

        def before(module, inputs, kind=kind):
            x = inputs[0]
            width = x.shape[-1] if kind == "MLLABlock" else x.shape[1]  # tokens (B, N, C) or maps (B, C, H, W)
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            module._timing = (kind, width, start)

        def after(module, inputs, output):
            kind, width, start = module._timing
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            events.setdefault((kind, width), []).append((start, end))

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    forward()
    torch.cuda.synchronize()
    for handle in handles:
        handle.remove()
    for (kind, width), pairs in sorted(events.items()):
        times = [start.elapsed_time(end) for start, end in pairs]
        print(f"{kind:<12} width {width:>4}: {len(times):>2} calls, {sum(times) / len(times):.3f} ms each, "
              f"{sum(times):.2f} ms in all", flush=True)


if __name__ == "__main__":
    main()
