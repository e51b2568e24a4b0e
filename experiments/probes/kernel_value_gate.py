"""The value gate of the hand-written Triton kernels: the same engine, one call, on each network with (a) the
Triton kernels, (b) the torch modules under torch.compile (modes below; the engine's CUDA graphs as by default,
off for reduce-overhead, which brings its own), (c) plain eager torch modules. Steady-state slices/s, and what a
Slicer user pays first: the first run in a fresh process with an empty kernel cache (cold) and with the cache
the cold process left (warm).

    python experiments/probes/kernel_value_gate.py [--networks mlla_unet:t,hrmedseg:default,tm_unet:t] [--json OUT]

The same machinery tries the ways a convolutional network can run faster (the GPU-run issue, xLSTM-UNet and
TM-UNet b): ``channels-last`` (the weights in channels-last memory order, so cuDNN runs its NHWC/NDHWC kernels and
every activation after the first convolution follows), ``channels-last-norm`` (also the instance norms written so
that they keep that order), ``graphs`` (the engine's CUDA graphs also for 3D tiles), and their combinations
(``channels-last-graphs``, ``channels-last-compile-default``):

    python experiments/probes/kernel_value_gate.py --networks xlstm_unet:bot_3d,nnunet_plain:3d_fullres \
        --variants triton,channels-last,graphs --caches cold --json OUT

Each (network, variant, cache) runs in its own process, so no compiled kernel or cache carries over unseen.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("triton", "compile-default", "compile-max-autotune-no-cudagraphs", "compile-reduce-overhead", "eager")
SPEED_VARIANTS = ("channels-last", "channels-last-norm", "graphs", "channels-last-graphs", "channels-last-compile-default")
# Four batches each: enough for the engine's CUDA graphs (it captures from four batches on) and a steady state.
INPUTS = {"hrmedseg:default": ("1x3x1024x1024x64", 16)}  # the rest: 512^2 x 128, 3 channels, batch 32
INPUT_3D = ("1x1x512x512x256", 4)  # the 3D bench volume, 128^3 tiles, 4 per batch
CHILD_TIMEOUT_S = 300  # a first run longer than this is recorded as such: no Slicer user waits it out


def child(entry: str, variant: str, repeat: int) -> dict:
    """In a fresh process: build, set the variant, time the first run, then the best of ``repeat``."""
    sys.path.insert(0, str(ROOT / "MedSegEfficient"))
    import torch

    from MedSegEfficientLib.cli.bench import bench_model, synthetic_volume
    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
    from MedSegEfficientLib.networks.triton_switch import disable_triton

    torch.backends.cudnn.benchmark = True  # as ``medseg bench``: the same shapes again and again
    shape, batch = INPUTS.get(entry, INPUT_3D if entry.endswith("_3d") or entry.endswith("3d_fullres")
                              else ("1x3x512x512x128", 32))
    volume = synthetic_volume(tuple(int(n) for n in shape.split("x")))
    args = argparse.Namespace(classes=14, patch=128)
    model = bench_model(entry, volume, args)
    if variant.startswith("compile-") or variant == "eager":
        disable_triton("the value gate's torch variants")
    graphs = True if "graphs" in variant else None
    if variant.startswith("channels-last"):
        dims = model.card.spatial_dims
        model.network = model.network.to(memory_format=torch.channels_last_3d if dims == 3 else torch.channels_last)
    if variant == "channels-last-norm":
        swap_instance_norms(model.network)
    if "compile-" in variant:
        mode = variant.partition("compile-")[2]
        model.network = torch.compile(model.network, mode=mode)
        graphs = False if mode == "reduce-overhead" else None
    segmenter = Segmenter(model, SegmentOptions(device="cuda", batch_size=batch, cuda_graphs=graphs))
    torch.cuda.synchronize()
    started = time.perf_counter()
    first = segmenter.segment(volume).report
    first_seconds = time.perf_counter() - started
    runs = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        runs.append(segmenter.segment(volume).report)
    best = min(runs, key=lambda report: report.seconds["network"])
    slices = volume.grid_shape[0]
    return {"entry": entry, "variant": variant, "first_run_seconds": round(first_seconds, 3),
            "first_network_seconds": round(first.seconds["network"], 3),
            "network_seconds": round(best.seconds["network"], 4),
            "whole_run_seconds": round(sum(best.seconds.values()), 4),
            "slices_per_second": round(slices / best.seconds["network"], 1) if model.card.spatial_dims == 2 else None,
            "peak_gpu_bytes": best.peak_gpu_bytes, "notices": best.notices,
            "mlstm_kernels": importlib.util.find_spec("mlstm_kernels") is not None}


def swap_instance_norms(network) -> None:
    """Replace each affine InstanceNorm by the same maths in reductions and elementwise ops, which keep the
    channels-last order; torch's instance norm copies a channels-last tensor to channels-first and back."""
    import torch
    from torch import nn

    class ChannelsLastInstanceNorm(nn.Module):
        def __init__(self, norm: nn.modules.instancenorm._InstanceNorm) -> None:
            super().__init__()
            self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            axes = tuple(range(2, x.dim()))
            variance, mean = torch.var_mean(x, dim=axes, keepdim=True, correction=0)
            shape = (1, -1) + (1,) * len(axes)
            scale = torch.rsqrt(variance.float() + self.eps).to(x.dtype) * self.weight.view(shape).to(x.dtype)
            return (x - mean) * scale + self.bias.view(shape).to(x.dtype)

    for module in list(network.modules()):
        for child_name, child_module in list(module.named_children()):
            if isinstance(child_module, nn.modules.instancenorm._InstanceNorm) and child_module.affine:
                setattr(module, child_name, ChannelsLastInstanceNorm(child_module))


def run_child(entry: str, variant: str, repeat: int, caches: Path) -> dict:
    environment = {**os.environ, "TRITON_CACHE_DIR": str(caches / "triton"),
                   "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor")}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--child", entry, variant, str(repeat)], env=environment,
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"entry": entry, "variant": variant, "error": f"no result within {CHILD_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"entry": entry, "variant": variant, "error": done.stderr.strip().splitlines()[-1:]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["process_seconds"] = round(time.perf_counter() - started, 2)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="mlla_unet:t,hrmedseg:default,tm_unet:t")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"also: {', '.join(SPEED_VARIANTS)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--caches", default="cold,warm", help="cold: an empty kernel cache; warm: the one it left")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for entry in args.networks.split(","):
        for variant in args.variants.split(","):
            with tempfile.TemporaryDirectory() as caches:
                compiles = "compile" in variant or variant == "triton"
                for cache in args.caches.split(",") if compiles else ("cold",):
                    row = run_child(entry, variant, args.repeat, Path(caches))
                    row["cache"] = cache
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": platform.node(), "rows": rows}
    try:
        import torch

        report.update(device=torch.cuda.get_device_name(0), torch=torch.__version__)
    except Exception:  # noqa: BLE001 - the figures stand without the name
        pass
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
