"""Where a 2D engine run's time goes beyond the network: the same volume through the engine with the real network
and with a network that costs no GPU time, beside each step of the engine's slice loop timed alone.

    python3 benchmarks/engine_overhead.py --network mlla_unet:t --input 1x3x512x512x256 --batch 32

CUDA only. Prints milliseconds per batch of slices: the engine's network stage with the real network and with the
null network (staging, the copy to the GPU, class argmax, labels back to the host, and the pipeline's fill and
drain), the raw network replayed as a CUDA graph, and the steps one by one.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch

from MedSegEfficientLib.cli.bench import bench_model
from MedSegEfficientLib.cli.bench import synthetic_volume
from MedSegEfficientLib.model.weights import LoadedModel
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.preprocessing import to_model_grid
from MedSegEfficientLib.networks.cost import parse_shape
from MedSegEfficientLib.inference.gpu.slice_staging import stage, staging_buffer


class NullNetwork(torch.nn.Module):
    """Returns one preallocated logits tensor of the right shape: the engine's work without the network's."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.logits: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        shape = (images.shape[0], self.classes, *images.shape[2:])
        if self.logits is None or tuple(self.logits.shape) != shape:
            self.logits = torch.randn(shape, device=images.device, dtype=torch.float16)
        return self.logits


def best_ms(step: Callable[[], object], repeat: int, cuda: bool = True) -> float:
    times = []
    for _ in range(repeat + 1):  # the first is a warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * min(times[1:])


def engine_ms(model: LoadedModel, volume, batch: int, graphs: bool | None, repeat: int) -> tuple[float, object]:
    """Best network-stage milliseconds of ``repeat`` runs after a warm-up, and the last run's labels."""
    segmenter = Segmenter(model, SegmentOptions(device="cuda", batch_size=batch, cuda_graphs=graphs))
    segmenter.segment(volume)
    runs = [segmenter.segment(volume) for _ in range(repeat)]
    return 1000 * min(run.report.seconds["network"] for run in runs), runs[-1].labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mlla_unet:t")
    parser.add_argument("--input", default="1x3x512x512x256", help="synthetic BxCxXxYxZ")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True

    volume = synthetic_volume(parse_shape(args.input))
    real = bench_model(args.network, volume, argparse.Namespace(classes=args.classes, patch=None))  # as medseg bench
    card = real.card
    null = LoadedModel(card=card, network=NullNetwork(args.classes))
    slices = volume.grid_shape[0]
    batches = math.ceil(slices / args.batch)
    per_batch = lambda ms: round(ms / batches, 2)

    figures: dict[str, float] = {}
    for graphs, label in ((None, "graphs"), (False, "eager")):
        engine_time, _ = engine_ms(real, volume, args.batch, graphs, args.repeat)
        figures[f"engine, real network, {label}"] = per_batch(engine_time)
    null_ms, null_labels = engine_ms(null, volume, args.batch, False, args.repeat)
    figures["engine, null network"] = per_batch(null_ms)
    # The null network gives every batch the same scores: every batch of labels must be their argmax, in order.
    expected = null.network.logits.argmax(1).to(torch.uint8).cpu().numpy()
    if slices % args.batch == 0 and not (null_labels.reshape(-1, *expected.shape) == expected).all():
        raise SystemExit("the engine's labels differ from the argmax of the scores it was given")

    grid = to_model_grid(volume, card).array  # (C, k, j, i) float32, as the engine reads it
    source = torch.from_numpy(grid)
    pinned = staging_buffer(source, args.batch, torch.float16, pinned=True)
    staging = best_ms(lambda: stage(source, 0, args.batch, pinned), args.repeat, cuda=False)
    figures["stage one batch on the host"] = round(staging, 2)
    on_gpu = pinned.cuda()
    upload = best_ms(lambda: on_gpu.copy_(pinned, non_blocking=True), args.repeat)
    figures["copy one batch to the GPU"] = round(upload, 2)
    network = real.network.cuda()
    from MedSegEfficientLib.inference.gpu.cuda_graphs import GraphedForward
    graphed = GraphedForward(network)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
        logits = graphed(on_gpu)
        figures["network, graph replay"] = round(best_ms(lambda: graphed(on_gpu), args.repeat), 2)
        labels = torch.empty((slices, *grid.shape[2:]), dtype=torch.uint8, device="cuda")
        figures["argmax into the labels"] = round(best_ms(
            lambda: labels[:args.batch].copy_(logits.argmax(1).to(torch.uint8)), args.repeat), 2)
        # The engine's way before label_download.py: one pageable copy of the whole label volume at the end.
        figures["all labels to the host (per batch)"] = per_batch(best_ms(lambda: labels.cpu().numpy(), args.repeat))

    width = max(map(len, figures))
    print(f"{args.network}, {args.input}, batch {args.batch}, {torch.cuda.get_device_name()}: ms per batch")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "network": args.network,
                                               "input": args.input, "batch": args.batch, "ms_per_batch": figures},
                                              indent=2))


if __name__ == "__main__":
    main()
