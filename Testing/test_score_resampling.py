"""Class scores brought to the input grid before the argmax (issue: smooth labels): a coarse model's sphere on a
fine CT comes back rounder than labels brought back by nearest neighbour, slabs change nothing, reorientation and
flips land where the nearest-neighbour path puts them, and a model run on the input's own grid is a plain argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedSegEfficientLib.inference.score_resampling import labels_from_resampled_scores
from MedSegEfficientLib.inference.torch_preprocessing import labels_to_input_grid, plan
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.volume import Volume
from models_for_tests import threshold_card

RAS = np.diag([-1.0, -1.0, 1.0])


def sphere_scores(model_shape_xyz, model_spacing, centre_mm, radius_mm) -> torch.Tensor:
    """Two-class logits of a ball, smooth across its surface (as a trained network's are), on the model grid."""
    x, y, z = (np.arange(n) * s for n, s in zip(model_shape_xyz, model_spacing))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    distance = np.sqrt((xx - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 + (zz - centre_mm[2]) ** 2)
    inside = torch.from_numpy((radius_mm - distance).astype(np.float32)) / 2.0
    return torch.stack([-inside, inside])


def fine_ball(shape_zyx, spacing, centre_mm, radius_mm) -> np.ndarray:
    z, y, x = (np.arange(n) * s for n, s in zip(shape_zyx, spacing[::-1]))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return (((xx - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 + (zz - centre_mm[2]) ** 2) <= radius_mm ** 2
            ).astype(np.uint8)


def test_a_coarse_models_ball_comes_back_rounder_than_by_nearest_neighbour():
    volume = Volume(np.zeros((60, 64, 64), np.int16), spacing=(0.8, 0.8, 1.0))  # a fine CT
    card = threshold_card(spacing=[3.0, 3.0, 3.0])
    mapping, geometry = plan(volume, card)
    centre, radius = (25.3, 24.1, 29.7), 14.2
    scores = sphere_scores(mapping.model_shape, geometry.spacing, centre, radius)
    truth = fine_ball(volume.grid_shape, volume.spacing, centre, radius)
    smooth = labels_from_resampled_scores(scores, mapping, np.uint8)
    stepped = labels_to_input_grid(scores.argmax(0).numpy().astype(np.uint8), mapping)
    assert smooth.shape == stepped.shape == truth.shape
    smooth_dice = dice_per_label([smooth], [truth], [1])[1]
    stepped_dice = dice_per_label([stepped], [truth], [1])[1]
    print(f"\nball, 3 mm model on a 0.8 mm grid: Dice {stepped_dice:.4f} by nearest neighbour, "
          f"{smooth_dice:.4f} from resampled scores")
    assert smooth_dice > stepped_dice and smooth_dice > 0.97


@pytest.mark.parametrize("direction", [np.eye(3), RAS, np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])],
                         ids=["LPS", "RAS", "swapped-and-flipped"])
def test_orientation_and_flips_land_where_the_labels_would(direction):
    volume = Volume(np.zeros((30, 40, 50), np.int16), spacing=(0.9, 1.1, 1.7), direction=direction)
    mapping, geometry = plan(volume, threshold_card(spacing=[2.0, 2.0, 2.0]))
    centre = tuple(n * s / 3 for n, s in zip(mapping.model_shape, geometry.spacing))
    scores = sphere_scores(mapping.model_shape, geometry.spacing, centre, 12.0)
    smooth = labels_from_resampled_scores(scores, mapping, np.uint8)
    stepped = labels_to_input_grid(scores.argmax(0).numpy().astype(np.uint8), mapping)
    assert smooth.sum() > 1000 and dice_per_label([smooth], [stepped], [1])[1] > 0.9


def test_slabs_change_nothing_and_logits_may_be_interpolated_as_nnunet_does():
    volume = Volume(np.zeros((40, 48, 48), np.int16), spacing=(0.7, 0.7, 1.2), direction=RAS)
    mapping, geometry = plan(volume, threshold_card(spacing=[1.5, 1.5, 1.5]))
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.normal(size=(4, *mapping.model_shape[::-1])).astype(np.float32))
    whole = labels_from_resampled_scores(scores, mapping, np.uint8)
    sliced = labels_from_resampled_scores(scores, mapping, np.uint8, chunk_bytes=50_000, slab_voxels=1)  # a slice, 195 voxels
    assert np.array_equal(whole, sliced)
    logits = labels_from_resampled_scores(scores, mapping, np.uint8, probabilities=False)
    assert logits.shape == whole.shape and 0.5 < (logits == whole).mean() < 1.0  # close, and not the same rule
    assert labels_from_resampled_scores(scores.half(), mapping, np.uint8).dtype == np.uint8


def test_a_model_on_the_inputs_own_grid_is_a_plain_argmax():
    volume = Volume(np.zeros((10, 12, 14), np.int16), spacing=(2.0, 2.0, 2.0))
    mapping, _ = plan(volume, threshold_card(spacing=[2.0, 2.0, 2.0]))
    scores = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 10, 12, 14)).astype(np.float32))
    assert np.array_equal(labels_from_resampled_scores(scores, mapping, np.uint8), scores.argmax(0).numpy())


@pytest.mark.parametrize("direction", [np.eye(3), np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])],
                         ids=["LPS", "swapped-and-flipped"])
def test_a_2d_models_batches_land_as_the_whole_volume_would(direction):
    from MedSegEfficientLib.inference.score_resampling import SliceLabelsOnInputGrid

    volume = Volume(np.zeros((12, 40, 50), np.int16), spacing=(0.8, 0.8, 3.0), direction=direction)
    card = threshold_card(spatial_dims=2, spacing=[1.5, 1.5])
    mapping, _ = plan(volume, card)
    scores = torch.from_numpy(np.random.default_rng(1).normal(size=(3, *mapping.model_shape[::-1])).astype(np.float32))
    whole = labels_from_resampled_scores(scores, mapping, np.uint8)
    on_input = SliceLabelsOnInputGrid(mapping, card.slice_axis, np.uint8)
    dim = 3 - card.slice_axis  # the slices' array dim in (K, k, j, i)
    for start in range(0, scores.shape[dim], 5):  # batches of 5 slices, (B, K, H, W) as the engine makes them
        on_input.put(start, scores.narrow(dim, start, min(5, scores.shape[dim] - start)).movedim(dim, 0))
    assert np.array_equal(on_input.labels, whole)
