"""Sliding-window inference with Gaussian blending, in plain torch.

The same tiling and weighting as MONAI's ``sliding_window_inference`` (tile starts every ``roi * (1 - overlap)``,
the last tile flush with the far edge, a Gaussian importance map with sigma = roi / 8, clamped at 1e-3), which
the tests check it against. It is our own because importing MONAI costs 13-19 s on a GPU host with many
optional packages (experiments/benchmarks-log.md), more than a whole warm segmentation: inference must not import it.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Predictor = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start offsets along one axis; ``size`` is at least ``roi`` (the image is padded first)."""
    if size <= roi:
        return [0]
    interval = max(1, int(roi * (1 - overlap)))
    count = math.ceil((size - roi) / interval) + 1
    return sorted({min(index * interval, size - roi) for index in range(count)})


Placement = Callable[[int, int, float], list[int]]  # (axis size, tile, overlap) -> tile starts


def tile_origins(spatial: Sequence[int], roi: Sequence[int], overlap: float,
                 placement: Placement = tile_starts) -> list[tuple[int, ...]]:
    padded = [max(s, r) for s, r in zip(spatial, roi)]
    return list(itertools.product(*(placement(s, r, overlap) for s, r in zip(padded, roi))))


def gaussian_weights(roi: Sequence[int], device: torch.device, sigma_scale: float = 0.125) -> torch.Tensor:
    axes = []
    for size in roi:
        position = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
        axes.append(torch.exp(-0.5 * (position / (size * sigma_scale)) ** 2))
    weights = axes[0]
    for axis in axes[1:]:
        weights = weights[..., None] * axis
    weights = weights / weights.max()
    return weights.clamp_(min=1e-3)


def sliding_window(image: torch.Tensor, roi: Sequence[int], batch_size: int, predictor: Predictor,
                   overlap: float = 0.5, pad_value: float = 0.0, output_device: torch.device | None = None,
                   on_batch: Callable[[], None] | None = None, dtype: torch.dtype = torch.float32,
                   placement: Placement = tile_starts, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Blend ``predictor`` outputs over tiles of ``image`` (1, C, *spatial); returns (1, K, *spatial) in ``dtype``.

    Tiles run on ``image``'s device; the blended output accumulates on ``output_device`` (the host, for
    volumes whose class scores would not fit in GPU memory) in ``dtype`` (float16 halves the largest buffer
    of a GPU run). ``on_batch`` runs after every batch of tiles. ``placement`` and ``weights`` (a tile's importance
    map) default to MONAI's; nnU-Net's mode gives its own (inference/nnunet/tiling.py).
    """
    spatial = tuple(image.shape[2:])
    roi = tuple(int(r) for r in roi)
    output_device = output_device or image.device
    # Pad small axes up to the tile, centred, as MONAI does.
    pads: list[int] = []
    for size, tile in zip(reversed(spatial), reversed(roi)):
        missing = max(tile - size, 0)
        pads += [missing // 2, missing - missing // 2]
    padded = F.pad(image, pads, value=pad_value) if any(pads) else image
    padded_spatial = tuple(padded.shape[2:])
    origins = tile_origins(padded_spatial, roi, overlap, placement)
    weights = (gaussian_weights(roi, output_device) if weights is None else weights.to(output_device)).to(dtype)
    output: torch.Tensor | None = None
    weight_sum = torch.zeros(padded_spatial, device=output_device, dtype=dtype)
    for first in range(0, len(origins), batch_size):
        group = origins[first:first + batch_size]
        tiles = torch.cat([padded[(slice(None), slice(None), *_window(o, roi))] for o in group])
        scores = predictor(tiles).to(output_device, dtype)
        if output is None:
            output = torch.zeros((1, scores.shape[1], *padded_spatial), device=output_device, dtype=dtype)
        for index, origin in enumerate(group):
            window = _window(origin, roi)
            output[(0, slice(None), *window)].addcmul_(scores[index], weights)  # fused: no temporary
            weight_sum[window] += weights
        if on_batch is not None:
            on_batch()
    output /= weight_sum
    crop = tuple(slice(pads[2 * (len(spatial) - 1 - axis)], pads[2 * (len(spatial) - 1 - axis)] + size)
                 for axis, size in enumerate(spatial))
    return output[(slice(None), slice(None), *crop)]


def count_batches(spatial: Sequence[int], roi: Sequence[int], overlap: float, batch_size: int,
                  placement: Placement = tile_starts) -> int:
    return math.ceil(len(tile_origins(spatial, roi, overlap, placement)) / batch_size)


def _window(origin: Sequence[int], roi: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(start, start + size) for start, size in zip(origin, roi))
