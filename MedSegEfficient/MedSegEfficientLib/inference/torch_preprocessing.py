"""The model grid made with torch on the run's device (CUDA by default), so that a GPU run sends the volume across
once, in its own voxel type, and reorients, resamples and normalises it there; labels come back to the input grid
by nearest neighbour with index arithmetic. No SimpleITK on this path.

It gives what ``preprocessing.to_model_grid`` gives with SimpleITK (Testing/test_torch_preprocessing.py compares
them): reorientation is a permutation and flips of the axes (as DICOMOrient), resampling keeps the origin and
direction and interpolates linearly at index ``i * new / old`` along each axis (separable, so exactly trilinear),
and a point past the last voxel's half-width takes the volume's lowest value, as ITK's interpolator does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from MedSegEfficientLib.inference.gpu.volume_upload import upload_volume
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.volume import Volume

# DICOM's letters: the direction an axis points to as its index grows, in LPS coordinates (x: L, y: P, z: S).
_LETTERS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


@dataclass(frozen=True)
class AxisMapping:
    """How the model grid's image axes come from the input's: image axis t of the model grid is input image axis
    ``order[t]``, reversed where ``flipped[t]``, then scaled by ``scale[t]`` (input spacing / model spacing)."""

    order: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]
    input_shape: tuple[int, int, int]  # (x, y, z) voxels of the input
    model_shape: tuple[int, int, int]  # (x, y, z) voxels of the model grid
    scale: tuple[float, float, float]

    @property
    def is_identity(self) -> bool:
        """The model runs on the input's own grid: nothing to bring back."""
        return (self.order == (0, 1, 2) and not any(self.flipped) and self.model_shape == self.input_shape
                and np.allclose(self.scale, 1.0))


