"""nnU-Net's pipeline around the network, for models whose card has the ``nnunet`` field (model/nnunet_mode.py):
what ``nnUNetPredictor`` does before and after its sliding window, in torch on the run's device.

Before (``DefaultPreprocessor.run_case_npy``): the array as stored (no reorientation), cropped to the box of its
non-zero voxels, normalised, then resampled to the plans' spacing with the data spline. After
(``export_prediction.convert_predicted_logits_to_segmentation_with_correct_shape``): the logits resampled to the
cropped input with the score spline, the argmax, and the labels put back in the box (0 outside). The logits go back
a slab of input slices at a time, blended only where their source voxels disagree (``blended_argmax``), so no
input-size score volume is ever held.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.inference.gpu.volume_upload import upload_volume
from MedSegEfficientLib.inference.nnunet.resampling import linear_corners, new_shape, resize, sample_positions
from MedSegEfficientLib.inference.preprocessing import ModelGrid, normalize
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.nnunet_mode import Resampling
from MedSegEfficientLib.volume import Volume

_SLAB_BYTES = 256 * 2**20  # float32 scores of one slab of input slices, with its interpolation's temporaries


@dataclass(frozen=True)
class NnUNetGridInfo:
    """Where the model grid came from, to bring the scores back."""

    input_shape: tuple[int, int, int]  # (k, j, i) of the input array
    box: tuple[slice, slice, slice]  # its non-zero box
    input_spacing: tuple[float, float, float]  # array order (k, j, i), as nnU-Net lists spacings
    model_spacing: tuple[float, float, float]


def nnunet_model_grid(volume: Volume, card: ModelCard, device: torch.device) -> ModelGrid:
    """The network's input grid as nnU-Net's preprocessing makes it, on ``device``."""
    mode = card.nnunet
    assert mode is not None
    source = upload_volume(volume.array, device)
    source = source[None] if source.ndim == 3 else source.movedim(-1, 0)  # (C, k, j, i)
    box = nonzero_box(source)
    data = source[(slice(None), *box)].to(torch.float32, copy=True)  # never normalise the caller's array in place
    del source
    normalize(data, card.normalization)
    spacing = tuple(float(s) for s in volume.spacing[::-1])
    target = model_spacing(card, spacing)
    shape = new_shape(data.shape[1:], spacing, target)
    if min(shape) < 1:
        raise InputImageError(f"the image's non-zero part {tuple(data.shape[1:])} is less than a voxel of model "
                              f"'{card.name}' ({target} mm) along an axis")
    grid = resize(data, shape, mode.data, mode.data.separate_axis(spacing, target)).contiguous()
    corner = np.asarray(volume.origin) + volume.direction @ (np.asarray([b.start for b in box[::-1]]) * volume.spacing)
    geometry = Volume(np.broadcast_to(np.uint8(0), shape), tuple(target[::-1]), tuple(corner), volume.direction)
    info = NnUNetGridInfo(tuple(volume.grid_shape), box, spacing, target)
    return ModelGrid(grid, geometry, None, info)


def nonzero_box(data: torch.Tensor) -> tuple[slice, slice, slice]:
    """``crop_to_nonzero``'s box: the voxels non-zero in any channel (filling holes, as nnU-Net does, moves no
    edge of the box); the whole array when it is all zero."""
    mask = (data != 0).any(dim=0)
    box = []
    for dim in range(3):
        present = torch.nonzero(mask.any(dim=tuple(d for d in range(3) if d != dim))).flatten()
        box.append(slice(int(present[0]), int(present[-1]) + 1) if present.numel() else slice(0, mask.shape[dim]))
    return tuple(box)


def model_spacing(card: ModelCard, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """The plans' spacing in array order; a 2D model keeps the input's slice spacing (nnU-Net's 2d)."""
    if card.spacing is None:
        return spacing
    target = tuple(float(s) for s in card.spacing[::-1])
    return (spacing[0], *target) if card.spatial_dims == 2 else target


class NnUNetScores:
    """Blended logits (K, *model grid) on their way to labels on the input grid."""

    def __init__(self, logits: torch.Tensor, info: NnUNetGridInfo, settings: Resampling,
                 dtype: type = np.uint8) -> None:
        self.logits, self.info, self.settings, self.dtype = logits, info, settings, dtype

    def labels(self) -> np.ndarray:
        info, settings, logits = self.info, self.settings, self.logits
        target = tuple(b.stop - b.start for b in info.box)
        separate = settings.separate_axis(info.model_spacing, info.input_spacing)
        result = np.zeros(info.input_shape, dtype=self.dtype)
        cropped = result[info.box]
        z_order = settings.order_z if separate == 0 else settings.order
        if max(settings.order, z_order) > 1:  # a spline needs its whole axis, and its clip the whole range
            cropped[...] = self._argmax(resize(logits.float(), target, settings, separate))
            return result
        length, count = logits.shape[1], target[0]
        positions = sample_positions(count, length, logits.device)
        in_plane = [sample_positions(target[axis], logits.shape[axis + 1], logits.device) for axis in (1, 2)]
        orders = [z_order] + [settings.order_z if axis == separate else settings.order for axis in (1, 2)]
        step = max(1, _SLAB_BYTES // (3 * logits.shape[0] * target[1] * target[2] * 4))
        for start in range(0, count, step):
            wanted = positions[start:start + step]
            low = int(torch.floor(wanted[0]).clamp(min=0))
            high = min(int(torch.floor(wanted[-1])) + 1, length - 1)
            slab = logits[:, low:high + 1].float()
            labels = blended_argmax(slab, [wanted - low, *in_plane], orders)
            cropped[start:start + len(wanted)] = labels.to(torch.int32).cpu().numpy().astype(self.dtype)
        return result

    def _argmax(self, scores: torch.Tensor) -> np.ndarray:
        return scores.argmax(0).to(torch.int32).cpu().numpy().astype(self.dtype)


def blended_argmax(logits: torch.Tensor, positions: list[torch.Tensor], orders: list[int]) -> torch.Tensor:
    """The argmax of ``logits`` (K, a, b, c) resampled at the grid of ``positions`` along each axis, linearly (order
    1) or by nearest voxel (order 0), edges extended: what resizing every class and taking the argmax gives, without
    the input-size score volume. Where all corners of a sample share their argmax, it is the blend's too (a
    non-negative blend keeps a common maximum): only the samples whose corners disagree, a few per cent along the
    labels' borders, are blended, all classes at once."""
    corners = [linear_corners(p, n, order) for p, n, order in zip(positions, logits.shape[1:], orders)]
    low = high = logits.argmax(0)
    for dim, (lower, upper, _) in enumerate(corners):
        low = torch.minimum(low.index_select(dim, lower), low.index_select(dim, upper))
        high = torch.maximum(high.index_select(dim, lower), high.index_select(dim, upper))
    mixed = torch.nonzero(low != high, as_tuple=True)
    if mixed[0].numel():
        total = None
        for choice in itertools.product((0, 1), repeat=3):
            index, weight = [], None
            for dim, upper_side in enumerate(choice):
                lower, upper, fraction = corners[dim]
                index.append((upper if upper_side else lower)[mixed[dim]])
                part = fraction[mixed[dim]] if upper_side else 1 - fraction[mixed[dim]]
                weight = part if weight is None else weight * part
            term = logits[:, index[0], index[1], index[2]] * weight.to(logits.dtype)
            total = term if total is None else total.add_(term)
        low[mixed] = total.argmax(0)
    return low


__all__ = ["NnUNetGridInfo", "NnUNetScores", "blended_argmax", "model_spacing", "nnunet_model_grid", "nonzero_box"]
