"""Validation: a model's per-label Dice on labelled cases, the engine run exactly as a user runs it.

Used by training every epoch and by ``medseg evaluate``; it imports no MONAI (training's augmentation does).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.weights import LoadedModel
from MedSegEfficientLib.training.datasets import TrainingCase


def validate(model: LoadedModel, cases: list[TrainingCase], device: torch.device,
             reference_values: ReferenceValues | None = None, check_memory: bool = True) -> dict[str, float]:
    """Per-label Dice over all validation cases, the engine run exactly as a user runs it. ``reference_values``:
    the reference's number for each of the model's label values, where the reference numbers them otherwise."""
    was_training = model.network.training
    # Training validates every epoch: a preflight refusal there would end hours of work (check_memory=False).
    segmenter = Segmenter(model, SegmentOptions(device=device.type, check_memory=check_memory))
    predictions, references = [], []
    for case in cases:
        predictions.append(segmenter.segment(case.image).labels)
        references.append(renumbered(case.labels.array, reference_values))
    model.network.train(was_training)
    values = [label.value for label in model.card.labels]
    names = {label.value: label.name for label in model.card.labels}
    scores = dice_per_label(predictions, references, values)
    return {names[v]: s for v, s in scores.items()}


def present_mean(scores: dict[str, float]) -> float | None:
    """The mean Dice over the labels present (NaN: the label is in neither map); None where none is."""
    present = [value for value in scores.values() if not math.isnan(value)]
    return sum(present) / len(present) if present else None


def dice_for_card(scores: dict[str, float]) -> dict[str, float | None]:
    return {name: None if math.isnan(value) else round(value, 4) for name, value in scores.items()}


def validation_metrics(scores: dict[str, float], cases: list[TrainingCase]) -> dict:
    """What a card records of its validation: per-label Dice, their mean, the cases."""
    mean = present_mean(scores)
    return {"validation_dice": dice_for_card(scores), "validation_mean_dice": None if mean is None else round(mean, 4),
            "validation_cases": [case.name for case in cases]}


ReferenceValues = dict[int, "int | tuple[int, ...]"]  # model value -> the reference's number (or numbers)


def renumbered(reference: np.ndarray, reference_values: ReferenceValues | None) -> np.ndarray:
    """The reference in the model's numbers: each model value where the reference has its number (or one of its
    numbers: vertebrae C1 to L5 as one 'vertebrae'), else 0."""
    if reference_values is None:
        return reference
    result = np.zeros_like(reference)
    for model_value, numbers in reference_values.items():
        result[np.isin(reference, np.atleast_1d(np.asarray(numbers)))] = model_value
    return result


__all__ = ["ReferenceValues", "dice_for_card", "present_mean", "renumbered", "validate", "validation_metrics"]
