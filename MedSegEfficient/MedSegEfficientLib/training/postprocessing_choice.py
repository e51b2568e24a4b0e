"""Choosing a card's clean-up and test-time mirroring from labelled validation scans: each option is kept only
where it raises the Dice there, with what it costs in time. The network runs once per mirroring choice; the
clean-up candidates are tried on the labels of the plain run, which costs no network time."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from MedSegEfficientLib.inference.cleanup import clean_labels
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.postprocessing_rules import LabelCleanup, is_sided, left_right_axis
from MedSegEfficientLib.model.weights import LoadedModel
from MedSegEfficientLib.training.datasets import TrainingCase
from MedSegEfficientLib.training.validation import present_mean, renumbered

ISLAND_CANDIDATES_MM3 = (100.0, 1000.0, 10000.0)
MIN_GAIN = 0.001  # a Dice gain under this is noise on a few scans, not a reason to change the model


@dataclass
class Choice:
    card: ModelCard
    before: dict[str, float]  # per-label Dice of the plain run
    after: dict[str, float]  # with the chosen options
    seconds: dict[str, float] = field(default_factory=dict)  # per scan: the plain run, each option's extra cost
    tried: list[str] = field(default_factory=list)  # every option tried, with its result


def mirroring_axes_allowed(card: ModelCard) -> list[int]:
    axes = [axis for axis in range(3) if not (card.spatial_dims == 2 and axis == card.slice_axis)]
    if any(is_sided(label.name, label.modifier) for label in card.labels):
        across = left_right_axis(card.orientation)
        axes = [] if across is None else [axis for axis in axes if axis != across]
    return axes


def choose_postprocessing(model: LoadedModel, cases: list[TrainingCase], device: torch.device,
                          reference_values: dict[int, int] | None = None,
                          say: Callable[[str], None] = lambda line: None) -> Choice:
    plain_card = dataclasses.replace(model.card, postprocessing={}, mirroring=[])
    references = [renumbered(case.labels.array, reference_values) for case in cases]
    values = [label.value for label in plain_card.labels]
    names = {label.value: label.name for label in plain_card.labels}

    def scores(predictions: list[np.ndarray]) -> dict[str, float]:
        return {names[v]: s for v, s in dice_per_label(predictions, references, values).items()}

    def run(card: ModelCard) -> tuple[list[np.ndarray], float]:
        segmenter = Segmenter(dataclasses.replace(model, card=card), SegmentOptions(device=device.type))
        started = time.perf_counter()
        predictions = [segmenter.segment(case.image).labels for case in cases]
        return predictions, (time.perf_counter() - started) / len(cases)

    plain, plain_seconds = run(plain_card)
    before = scores(plain)
    seconds = {"plain_run": plain_seconds}
    tried: list[str] = []
    say(f"plain run: mean Dice {mean_dice(before):.4f}, {plain_seconds:.2f} s per scan")

    mirroring: list[int] = []
    best_predictions, best_scores = plain, before
    for axis in mirroring_axes_allowed(plain_card):
        predictions, run_seconds = run(dataclasses.replace(plain_card, mirroring=[*mirroring, axis]))
        result = scores(predictions)
        kept = mean_dice(result) >= mean_dice(best_scores) + MIN_GAIN
        tried.append(f"mirroring {[*mirroring, axis]}: mean {mean_dice(result):.4f} ({'kept' if kept else 'not kept'}), "
                     f"{run_seconds:.2f} s per scan")
        say(tried[-1])
        if kept:
            mirroring.append(axis)
            best_predictions, best_scores = predictions, result
            seconds[f"mirroring_{axis}"] = run_seconds - plain_seconds

    rules: dict[str, LabelCleanup] = {}
    for label in plain_card.labels:
        base = best_scores.get(label.name, math.nan)
        if math.isnan(base):
            continue  # absent from the validation scans: nothing to decide it on
        options = [LabelCleanup(largest_component=True)] + [LabelCleanup(min_island_mm3=size)
                                                            for size in ISLAND_CANDIDATES_MM3]
        best_rule, best_value = None, base
        for rule in options:
            card = dataclasses.replace(plain_card, postprocessing={label.name: rule})
            cleaned = [clean_labels(p.copy(), case.image.spacing, card) for p, case in zip(best_predictions, cases)]
            value = scores(cleaned)[label.name]
            if value >= best_value + MIN_GAIN:
                best_rule, best_value = rule, value
        if best_rule is not None:
            rules[label.name] = best_rule
            tried.append(f"{label.name}: {best_rule} raises Dice {base:.4f} -> {best_value:.4f}")
            say(tried[-1])
    card = dataclasses.replace(plain_card, postprocessing=rules, mirroring=mirroring)
    started = time.perf_counter()
    final = [clean_labels(p.copy(), case.image.spacing, card) for p, case in zip(best_predictions, cases)]
    if rules:
        seconds["cleanup"] = (time.perf_counter() - started) / len(cases)
    return Choice(card, before, scores(final), seconds, tried)


def mean_dice(scores: dict[str, float]) -> float:
    """The mean over the labels present, 0 where none is: the figure options are compared by."""
    mean = present_mean(scores)
    return 0.0 if mean is None else mean


__all__ = ["Choice", "choose_postprocessing", "mean_dice", "mirroring_axes_allowed"]
