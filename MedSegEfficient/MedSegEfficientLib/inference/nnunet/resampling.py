"""nnU-Net's resampling (``preprocessing/resampling/default_resampling.py``) in torch, on the run's device.

nnU-Net resizes with scikit-image's ``resize(order, mode='edge', anti_aliasing=False)``, i.e. SciPy's
``ndimage.zoom(grid_mode=True, mode='nearest')``: output voxel ``o`` of ``m`` samples the input (``n`` voxels) at
``(o + 0.5) * n / m - 0.5``, edges extended, and the result clipped to the input's range. Order 3 is a cubic
B-spline: SciPy pads 12 edge voxels, computes the spline coefficients with the recursive filter (pole sqrt(3) - 2,
reflecting initial conditions) and sums four coefficients per sample. All of it is separable, so it runs one axis
at a time here, identical up to float32 rounding (Testing/test_nnunet_resampling.py checks it against SciPy and
nnU-Net's own functions). For anisotropic spacings nnU-Net resamples in-plane with ``order`` (clipped slice by
slice) and along the slice axis with ``order_z`` (``map_coordinates``, unclipped).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from MedSegEfficientLib.model.nnunet_mode import Resampling

_SPLINE_PAD = 12  # edge voxels SciPy's zoom adds before its spline filter in 'nearest' mode
_POLE = math.sqrt(3.0) - 2.0  # the cubic B-spline's pole
_INIT_TERMS = 40  # |pole| ** 40 < 1e-22: the initial condition's sum, truncated where it no longer changes a float


def resize(data: torch.Tensor, shape: Sequence[int], settings: Resampling, separate: int | None) -> torch.Tensor:
    """``data`` (C, *spatial) float32 to ``shape`` as nnU-Net's ``resample_data_or_seg`` (not for labels), with
    ``separate`` from ``settings.separate_axis``."""
    shape = tuple(int(n) for n in shape)
    spatial = tuple(data.shape[1:])
    if spatial == shape:
        return data
    result = data
    for axis in (a for a in range(len(shape)) if a != separate):
        result = resize_axis(result, axis + 1, shape[axis], settings.order)
    if settings.order > 1:  # scikit-image clips to the range of what it resized: the volume, or each slice
        keep = (0,) if separate is None else (0, separate + 1)
        reduce = tuple(d for d in range(data.ndim) if d not in keep)
        low, high = data.amin(dim=reduce, keepdim=True), data.amax(dim=reduce, keepdim=True)
        result = torch.maximum(torch.minimum(result, high), low)
    if separate is not None and shape[separate] != spatial[separate]:
        result = resize_axis(result, separate + 1, shape[separate], settings.order_z)
    return result


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape`` (Python's round: halves to even)."""
    return tuple(int(round(s / t * n)) for n, s, t in zip(shape, spacing, target))


def sample_positions(count: int, length: int, device: torch.device) -> torch.Tensor:
    """Where output voxels ``0..count-1`` sample an axis of ``length`` voxels (float64, grid mode)."""
    return (torch.arange(count, dtype=torch.float64, device=device) + 0.5) * (length / count) - 0.5


def resize_axis(data: torch.Tensor, dim: int, count: int, order: int,
                positions: torch.Tensor | None = None) -> torch.Tensor:
    """``data`` resampled along ``dim`` to ``count`` voxels with a B-spline of ``order`` 0, 1 or 3, edges
    extended; or sampled at ``positions`` (order 0 or 1: a run of output voxels, read from a crop of the axis)."""
    length = data.shape[dim]
    if positions is None:
        if length == count:
            return data
        positions = sample_positions(count, length, data.device)
    if order in (0, 1):
        lower, upper, fraction = linear_corners(positions, length, order)
        if order == 0:
            return data.index_select(dim, lower)
        weight = _along(dim, data.ndim, fraction.to(data.dtype))
        return data.index_select(dim, lower) * (1 - weight) + data.index_select(dim, upper) * weight
    if order == 3:
        return _cubic_spline_axis(data, dim, positions)
    raise ValueError(f"spline order {order} is not one nnU-Net's plans use (0, 1 or 3)")


def linear_corners(positions: torch.Tensor, length: int, order: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For order 1, the lower and upper source voxel of each sample and the upper one's weight; for order 0, the
    nearest voxel twice (SciPy rounds halves up) and weight 0. Edges extended."""
    if order == 0:
        nearest = torch.floor(positions + 0.5).long().clamp_(0, length - 1)
        return nearest, nearest, torch.zeros_like(positions)
    below = torch.floor(positions)
    lower = below.long().clamp(0, length - 1)
    upper = (below.long() + 1).clamp_(0, length - 1)
    return lower, upper, positions - below


def _along(dim: int, ndim: int, values: torch.Tensor) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = values.numel()
    return values.view(shape)


def _cubic_spline_axis(data: torch.Tensor, dim: int, positions: torch.Tensor) -> torch.Tensor:
    coefficients = spline_coefficients(data, dim)
    positions = positions + _SPLINE_PAD
    base = torch.floor(positions)
    t = (positions - base).to(data.dtype)
    weights = ((1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6, (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6,
               t ** 3 / 6)
    last = coefficients.shape[dim] - 1
    result = None
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = (base.long() + offset).clamp_(0, last)
        term = coefficients.index_select(dim, index) * _along(dim, data.ndim, weight)
        result = term if result is None else result.add_(term)
    return result


def spline_coefficients(data: torch.Tensor, dim: int) -> torch.Tensor:
    """Cubic B-spline coefficients along ``dim`` of ``data`` padded by 12 edge voxels each side, as SciPy's
    ``spline_filter1d`` computes them for ``zoom``'s 'nearest' mode (the 12 voxels make its boundary rule moot)."""
    moved = data.movedim(dim, 0)
    first, last = moved[:1].expand(_SPLINE_PAD, *moved.shape[1:]), moved[-1:].expand(_SPLINE_PAD, *moved.shape[1:])
    c = torch.cat([first, moved, last]).mul_(6.0)  # the filter's gain, (1 - z)(1 - 1/z)
    z = _POLE
    terms = min(c.shape[0], _INIT_TERMS)
    powers = torch.tensor([z ** i for i in range(terms)], dtype=c.dtype, device=c.device)
    c[0] += z * torch.tensordot(powers, c[:terms], dims=1)  # causal start, reflecting boundary
    for i in range(1, c.shape[0]):
        c[i].add_(c[i - 1], alpha=z)
    c[-1].mul_(z / (z - 1))  # anticausal start
    for i in range(c.shape[0] - 2, -1, -1):
        torch.sub(c[i + 1], c[i], out=c[i]).mul_(z)
    return c.movedim(0, dim)


__all__ = ["linear_corners", "new_shape", "resize", "resize_axis", "sample_positions",
           "spline_coefficients"]
