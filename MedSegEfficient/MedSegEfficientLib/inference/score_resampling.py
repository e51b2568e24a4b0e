"""Labels on the input grid from class scores resampled to it, then the argmax there (as nnU-Net does), instead of
the argmax on the model grid brought back by nearest neighbour, which draws a 3 mm model's voxels as 3 mm steps
in a 0.8 mm CT's segmentation.

The model grid is the input reoriented (a permutation and flips of its axes) and rescaled along each axis
(``torch_preprocessing.AxisMapping``), so every input voxel lies in one cell of 2x2x2 model voxels and its scores
are the trilinear blend of those eight. Where all eight have the same argmax, so has any blend with non-negative
weights (of probabilities or of logits alike): the cell's label is the answer, without touching the scores. Only
the voxels in cells that straddle a boundary, a few percent of a CT, get their eight corners' scores gathered and
blended. It runs slab by slab of the input's slices on the scores' device, never holding more than ``CHUNK_BYTES``
of gathered scores; an input voxel past the model grid's edge takes the edge's scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from MedSegEfficientLib.inference.torch_preprocessing import AxisMapping

CHUNK_BYTES = 128 * 2**20  # gathered corner scores in float32, per chunk of boundary voxels
SLAB_VOXELS = 2**24  # input voxels per slab: its labels and cell flags on the device


@dataclass
class ScoresToResample:
    """A 3D run's class scores on the model grid, waiting to become the input grid's labels (the engine times
    that as postprocessing)."""

    scores: torch.Tensor  # (K, k, j, i)
    mapping: AxisMapping
    dtype: np.dtype
    probabilities: bool = True

    def labels(self) -> np.ndarray:
        return labels_from_resampled_scores(self.scores, self.mapping, self.dtype, self.probabilities)


class SliceLabelsOnInputGrid:
    """A 2D model's labels on the input grid, batch of slices by batch: each batch's scores (B, K, H, W), taken
    along model image axis ``slice_axis`` (never resampled: a 2D model keeps the slice spacing), go to the input
    grid's slices they came from as soon as they exist, so that no score volume is ever held."""

    def __init__(self, mapping: AxisMapping, slice_axis: int, dtype: np.dtype) -> None:
        self.mapping, self.slice_axis, self.dtype = mapping, slice_axis, np.dtype(dtype)
        x_count, y_count, z_count = mapping.input_shape
        self.labels = np.empty((z_count, y_count, x_count), dtype=self.dtype)
        self.input_axis = mapping.order[slice_axis]  # the input image axis the slices run along

    def put(self, start: int, scores: torch.Tensor) -> None:
        count = scores.shape[0]
        t = self.slice_axis
        # (B, K, H, W) -> (K, k, j, i) of the batch's sub-volume: the slices at model array dim 3 - t.
        volume = scores.movedim(1, 0).movedim(1, 3 - t)
        model_shape = tuple(count if axis == t else n for axis, n in enumerate(self.mapping.model_shape))
        input_shape = tuple(count if axis == self.input_axis else n
                            for axis, n in enumerate(self.mapping.input_shape))
        part = labels_from_resampled_scores(volume, AxisMapping(self.mapping.order, self.mapping.flipped,
                                                                input_shape, model_shape, self.mapping.scale),
                                            self.dtype)
        total = self.mapping.input_shape[self.input_axis]
        first = total - start - count if self.mapping.flipped[t] else start  # a flipped axis runs backwards
        index = [slice(None)] * 3
        index[2 - self.input_axis] = slice(first, first + count)
        self.labels[tuple(index)] = part


def labels_from_resampled_scores(scores: torch.Tensor, mapping: AxisMapping, dtype: np.dtype,
                                 probabilities: bool = True, chunk_bytes: int = CHUNK_BYTES,
                                 slab_voxels: int = SLAB_VOXELS) -> np.ndarray:
    """``scores`` (K, k, j, i) on the model grid -> labels (k, j, i) of the input grid, of ``dtype``.

    ``probabilities``: blend the softmax of the scores (a boundary falls halfway between a voxel of one class and
    one of the other, whatever the scale of the network's logits); False: the logits themselves, as nnU-Net's
    export does (a class whose logits fall steeply loses ground at its edges)."""
    label_dtype = torch.uint8 if np.dtype(dtype) == np.uint8 else torch.int32
    model_labels = _argmax(scores, label_dtype)
    if mapping.is_identity:
        return model_labels.cpu().numpy().astype(dtype, copy=False)
    uniform = _uniform_cells(model_labels)
    model_axis = {mapping.order[t]: t for t in range(3)}  # input image axis -> the model axis it became
    x_count, y_count, z_count = mapping.input_shape
    slab = max(1, slab_voxels // max(1, x_count * y_count))
    result = np.empty((z_count, y_count, x_count), dtype=dtype)
    in_plane = {axis: _cell_of(np.arange(mapping.input_shape[axis]), model_axis[axis], mapping, scores.device)
                for axis in (0, 1)}
    for start in range(0, z_count, slab):
        stop = min(start + slab, z_count)
        cells = {**in_plane, 2: _cell_of(np.arange(start, stop), model_axis[2], mapping, scores.device)}
        # Per model array dim d (model axis t = 2 - d): the cell of each input index along the input axis it holds.
        by_dim = [cells[mapping.order[2 - dim]] for dim in range(3)]
        labels = _gather3(model_labels, [cell.lower for cell in by_dim])
        straddling = ~_gather3(uniform, [cell.lower for cell in by_dim])
        if bool(straddling.any()):
            where = straddling.nonzero()
            labels[straddling] = _blended_argmax(scores, by_dim, where, probabilities, chunk_bytes).to(label_dtype)
        # Model array dim d holds input image axis order[2 - d]; the input's array is (z, y, x).
        order = [2 - model_axis[axis] for axis in (2, 1, 0)]
        result[start:stop] = labels.permute(*order).cpu().numpy()
    return result


class _Cells:
    """Along one model axis, for a run of input indices: the lower and upper model voxel and the upper's weight."""

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor) -> None:
        self.lower, self.upper, self.weight = lower, upper, weight


