"""The card's per-label clean-up on the input grid: keep a label's largest face-connected piece, or drop its
pieces under a size in mm^3 (SimpleITK's connected components). Dropped voxels become background."""

from __future__ import annotations

import math

import numpy as np

from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.postprocessing_rules import LabelCleanup


def clean_labels(labels: np.ndarray, spacing: tuple[float, float, float], card: ModelCard) -> np.ndarray:
    """``labels`` (k, j, i) with each rule of ``card.postprocessing`` applied; the array is changed in place."""
    if not card.postprocessing:
        return labels
    voxel_mm3 = math.prod(spacing)
    values = {label.name: label.value for label in card.labels}
    for name, rule in card.postprocessing.items():
        _clean_one(labels, values[name], rule, voxel_mm3)
    return labels


def _clean_one(labels: np.ndarray, value: int, rule: LabelCleanup, voxel_mm3: float) -> None:
    import SimpleITK as sitk

    whole = labels == value
    if not whole.any():
        return
    box = _bounding_box(whole)  # the label's own box: an organ is a small part of a CT's grid
    mask, region = whole[box], labels[box]
    pieces = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.view(np.uint8)), False)  # faces only
    minimum = math.ceil(rule.min_island_mm3 / voxel_mm3) if rule.min_island_mm3 > 0 else 0
    # A copy, not a view: a view of the temporary image would outlive the image's memory.
    ranked = sitk.GetArrayFromImage(sitk.RelabelComponent(pieces, minimum))  # 1 = largest, 0 = dropped
    keep = ranked == 1 if rule.largest_component else ranked > 0
    region[mask & ~keep] = 0  # a view: this writes into labels


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


__all__ = ["clean_labels"]
