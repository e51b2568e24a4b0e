"""Soft targets for distillation: a teacher's class probabilities on the student's model grid.

A teacher is a model file (run by our engine, several averaged as an ensemble) or a probability map that an
outside teacher wrote beside the image (training/teachers/ runs those tools; the product never loads their code).
Only the foreground classes are kept, (K - 1, k, j, i) float32: padding and border fills then give zero
foreground, which is background, as it should be.
"""

from __future__ import annotations

import numpy as np
import torch

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.engine import Segmenter
from MedSegEfficientLib.volume import Volume, to_sitk

PROBABILITY_TOLERANCE = 1e-3  # a map's values may overshoot [0, 1] by rounding, not more


def resample_probabilities(probabilities: np.ndarray | torch.Tensor, source: Volume, target: Volume) -> np.ndarray:
    """(C, k, j, i) probabilities on ``source``'s grid, linearly onto ``target``'s grid; zero outside the source."""
    import SimpleITK as sitk

    values = np.ascontiguousarray(np.asarray(probabilities, dtype=np.float32))
    if source.with_array(values[0]).same_grid(target):
        return values
    image = to_sitk(source.with_array(np.moveaxis(values, 0, -1)))
    k, j, i = target.grid_shape
    resampled = sitk.Resample(image, [i, j, k], sitk.Transform(), sitk.sitkLinear, target.origin, target.spacing,
                              tuple(target.direction.ravel()), 0.0, sitk.sitkVectorFloat32)
    array = sitk.GetArrayFromImage(resampled)
    array = array[..., np.newaxis] if array.ndim == 3 else array
    return np.ascontiguousarray(np.moveaxis(array, -1, 0))


def teacher_targets(teachers: list[Segmenter], volume: Volume, student_grid: Volume) -> np.ndarray:
    """The ensemble's mean foreground probabilities (K - 1, k, j, i) on the student's grid."""
    total = None
    for teacher in teachers:
        probabilities, geometry = teacher.probabilities(volume)
        foreground = resample_probabilities(probabilities[1:], geometry, student_grid)
        total = foreground if total is None else total + foreground
    return total / len(teachers)


def map_targets(probability_map: Volume, name: str, classes: int, student_grid: Volume) -> np.ndarray:
    """An outside teacher's map: one channel (the foreground of a two-class task), K - 1 foreground channels, or
    all K; values in [0, 1]. Refused with one line where it is anything else."""
    array = probability_map.array
    channels = 1 if array.ndim == 3 else array.shape[-1]
    if channels not in (classes - 1, classes):
        raise MedSegError(f"{name} has {channels} channel(s); a soft target for {classes} classes has "
                          f"{classes - 1} (foreground) or {classes}")
    values = np.asarray(array, dtype=np.float32)
    if not np.isfinite(values).all() or values.min() < -PROBABILITY_TOLERANCE \
            or values.max() > 1 + PROBABILITY_TOLERANCE:
        raise MedSegError(f"{name} has values outside 0..1: it is not a probability map")
    values = values[np.newaxis] if values.ndim == 3 else np.moveaxis(values, -1, 0)
    if channels == classes:
        values = values[1:]
    return np.clip(resample_probabilities(values, probability_map, student_grid), 0.0, 1.0)


def one_hot_foreground(labels: np.ndarray, classes: int) -> np.ndarray:
    """Reference labels as (K - 1, ...) foreground probabilities: channel c - 1 is label value c."""
    return np.stack([(labels == value).astype(np.float32) for value in range(1, classes)])


def with_background(foreground: torch.Tensor) -> torch.Tensor:
    """(B, K - 1, ...) foreground probabilities to (B, K, ...) with background first."""
    background = (1.0 - foreground.sum(1, keepdim=True)).clamp_(0.0, 1.0)
    return torch.cat([background, foreground], 1)


__all__ = ["map_targets", "one_hot_foreground", "resample_probabilities", "teacher_targets", "with_background"]