def reorientation(direction: np.ndarray, code: str) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For each target axis, the input axis that points closest along it and whether it points the other way."""
    if code == "none":
        return (0, 1, 2), (False, False, False)
    order, flipped = [], []
    for letter in code:
        physical, sign = _LETTERS[letter]
        source = int(np.argmax(np.abs(direction[physical])))
        order.append(source)
        flipped.append(bool(np.sign(direction[physical, source]) != sign))
    if sorted(order) != [0, 1, 2]:  # an oblique image whose two axes lean to one direction: take the strongest
        order = list(np.argmax(np.abs(direction), axis=1))
        if sorted(order) != [0, 1, 2]:
            raise ValueError(f"cannot reorient direction {direction.tolist()} to {code}")
    return tuple(order), tuple(flipped)


def target_spacing(spacing: tuple[float, float, float], card: ModelCard) -> tuple[float, float, float]:
    if card.spacing is None:
        return tuple(spacing)
    if card.spatial_dims == 2:  # in-plane only; the slice axis keeps its spacing
        in_plane = iter(card.spacing)
        return tuple(spacing[a] if a == card.slice_axis else float(next(in_plane)) for a in range(3))
    return tuple(float(s) for s in card.spacing)


def plan(volume: Volume, card: ModelCard) -> tuple[AxisMapping, Volume]:
    """The mapping and the model grid's geometry (its array a zero-cost placeholder of the grid's shape)."""
    order, flipped = reorientation(volume.direction, card.orientation)
    size = tuple(volume.grid_shape[::-1])  # (x, y, z)
    spacing = tuple(volume.spacing[a] for a in order)
    columns = np.stack([volume.direction[:, a] * (-1 if flip else 1) for a, flip in zip(order, flipped)], axis=1)
    origin = np.asarray(volume.origin, dtype=float)
    for a, flip in zip(order, flipped):
        if flip:  # the flipped axis starts at the input's last voxel
            origin = origin + volume.direction[:, a] * volume.spacing[a] * (size[a] - 1)
    reoriented = tuple(size[a] for a in order)
    target = target_spacing(spacing, card)
    if np.allclose(target, spacing, rtol=1e-3):
        target, model_shape = spacing, reoriented
    else:
        model_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(reoriented, spacing, target))
    scale = tuple(s / t for s, t in zip(spacing, target))
    mapping = AxisMapping(order, flipped, size, model_shape, scale)
    placeholder = np.broadcast_to(np.uint8(0), model_shape[::-1])
    return mapping, Volume(placeholder, target, tuple(origin), columns)


def model_grid_tensor(volume: Volume, card: ModelCard, device: torch.device) -> tuple[torch.Tensor, AxisMapping, Volume]:
    """(C, k, j, i) float32 on ``device``: the volume sent once in its own type, reoriented, resampled."""
    mapping, geometry = plan(volume, card)
    source = upload_volume(volume.array, device)
    source = source[None] if source.ndim == 3 else source.movedim(-1, 0)  # channels first: (C, k, j, i)
    # Image axis a is array axis 3 - a (channel first); the model's axis t takes input axis order[t].
    source = source.permute(0, *(3 - mapping.order[t] for t in (2, 1, 0)))
    flips = [3 - t for t in range(3) if mapping.flipped[t]]
    if flips:
        source = source.flip(flips)
    grid = _resample(source.float(), mapping.model_shape, mapping.scale)
    return grid.contiguous(), mapping, geometry


def _resample(grid: torch.Tensor, shape: tuple[int, ...], scale: tuple[float, ...]) -> torch.Tensor:
    """``grid`` (..., k, j, i) resampled to ``shape`` (x, y, z) voxels, image axis a scaled by ``scale[a]``; a
    point past the last voxel's half-width takes the grid's lowest value."""
    lowest = float(grid.min()) if grid.numel() else 0.0
    for axis in range(3):
        dim = grid.ndim - 1 - axis  # image axis x is the last array dim
        if shape[axis] != grid.shape[dim]:
            grid = _resample_axis(grid, dim, shape[axis], scale[axis], lowest)
    return grid


def _resample_axis(grid: torch.Tensor, dim: int, count: int, scale: float, outside: float) -> torch.Tensor:
    length = grid.shape[dim]
    positions = torch.arange(count, device=grid.device, dtype=torch.float64) / scale
    below = positions.floor()
    weight = (positions - below).to(torch.float32)
    lower = below.long().clamp(max=length - 1)
    upper = (lower + 1).clamp(max=length - 1)
    shape = [1] * grid.ndim
    shape[dim] = count
    weight = weight.view(shape)
    result = grid.index_select(dim, lower) * (1 - weight) + grid.index_select(dim, upper) * weight
    beyond = positions >= length - 0.5
    if bool(beyond.any()):
        result.index_fill_(dim, torch.nonzero(beyond).flatten(), outside)
    return result


def resampled(volume: Volume, spacing: tuple[float, float, float], device: torch.device) -> Volume:
    """The volume at another spacing (same origin and direction, linear, voxel type kept), made on ``device``:
    for building test and benchmark volumes where SimpleITK is absent."""
    shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(volume.grid_shape[::-1], volume.spacing, spacing))
    grid = _resample(upload_volume(volume.array, device).float(), shape,
                     tuple(s / t for s, t in zip(volume.spacing, spacing)))
    array = grid.round().cpu().numpy().astype(volume.array.dtype) if np.issubdtype(volume.array.dtype, np.integer) \
        else grid.cpu().numpy().astype(volume.array.dtype)
    return Volume(array, spacing, volume.origin, volume.direction)


def labels_to_input_grid(labels: np.ndarray, mapping: AxisMapping, device: torch.device | None = None) -> np.ndarray:
    """Model-grid labels (k, j, i) back on the input grid by nearest neighbour; an input voxel past the model
    grid's edge takes the edge voxel (preprocessing.labels_on_input_grid says why). The gather runs on ``device``
    (the run's GPU: only the model grid's labels go up, the result comes down once)."""
    if mapping.is_identity:
        return labels
    device = device or torch.device("cpu")
    result = torch.from_numpy(np.ascontiguousarray(labels)).to(device)
    for t in range(3):  # model axis t (array dim 2 - t) along reoriented input axis t
        count = mapping.input_shape[mapping.order[t]]
        position = np.floor(np.arange(count) * mapping.scale[t] + 0.5).astype(np.int64)  # ITK rounds half up
        index = torch.from_numpy(np.minimum(position, mapping.model_shape[t] - 1)).to(device)
        result = result.index_select(2 - t, index)
    flips = [2 - t for t in range(3) if mapping.flipped[t]]
    if flips:
        result = result.flip(flips)
    # Array dim 2 - t holds model axis t, which is input image axis order[t] (array dim 2 - order[t]).
    inverse = [0, 0, 0]
    for t in range(3):
        inverse[2 - mapping.order[t]] = 2 - t
    return result.permute(*inverse).contiguous().cpu().numpy()


__all__ = ["AxisMapping", "labels_to_input_grid", "model_grid_tensor", "plan", "reorientation", "resampled",
           "target_spacing"]
