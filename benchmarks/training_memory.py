"""Peak GPU memory and step time of fine-tuning a 2D network (forward, backward, Adam step), per image.

    python benchmarks/training_memory.py --network hrmedseg --presets default,checkpointed --size 1024 \
        --batches 4,16 --precisions fp32,bf16 --json experiments/results/training_memory_hrmedseg.json

"Per image" is the peak divided by the batch; "marginal" is the growth from the smallest to the largest batch
per added image (what one more image costs, weights and optimiser state excluded).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from MedSegEfficientLib.networks import build_network


def measure(network_name: str, preset: str, size: int, batch: int, precision: str, steps: int,
            classes: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    network = build_network(network_name, 2, 3, classes, preset=preset).to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    image = torch.randn(batch, 3, size, size, device=device)
    target = (torch.rand(batch, size, size, device=device) > 0.5).long()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(network(image).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device)
    return {"network": network_name, "preset": preset, "size": size, "batch": batch, "precision": precision,
            "peak_bytes": peak, "peak_gb_per_image": peak / batch / 1e9, "step_seconds": min(times[1:] or times),
            "images_per_second": batch / min(times[1:] or times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", default="hrmedseg")
    parser.add_argument("--presets", default="default,checkpointed")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batches", default="4,16")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cuda")
    rows = []
    batches = [int(b) for b in args.batches.split(",")]
    for preset in args.presets.split(","):
        for precision in args.precisions.split(","):
            group = [measure(args.network, preset, args.size, b, precision, args.steps, args.classes, device)
                     for b in batches]
            if len(group) > 1:
                marginal = (group[-1]["peak_bytes"] - group[0]["peak_bytes"]) / (batches[-1] - batches[0]) / 1e9
                for row in group:
                    row["marginal_gb_per_image"] = marginal
            for row in group:
                print(json.dumps(row), flush=True)
            rows += group
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"machine": {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                                   "python": platform.python_version()}, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
