"""A volume: a voxel array with its geometry, independent of SimpleITK and of Slicer.

Arrays are indexed (k, j, i) as numpy/SimpleITK/Slicer give them, with an optional trailing channel axis.
Geometry follows ITK: ``spacing`` and ``origin`` per (i, j, k), ``direction`` a 3x3 matrix whose columns are
the i, j, k axes in LPS. Slicer's RAS differs by the sign of the first two rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from MedSegEfficientLib.errors import InputImageError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        self._check_geometry()

    def _check_geometry(self) -> None:
        """One clear line for a geometry no resampling can use, instead of SimpleITK's exception later."""
        if len(self.spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise InputImageError(f"voxel spacing {self.spacing} is not three positive finite sizes in mm")
        if len(self.origin) != 3 or not all(math.isfinite(o) for o in self.origin):
            raise InputImageError(f"origin {self.origin} is not three finite coordinates in mm")
        if not np.isfinite(self.direction).all() or abs(np.linalg.det(self.direction)) < 1e-6:
            raise InputImageError("the direction matrix is singular or not finite: its axes do not span 3D space")

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[-1])

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(k, j, i)"""
        return tuple(int(n) for n in self.array.shape[:3])

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same geometry around another array (labels, probabilities)."""
        return Volume(array, self.spacing, self.origin, self.direction.copy())

    def ijk_to_lps(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        matrix = self.ijk_to_lps()
        matrix[:3, :] = LPS_TO_RAS @ matrix[:3, :]
        return matrix

    @classmethod
    def from_ijk_to_ras(cls, array: np.ndarray, ijk_to_ras: np.ndarray) -> "Volume":
        lps = np.asarray(ijk_to_ras, dtype=float).copy()
        lps[:3, :] = LPS_TO_RAS @ lps[:3, :]
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        return cls(array, tuple(spacing), tuple(lps[:3, 3]), lps[:3, :3] / spacing)

    def same_grid(self, other: "Volume", tolerance: float = 1e-4) -> bool:
        return (self.grid_shape == other.grid_shape
                and np.allclose(self.ijk_to_lps(), other.ijk_to_lps(), atol=tolerance))


def to_sitk(volume: Volume):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume.array, isVector=volume.array.ndim == 4)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def from_sitk(image) -> Volume:
    import SimpleITK as sitk

    if image.GetDimension() == 2:  # a 2D picture becomes a volume of one slice
        array = sitk.GetArrayFromImage(image)[np.newaxis]
        direction = np.eye(3)
        direction[:2, :2] = np.asarray(image.GetDirection()).reshape(2, 2)
        return Volume(array, (*image.GetSpacing(), 1.0), (*image.GetOrigin(), 0.0), direction)
    return Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(),
                  np.asarray(image.GetDirection()).reshape(3, 3))
