"""``medseg bench``: registered networks (or model files) through the same engine on the same input.

Weights are random unless a model file is given (speed does not depend on them). Each entry gets one
warm-up run, then the best of ``--repeat`` runs is reported: time per stage, input voxels/s (3D) or
slices/s (2D), peak RAM and GPU memory, parameters and MACs per tile or slice.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from MedSegEfficientLib.model.card import LabelInfo, ModelCard, Normalization, NetworkInfo
from MedSegEfficientLib.model.library import resolve_model_path
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card, load_model
from MedSegEfficientLib.inference.gpu.devices import describe_device, select_device
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.networks import available_networks, get_network_spec
from MedSegEfficientLib.networks.cost import measure_cost, parse_shape
from MedSegEfficientLib.inference.peak_ram import RamSampler
from MedSegEfficientLib.volume import Volume


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    # Every entry runs the same shapes again and again: let cuDNN pick its fastest kernels once.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    volume = read_image(args.image) if args.image else synthetic_volume(parse_shape(args.input))
    results = {"machine": machine_description(device), "input": _describe_input(volume, args), "results": []}
    for entry in [item.strip() for item in args.networks.split(",") if item.strip()]:
        say(f"{entry}: building")
        try:
            result = bench_one(entry, volume, device, args)
        except MedSegError as error:
            result = {"entry": entry, "error": str(error)}
        results["results"].append(result)
        print(format_result(result), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def say(message: str) -> None:
    """Progress on stderr (the results go to stdout): a benchmark of several networks takes minutes."""
    print(f"medseg bench: {message}", file=sys.stderr, flush=True)


def synthetic_volume(shape: tuple[int, ...]) -> Volume:
    """A CT-sized int16 volume with HU-like values; ``shape`` is BxCxXxYxZ (x fastest, as scanners count)."""
    channels, x, y, z = shape[1], shape[2], shape[3], shape[4] if len(shape) == 5 else 1
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1500, size=(z, y, x) + ((channels,) if channels > 1 else ()), dtype=np.int16)
    return Volume(array, spacing=(0.8, 0.8, 1.0))


def bench_one(entry: str, volume: Volume, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    model = bench_model(entry, volume, args)
    dims = model.card.spatial_dims
    batch = args.batch_size or (4 if dims == 3 else 32)
    segmenter = Segmenter(model, SegmentOptions(device=device.type, fast=args.fast, batch_size=batch,
                                                cuda_graphs=args.cuda_graphs))
    runs = []
    with RamSampler() as ram:  # this entry's own peak, not the process's so far
        say(f"{entry}: warm-up")
        segmenter.segment(volume)  # warm-up: kernels, allocator, lazy imports
        for run_index in range(max(1, args.repeat)):
            say(f"{entry}: run {run_index + 1} of {max(1, args.repeat)}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            runs.append(segmenter.segment(volume).report)
    best = min(runs, key=lambda report: sum(report.seconds.values()))
    total = sum(best.seconds.values())
    unit_shape = (1, model.card.in_channels, *(model.card.patch_size or volume.grid_shape[1:]))
    cost = measure_cost(model.network, unit_shape)
    result = {
        "entry": entry, "network": model.card.network.name, "preset": model.card.network.preset,
        "spatial_dims": dims, "batch": batch, "parameters": cost.parameters, "macs_per_unit": cost.macs,
        "unit": "x".join(map(str, unit_shape[2:])), "seconds": {k: round(v, 4) for k, v in best.seconds.items()},
        "total_seconds": round(total, 4), "input_voxels_per_second": math.prod(volume.grid_shape) / total,
        "peak_gpu_bytes": max(r.peak_gpu_bytes for r in runs), "peak_ram_bytes": ram.peak,
        "device": best.device, "notices": best.notices,
    }
    if dims == 2:
        result["slices_per_second"] = volume.grid_shape[0] / best.seconds["network"]
    return result


def bench_model(entry: str, volume: Volume, args: argparse.Namespace) -> LoadedModel:
    if entry.endswith(".safetensors") or Path(entry).is_file():
        return load_model(entry)
    name, _, dims_text = entry.partition("/")
    name, _, preset = name.partition(":")
    if name not in {spec.name for spec in available_networks()}:
        return load_model(resolve_model_path(name))  # a shipped or imported model's name
    spec = get_network_spec(name)
    dims = int(dims_text[0]) if dims_text else spec.dims_for(preset or None)
    card = ModelCard(
        name=entry, network=NetworkInfo(name, preset or None), spatial_dims=dims, in_channels=volume.channels,
        labels=[LabelInfo(value=v, name=f"class_{v}") for v in range(1, args.classes)],
        normalization=Normalization(kind="ct", lower=-1000, upper=1000, mean=0, std=500), spacing=None,
        orientation="none", patch_size=[args.patch] * 3 if dims == 3 else None, size_divisor=128 if dims == 2 else 32,
    )
    torch.manual_seed(0)
    return LoadedModel(card=card, network=build_from_card(card).eval())


def machine_description(device: torch.device) -> dict[str, Any]:
    return {"device": describe_device(device), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def _describe_input(volume: Volume, args: argparse.Namespace) -> dict[str, Any]:
    return {"source": args.image or f"synthetic {args.input}", "grid_kji": list(volume.grid_shape),
            "spacing": list(volume.spacing), "voxels": math.prod(volume.grid_shape)}


def format_result(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{result['entry']}: error: {result['error']}"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items())
    speed = (f"{result['slices_per_second']:.1f} slices/s" if "slices_per_second" in result
             else f"{result['input_voxels_per_second'] / 1e6:.2f} Mvox/s")
    return (f"{result['entry']}: {result['total_seconds']:.2f} s ({stages}); {speed}; "
            f"{result['parameters'] / 1e6:.2f} M params, {result['macs_per_unit'] / 1e9:.1f} GMACs per {result['unit']}; "
            f"peak GPU {result['peak_gpu_bytes'] / 2**30:.2f} GiB, peak RAM {result['peak_ram_bytes'] / 2**30:.2f} GiB")
