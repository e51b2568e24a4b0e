"""Test-time mirroring as the card asks: the network's scores averaged over the input and its mirror images along
the given image axes of the model grid (each flipped back first). Costs one more forward pass per axis; in
nnU-Net's mode, one per combination of axes (7 for three), as nnUNetPredictor mirrors."""

from __future__ import annotations

import itertools
from typing import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


def tensor_dims(axes: list[int], spatial_dims: int, slice_axis: int = 2) -> list[int]:
    """Image axes (x=0, y=1, z=2) as dims of the network's batch: (B, C, k, j, i) tiles, or (B, C, H, W) slices
    whose H and W are the image axes left after the slice axis, in array order."""
    if spatial_dims == 3:
        return [4 - axis for axis in axes]
    in_plane = [array_axis for array_axis in (1, 2, 3) if array_axis != 3 - slice_axis]  # of (C, k, j, i)
    return [2 + in_plane.index(3 - axis) for axis in axes]


def with_mirroring(forward: Forward, dims: list[int], combinations: bool = False) -> Forward:
    if not dims:
        return forward
    flips = [list(c) for n in range(1, len(dims) + 1) for c in itertools.combinations(dims, n)] if combinations \
        else [[dim] for dim in dims]

    def mirrored(images: torch.Tensor) -> torch.Tensor:
        first = forward(images)
        total = first.float()  # a new tensor: a CUDA graph's static output is overwritten by the next call
        if total.data_ptr() == first.data_ptr():
            total = total.clone()
        for flip in flips:
            total += forward(images.flip(flip)).float().flip(flip)
        return (total / (len(flips) + 1)).to(first.dtype)

    return mirrored


__all__ = ["tensor_dims", "with_mirroring"]
