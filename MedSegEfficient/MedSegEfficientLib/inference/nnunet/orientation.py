"""An nnU-Net-mode model that was trained on reoriented arrays (TotalSegmentator's: it turns every image to
RAS before nnU-Net sees it) gets its input with the axes permuted and flipped to that orientation, exactly (no
resampling), and its labels turned back to the input's array. ``none`` (nnU-Net's own models) leaves the array as
stored."""

from __future__ import annotations

from typing import Callable

import numpy as np

from MedSegEfficientLib.inference.torch_preprocessing import reorientation
from MedSegEfficientLib.volume import Volume

LabelsBack = Callable[[np.ndarray], np.ndarray]


def _unchanged(labels: np.ndarray) -> np.ndarray:
    return labels


def oriented(volume: Volume, code: str) -> tuple[Volume, LabelsBack]:
    """The volume with its image axes pointing as ``code`` says (DICOMOrient's letters), and the function that
    brings a label array of that volume back to the input's array."""
    order, flipped = reorientation(volume.direction, code)
    if order == (0, 1, 2) and not any(flipped):
        return volume, _unchanged
    # Array axes are (k, j, i): image axis a is array axis 2 - a; a channel axis stays last.
    axes = [2 - order[2], 2 - order[1], 2 - order[0]] + ([3] if volume.array.ndim == 4 else [])
    flips = tuple(2 - axis for axis, flip in enumerate(flipped) if flip)
    array = np.flip(np.transpose(volume.array, axes), flips) if flips else np.transpose(volume.array, axes)
    shape = volume.grid_shape[::-1]  # (i, j, k)
    start = np.asarray([shape[a] - 1 if flip else 0 for a, flip in zip(order, flipped)], dtype=float)
    source_index = np.zeros(3)
    for target, source in enumerate(order):
        source_index[source] = start[target]
    origin = np.asarray(volume.origin) + volume.direction @ (source_index * np.asarray(volume.spacing))
    direction = np.stack([volume.direction[:, a] * (-1.0 if flip else 1.0) for a, flip in zip(order, flipped)], axis=1)
    turned = Volume(array, tuple(volume.spacing[a] for a in order), tuple(origin), direction)
    inverse = list(np.argsort(axes[:3]))

    def back(labels: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(np.flip(labels, flips) if flips else labels, inverse))

    return turned, back


__all__ = ["oriented"]
