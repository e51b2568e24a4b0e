"""Segmentation scores on integer label arrays (no one-hot copies)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def dice_per_label(predictions: Sequence[np.ndarray], references: Sequence[np.ndarray],
                   values: Sequence[int]) -> dict[int, float]:
    """Dice per label value, pooled over all cases. NaN for a label absent from every reference: a partial scan
    (say, without the kidneys) cannot score those labels, and a mean over them would only measure the crop."""
    intersection = dict.fromkeys(values, 0)
    in_reference = dict.fromkeys(values, 0)
    size_sum = dict.fromkeys(values, 0)
    for predicted, reference in zip(predictions, references):
        if predicted.shape != reference.shape:
            raise ValueError(f"prediction {predicted.shape} and reference {reference.shape} differ in shape")
        wanted = np.asarray(values)
        # bincount over pairs touches each voxel once, whatever the number of labels
        size = int(max(predicted.max(initial=0), reference.max(initial=0), wanted.max(initial=0))) + 1
        joint = np.bincount(predicted.ravel().astype(np.int64) * size + reference.ravel(), minlength=size * size)
        joint = joint.reshape(size, size)
        for value in values:
            intersection[value] += int(joint[value, value])
            size_sum[value] += int(joint[value, :].sum() + joint[:, value].sum())
            in_reference[value] += int(joint[:, value].sum())
    return {v: (2 * intersection[v] / size_sum[v]) if in_reference[v] else math.nan for v in values}
