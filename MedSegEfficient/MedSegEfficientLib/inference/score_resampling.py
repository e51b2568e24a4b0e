"""Labels on the input grid from class scores resampled to it, then the argmax there (as nnU-Net does), instead of
the argmax on the model grid brought back by nearest neighbour, which draws a 3 mm model's voxels as 3 mm steps
in a 0.8 mm CT's segmentation.

The model grid is the input reoriented (a permutation and flips of its axes) and rescaled along each axis
(``torch_preprocessing.AxisMapping``), so linear interpolation of the scores is separable: along each axis, two
neighbouring model slices weighted by the distance. It runs slab by slab of the input's slices, on the scores'
device, with a slab's scores in float32 never over ``SLAB_BYTES``; the whole score volume is never copied, and
only the labels of a slab come back to the host. An input voxel past the model grid's edge takes the edge's scores.
"""

from __future__ import annotations

import numpy as np
import torch

from MedSegEfficientLib.inference.torch_preprocessing import AxisMapping

SLAB_BYTES = 256 * 2**20  # a slab's interpolated scores in float32 (and as much again in temporaries)


def is_identity(mapping: AxisMapping) -> bool:
    return (mapping.order == (0, 1, 2) and not any(mapping.flipped) and mapping.model_shape == mapping.input_shape
            and np.allclose(mapping.scale, 1.0))


def labels_from_resampled_scores(scores: torch.Tensor, mapping: AxisMapping, dtype: np.dtype,
                                 probabilities: bool = True, slab_bytes: int = SLAB_BYTES) -> np.ndarray:
    """``scores`` (K, k, j, i) on the model grid -> labels (k, j, i) of the input grid, of ``dtype``.

    ``probabilities``: interpolate the softmax of the scores (a boundary falls halfway between a voxel of one class
    and one of the other, whatever the scale of the network's logits); False: the logits themselves, as nnU-Net's
    export does (a class whose logits fall steeply loses ground at its edges)."""
    label_dtype = torch.uint8 if np.dtype(dtype) == np.uint8 else torch.int32
    if is_identity(mapping):
        return _argmax_slabs(scores, label_dtype, slab_bytes).astype(dtype, copy=False)
    classes = scores.shape[0]
    x_count, y_count, z_count = mapping.input_shape
    slab = max(1, slab_bytes // max(1, classes * x_count * y_count * 4))
    # The model axis t that comes from input image axis a: the score dim it is on (dim 0 holds the classes).
    model_axis = {mapping.order[t]: t for t in range(3)}
    result = np.empty((z_count, y_count, x_count), dtype=dtype)
    for start in range(0, z_count, slab):
        stop = min(start + slab, z_count)
        part = scores
        # The input's slice axis first (it cuts the slab out), then the two in-plane axes.
        for step, (axis, indices) in enumerate(((2, np.arange(start, stop)), (1, np.arange(y_count)),
                                                (0, np.arange(x_count)))):
            t = model_axis[axis]
            part = _interpolate(part, 3 - t, _positions(indices, t, mapping), mapping.model_shape[t],
                                softmax=probabilities and step == 0)
        # Dim 3 - t holds input image axis order[t]; the input's array is (z, y, x): dims in that order.
        part = part.permute(0, *(3 - model_axis[axis] for axis in (2, 1, 0)))
        result[start:stop] = part.argmax(0).to(label_dtype).cpu().numpy()
        del part
    return result


def _positions(indices: np.ndarray, t: int, mapping: AxisMapping) -> np.ndarray:
    """Where input voxels ``indices`` (along input axis ``order[t]``) fall on model axis ``t``, in model voxels."""
    count = mapping.input_shape[mapping.order[t]]
    reoriented = (count - 1 - indices) if mapping.flipped[t] else indices
    return reoriented * mapping.scale[t]


def _interpolate(scores: torch.Tensor, dim: int, positions: np.ndarray, length: int,
                 softmax: bool = False) -> torch.Tensor:
    """Linear interpolation of ``scores`` along ``dim`` at ``positions``, clamped to the grid (edge replicated);
    the result in float32. ``softmax``: of the scores' softmax over the classes (dim 0), taken on the two
    neighbours only (the softmax of every voxel commutes with picking voxels)."""
    positions = np.clip(positions, 0, length - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, length - 1)
    weight = torch.from_numpy((positions - lower).astype(np.float32)).to(scores.device)
    shape = [1] * scores.ndim
    shape[dim] = len(positions)
    weight = weight.view(shape)
    low = scores.index_select(dim, torch.from_numpy(lower).to(scores.device)).float()
    high = scores.index_select(dim, torch.from_numpy(upper).to(scores.device)).float()
    if softmax:
        low, high = low.softmax(0), high.softmax(0)
    return low.lerp_(high, weight)


def _argmax_slabs(scores: torch.Tensor, label_dtype: torch.dtype, slab_bytes: int) -> np.ndarray:
    classes, depth = scores.shape[0], scores.shape[1]
    slab = max(1, slab_bytes // max(1, classes * scores[0, 0].numel() * 4))
    return np.concatenate([scores[:, start:start + slab].argmax(0).to(label_dtype).cpu().numpy()
                           for start in range(0, depth, slab)])


__all__ = ["SLAB_BYTES", "is_identity", "labels_from_resampled_scores"]
