"""Parity with nnU-Net itself: a model trained by nnunetv2's own planner and trainer (Testing/data/nnunet_parity,
training/make_nnunet_parity_model.py), two folds averaged and mirrored as nnUNetPredictor runs it, gives the same
labels through ``medseg import nnunet`` + the engine as through nnunetv2 2.8.1's predictor, on the grid it was
planned on and on other spacings and array orders (benchmarks/nnunet_parity.py runs the cases)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from nnunet_parity import parity_cases, run  # noqa: E402

PLANNED_GOAL, OTHER_GOAL = 0.999, 0.995


@pytest.fixture(scope="module")
def results(samples) -> list[dict]:
    torch.set_num_threads(2)
    return run(parity_cases(samples["example_ct"], samples["aorta_ct"]), torch.device("cpu"))


def test_the_model_finds_what_it_learned_so_that_a_flip_means_a_pipeline_difference(results):
    """The parity model's short training (on two CPU cores) taught it the liver: a large, confident label on every
    grid, so that the Dice below compares real surfaces, not noise."""
    for result in results:
        assert result["voxels"]["liver"] > 2000, (result["case"], result["voxels"])


def test_labels_match_nnunet_on_the_planned_grid(results):
    planned = next(result for result in results if result["planned_grid"])
    low = {name: value for name, value in planned["dice"].items() if value is not None and value < PLANNED_GOAL}
    assert not low, (planned["case"], low)


@pytest.mark.parametrize("index", range(1, 5))
def test_labels_match_nnunet_on_other_grids(results, index):
    result = [r for r in results if not r["planned_grid"]][index - 1]
    low = {name: value for name, value in result["dice"].items() if value is not None and value < OTHER_GOAL}
    assert not low, (result["case"], low)


def test_class_probabilities_match_nnunets_on_its_model_grid(results):
    for result in results:
        difference = result["mean_abs_probability_difference"]
        assert difference is not None, f"{result['case']}: the model grids differ in shape"
        assert difference < 1e-3, (result["case"], difference)
    assert np.mean([r["labels_equal"] for r in results]) > 0.999