def _cell_of(indices: np.ndarray, t: int, mapping: AxisMapping, device: torch.device) -> _Cells:
    count = mapping.input_shape[mapping.order[t]]
    length = mapping.model_shape[t]
    reoriented = (count - 1 - indices) if mapping.flipped[t] else indices
    positions = np.clip(reoriented * mapping.scale[t], 0, length - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, length - 1)
    return _Cells(torch.from_numpy(lower).to(device), torch.from_numpy(upper).to(device),
                  torch.from_numpy((positions - lower).astype(np.float32)).to(device))


def _gather3(volume: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
    """``volume`` (k, j, i) at the outer product of three index runs."""
    return volume.index_select(0, indices[0]).index_select(1, indices[1]).index_select(2, indices[2])


def _argmax(scores: torch.Tensor, label_dtype: torch.dtype) -> torch.Tensor:
    """The model grid's labels, slab by slab (argmax's int64 result never covers the volume)."""
    labels = torch.empty(scores.shape[1:], dtype=label_dtype, device=scores.device)
    step = max(1, SLAB_VOXELS // max(1, scores[0, 0].numel()))
    for start in range(0, scores.shape[1], step):
        labels[start:start + step] = scores[:, start:start + step].argmax(0).to(label_dtype)
    return labels


def _uniform_cells(labels: torch.Tensor) -> torch.Tensor:
    """True at each model voxel whose cell (it and its upper neighbours, the edge repeated) has one label."""
    padded = torch.cat([labels, labels[-1:]], 0)
    padded = torch.cat([padded, padded[:, -1:]], 1)
    padded = torch.cat([padded, padded[:, :, -1:]], 2)
    k, j, i = labels.shape
    uniform = torch.ones(labels.shape, dtype=torch.bool, device=labels.device)
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                if dk or dj or di:
                    uniform &= padded[dk:dk + k, dj:dj + j, di:di + i] == labels
    return uniform


def _blended_argmax(scores: torch.Tensor, by_dim: list[_Cells], where: torch.Tensor, probabilities: bool,
                    chunk_bytes: int) -> torch.Tensor:
    """The argmax of the trilinear blend of the eight corner scores, for the slab voxels at ``where`` (n, 3)."""
    classes = scores.shape[0]
    flat = scores.reshape(classes, -1)
    if probabilities and flat.numel() * 4 <= chunk_bytes:  # small enough: the softmax once, not per corner
        flat, probabilities = flat.float().softmax(0), False
    strides = (scores.shape[2] * scores.shape[3], scores.shape[3], 1)
    chunk = max(1, chunk_bytes // (classes * 8 * 4 * 2))
    answers = []
    for start in range(0, where.shape[0], chunk):
        position = where[start:start + chunk]
        blended = None
        for corner in range(8):
            offset = torch.zeros(position.shape[0], dtype=torch.int64, device=scores.device)
            weight = torch.ones(position.shape[0], dtype=torch.float32, device=scores.device)
            for dim in range(3):
                cells, index = by_dim[dim], position[:, dim]
                high = (corner >> dim) & 1
                offset += (cells.upper if high else cells.lower)[index] * strides[dim]
                weight *= cells.weight[index] if high else 1 - cells.weight[index]
            values = flat[:, offset].float()
            if probabilities:
                values = values.softmax(0)
            blended = values * weight if blended is None else blended.addcmul_(values, weight.expand_as(values))
        answers.append(blended.argmax(0))
    return torch.cat(answers)


__all__ = ["CHUNK_BYTES", "ScoresToResample", "SliceLabelsOnInputGrid", "labels_from_resampled_scores"]
