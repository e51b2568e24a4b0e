"""Validation: a model's per-label Dice on labelled cases, the engine run exactly as a user runs it.

Used by training every epoch and by ``medseg evaluate``; it imports no MONAI (training's augmentation does).
"""

from __future__ import annotations

import torch

from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.weights import LoadedModel
from MedSegEfficientLib.training.datasets import TrainingCase


def validate(model: LoadedModel, cases: list[TrainingCase], device: torch.device) -> dict[str, float]:
    """Per-label Dice over all validation cases, the engine run exactly as a user runs it."""
    was_training = model.network.training
    segmenter = Segmenter(model, SegmentOptions(device=device.type))
    predictions, references = [], []
    for case in cases:
        predictions.append(segmenter.segment(case.image).labels)
        references.append(case.labels.array)
    model.network.train(was_training)
    values = [label.value for label in model.card.labels]
    names = {label.value: label.name for label in model.card.labels}
    scores = dice_per_label(predictions, references, values)
    return {names[v]: s for v, s in scores.items()}


__all__ = ["validate"]
