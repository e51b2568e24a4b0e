"""TokenSeg's efficiency claims, measured: TokenSeg-K against its dense variant on one tile, and the share of kept
tokens whose cell holds a label boundary on a real CT (with a trained model).

  python experiments/probes/tokenseg_efficiency.py tiles --device cuda --json OUT.json
  python experiments/probes/tokenseg_efficiency.py boundaries MODEL.safetensors DATASET_FOLDER --json OUT.json

The 512x512x256 volume runs through the engine with `medseg bench` (experiments/probes/run_gpu_tokenseg.sh).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.datasets import describe_folder, load_cases
from MedSegEfficientLib.inference.gpu.devices import describe_device, select_device
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.inference.preprocessing import resample_labels, to_model_grid
from MedSegEfficientLib.inference.sliding_window import tile_origins


def measure_tiles(args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            for preset in ("tokenseg100", "dense"):
                torch.manual_seed(0)
                network = build_network("tokenseg", 3, 1, args.classes, preset=preset).to(device).eval()
                tiles = torch.randn(batch, 1, size, size, size, device=device)
                seconds, peak = _timed(network, tiles, device, args.repeat)
                row = {"preset": preset, "size": size, "batch": batch, "seconds": seconds, "peak_gib": peak,
                       "candidates": sum(int(np.prod(g)) for g in network._last["grids"])}
                rows.append(row)
                print(json.dumps(row), flush=True)
            sparse, dense = rows[-2], rows[-1]
            print(f"{size}^3 x{batch}: TokenSeg-100 {1 - sparse['seconds'] / dense['seconds']:+.0%} latency "
                  f"(as a cut: paper -68%), {1 - sparse['peak_gib'] / dense['peak_gib']:+.0%} memory (paper -64%)")
    return {"machine": _machine(device), "classes": args.classes, "rows": rows}


def _timed(network, tiles, device, repeat: int) -> tuple[float, float]:
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")
    best = float("inf")
    with torch.inference_mode(), autocast:
        network(tiles)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        for _ in range(repeat):
            start = time.perf_counter()
            network(tiles)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if device.type == "cuda" else float("nan")
    return round(best, 5), round(peak, 4)


def measure_boundaries(args: argparse.Namespace) -> dict:
    """Tile the validation CT as the engine does; per tile, the share of kept tokens on a boundary cell and the
    share of all candidate cells that hold one (what a random choice would reach)."""
    device = select_device(args.device)
    model = load_model(args.model, device)
    network, card = model.network, model.card
    # holds: the kept token's cell holds a boundary voxel; near: it or a neighbouring cell of its level does;
    # recall: boundary-holding cells kept; ceiling: the best "holds" share K tokens can reach on the tile.
    kept: dict[str, list[float]] = {"holds": [], "near": [], "recall": [], "ceiling": []}
    candidates = []
    for case in load_cases(describe_folder(args.dataset).validation):
        grid = to_model_grid(case.image, card)
        labels = torch.from_numpy(resample_labels(case.labels.array, case.labels, grid.geometry).astype(np.int64))
        roi = card.patch_size
        pads = [p for size, r in zip(reversed(labels.shape), reversed(roi)) for p in (0, max(r - size, 0))]
        image = F.pad(torch.from_numpy(grid.array), pads, value=float(grid.array.min()))  # air, as the engine pads
        labels = F.pad(labels, pads)
        for origin in tile_origins(tuple(image.shape[1:]), roi, 0.5):
            window = tuple(slice(o, o + r) for o, r in zip(origin, roi))
            tile, tile_labels = image[(slice(None), *window)], labels[window]
            with torch.inference_mode():
                network(tile[None].to(device))
            grids, selected = network._last["grids"], network._last["selected"][0]
            holds = network.boundary_targets(tile_labels[None, None].to(device), grids)[0]
            near = _within_one_cell(holds, grids)
            kept["holds"].append(float(holds[selected].mean()))
            kept["near"].append(float(near[selected].mean()))
            kept["recall"].append(float(holds[selected].sum() / holds.sum().clamp(min=1)))
            kept["ceiling"].append(min(1.0, float(holds.sum()) / selected.numel()))
            candidates.append(float(holds.mean()))
    result = {"machine": _machine(device), "model": str(args.model), "tiles": len(candidates),
              "keep": network.keep, "candidates_holding_boundary": round(float(np.mean(candidates)), 4),
              **{f"kept_{name}": round(float(np.mean(values)), 4) for name, values in kept.items()}}
    print(json.dumps(result))
    return result


def _within_one_cell(holds: torch.Tensor, grids) -> torch.Tensor:
    """Per level, a cell is near a boundary when it or one of its 26 neighbours holds one."""
    parts, start = [], 0
    for grid in grids:
        count = int(np.prod(grid))
        level = holds[start:start + count].view(1, 1, *grid)
        parts.append(F.max_pool3d(level, 3, 1, 1).flatten())
        start += count
    return torch.cat(parts)


def _machine(device: torch.device) -> dict:
    return {"device": describe_device(device), "torch": torch.__version__, "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tiles = commands.add_parser("tiles")
    tiles.add_argument("--sizes", type=int, nargs="+", default=[128])
    tiles.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    tiles.add_argument("--classes", type=int, default=14)
    tiles.add_argument("--repeat", type=int, default=5)
    boundaries = commands.add_parser("boundaries")
    boundaries.add_argument("model")
    boundaries.add_argument("dataset")
    for sub in (tiles, boundaries):
        sub.add_argument("--device", default="auto")
        sub.add_argument("--json")
    args = parser.parse_args()
    result = measure_tiles(args) if args.command == "tiles" else measure_boundaries(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
