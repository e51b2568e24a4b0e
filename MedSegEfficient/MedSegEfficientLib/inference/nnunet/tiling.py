"""nnU-Net's sliding window (``inference/sliding_window_prediction.py``): tiles spread evenly over each axis, and
its Gaussian importance map, for the generic blending in ``inference/sliding_window.py``."""

from __future__ import annotations

import functools
import math
import numpy as np
import torch

_SIGMA_SCALE = 1.0 / 8
_TRUNCATE = 4.0  # SciPy's gaussian_filter default, which nnU-Net's compute_gaussian uses
_PEAK = 10.0  # nnU-Net's value_scaling_factor


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """``compute_steps_for_sliding_window`` along one axis: the fewest tiles whose step is at most
    ``tile * (1 - overlap)``, the first at 0 and the last flush with the far edge, spread evenly."""
    if size <= tile:
        return [0]
    step = tile * (1.0 - overlap)
    count = int(math.ceil((size - tile) / step)) + 1
    spacing = (size - tile) / (count - 1)
    return [int(np.round(spacing * index)) for index in range(count)]  # NumPy's round: halves to even


@functools.lru_cache(maxsize=8)  # asked for per 2D slice and per 3D run: made once per tile and device
def importance_map(tile: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``compute_gaussian(tile, 1/8, 10)``: SciPy's truncated, normalised Gaussian kernel along each axis, centred
    on voxel ``size // 2``, scaled to a peak of 10, rounded to float16 and its zeros raised to its smallest value.
    Shared between callers: read it, never write to it."""
    weights = torch.ones((), dtype=torch.float64)
    for size in tile:
        sigma = size * _SIGMA_SCALE
        radius = int(_TRUNCATE * sigma + 0.5)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 / sigma ** 2 * offsets ** 2)
        kernel /= kernel.sum()
        distance = torch.arange(size, dtype=torch.float64) - size // 2
        axis = torch.where(distance.abs() <= radius, kernel[(distance.long() + radius).clamp(0, 2 * radius)], 0.0)
        weights = weights[..., None] * axis
    weights = (weights / (weights.max() / _PEAK)).half()
    positive = weights[weights > 0]
    weights[weights == 0] = positive.min()
    return weights.float().to(device)


__all__ = ["importance_map", "tile_starts"]
