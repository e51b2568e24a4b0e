"""Segment only a region: the voxel box of a volume that an RAS box (a Slicer ROI) covers, the cropped volume
with its geometry, and the labels put back on the whole grid."""

from __future__ import annotations

import itertools

import numpy as np

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.volume import Volume

Box = tuple[slice, slice, slice]  # (k, j, i)


def voxel_box(volume: Volume, ras_bounds) -> Box:
    """The smallest voxel box holding the RAS box (xmin, xmax, ymin, ymax, zmin, zmax), clipped to the volume."""
    corners = np.array([[x, y, z, 1.0] for x, y, z in itertools.product(ras_bounds[0:2], ras_bounds[2:4],
                                                                         ras_bounds[4:6])])
    ijk = (np.linalg.inv(volume.ijk_to_ras()) @ corners.T)[:3].T
    low = np.maximum(np.floor(ijk.min(0) + 0.5).astype(int), 0)  # voxel centres inside the box
    high = np.minimum(np.ceil(ijk.max(0) - 0.5).astype(int) + 1, list(reversed(volume.grid_shape)))
    if np.any(high <= low):
        raise InputImageError("the region of interest does not overlap the volume")
    return tuple(slice(int(low[axis]), int(high[axis])) for axis in (2, 1, 0))


def crop(volume: Volume, box: Box) -> Volume:
    """The voxels inside ``box`` with the geometry that keeps every voxel where it was in space."""
    start_ijk = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
    origin_lps = volume.ijk_to_lps() @ np.append(start_ijk, 1.0)
    return Volume(volume.array[box], volume.spacing, tuple(origin_lps[:3]), volume.direction.copy())


def paste(labels: np.ndarray, box: Box, grid_shape) -> np.ndarray:
    """Labels of a cropped region on the whole grid, background elsewhere."""
    full = np.zeros(tuple(grid_shape), dtype=labels.dtype)
    full[box] = labels
    return full


__all__ = ["crop", "paste", "voxel_box"]
