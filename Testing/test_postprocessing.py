"""The card's clean-up (largest piece, islands under a size) and test-time mirroring: parsed and refused like
every card field, applied by the engine, and timed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.inference.cleanup import clean_labels
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.mirroring import tensor_dims, with_mirroring
from MedSegEfficientLib.model.card import LabelInfo, ModelCard
from MedSegEfficientLib.model.postprocessing_rules import LabelCleanup
from MedSegEfficientLib.model.weights import load_model
from models_for_tests import threshold_card, write_threshold_model
from phantoms import make_phantom


def card_dict(**fields) -> dict:
    return {**threshold_card().to_dict(), **fields}


def test_rules_round_trip_and_bad_rules_are_named():
    card = ModelCard.from_dict(card_dict(postprocessing={"big": {"largest_component": True},
                                                         "small": {"min_island_mm3": 50}}, mirroring=[1, 2]))
    assert card.postprocessing == {"big": LabelCleanup(True, 0.0), "small": LabelCleanup(False, 50.0)}
    assert ModelCard.from_dict(card.to_dict()) == card
    with pytest.raises(ModelFileError, match="names 'liver', which is not one of the card's labels"):
        ModelCard.from_dict(card_dict(postprocessing={"liver": {"largest_component": True}}))
    with pytest.raises(ModelFileError, match="min_island_mm3' must be a number"):
        ModelCard.from_dict(card_dict(postprocessing={"big": {"min_island_mm3": -1}}))
    with pytest.raises(ModelFileError, match="takes only largest_component and min_island_mm3"):
        ModelCard.from_dict(card_dict(postprocessing={"big": {"keep": "all"}}))
    with pytest.raises(ModelFileError, match="distinct image axes"):
        ModelCard.from_dict(card_dict(mirroring=[1, 1]))


def test_mirroring_never_swaps_sided_labels_nor_crosses_2d_slices():
    sided = [dataclasses.asdict(LabelInfo(1, "left kidney")), dataclasses.asdict(LabelInfo(2, "right kidney"))]
    with pytest.raises(ModelFileError, match="axis 0, which would swap the sided"):
        ModelCard.from_dict(card_dict(labels=sided, mirroring=[0, 2]))  # LPS: axis 0 runs left to right
    modifier = [dataclasses.asdict(LabelInfo(1, "kidney", modifier=["SCT", "7771000", "Left"]))]
    with pytest.raises(ModelFileError, match="axis 0, which would swap the sided"):
        ModelCard.from_dict(card_dict(labels=modifier, orientation="RAS", mirroring=[0]))  # sided by terminology
    with pytest.raises(ModelFileError, match="needs a fixed orientation"):
        ModelCard.from_dict(card_dict(labels=sided, orientation="none", mirroring=[1]))
    assert ModelCard.from_dict(card_dict(labels=sided, mirroring=[1, 2])).mirroring == [1, 2]
    two_d = {**threshold_card(2).to_dict(), "mirroring": [2]}
    with pytest.raises(ModelFileError, match="across which a 2D model takes its slices"):
        ModelCard.from_dict(two_d)


def test_largest_piece_and_small_islands_go_to_background():
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:8, 2:10, 2:10] = 1  # 384 voxels
    labels[2:4, 15:17, 15:17] = 1  # an island of 8 voxels
    labels[5:7, 14:18, 14:18] = 2  # 32 voxels
    labels[0, 0, 0] = 2  # an island of 1 voxel
    card = dataclasses.replace(threshold_card(), postprocessing={"big": LabelCleanup(largest_component=True),
                                                                 "small": LabelCleanup(min_island_mm3=4.0)})
    cleaned = clean_labels(labels.copy(), (1.0, 1.0, 2.0), card)  # 2 mm^3 voxels: islands under 2 voxels go
    assert np.count_nonzero(cleaned == 1) == 384 and cleaned[2, 15, 15] == 0
    assert np.count_nonzero(cleaned == 2) == 32 and cleaned[0, 0, 0] == 0


def test_mirroring_averages_the_flipped_passes():
    def lopsided(x: torch.Tensor) -> torch.Tensor:  # not symmetric under any flip
        return x.cumsum(-1) + 2 * x.cumsum(-2)

    images = torch.randn(2, 1, 4, 5, 6)
    mirrored = with_mirroring(lopsided, [4, 3])
    expected = (lopsided(images) + lopsided(images.flip(4)).flip(4) + lopsided(images.flip(3)).flip(3)) / 3
    assert torch.allclose(mirrored(images), expected, atol=1e-6)
    assert tensor_dims([0, 1], 3) == [4, 3] and tensor_dims([0, 1], 2, slice_axis=2) == [3, 2]
    assert tensor_dims([0, 2], 2, slice_axis=1) == [3, 2]


@pytest.mark.parametrize("dims", [3, 2])
def test_the_engine_mirrors_and_cleans_as_the_card_says(tmp_path, dims):
    plain = load_model(write_threshold_model(tmp_path / "plain.safetensors", dims))
    axes = [0, 1, 2] if dims == 3 else [0, 1]
    card = dataclasses.replace(plain.card, mirroring=axes, postprocessing={"big": LabelCleanup(True)})
    mirrored = dataclasses.replace(plain, card=card)
    calls = []
    mirrored.network.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    image, _ = make_phantom(shape=(24, 32, 32))
    image.array[2:4, 2:4, 2:4] = 60  # a stray piece with the big label's intensity
    expected = Segmenter(plain, SegmentOptions(device="cpu")).segment(image).labels
    passes_plain = len(calls)
    calls.clear()
    result = Segmenter(mirrored, SegmentOptions(device="cpu")).segment(image)
    assert len(calls) == (len(axes) + 1) * passes_plain  # one more pass per axis
    assert "cleanup" in result.report.seconds
    assert expected[3, 3, 3] == 1 and result.labels[3, 3, 3] == 0  # the stray piece went
    same = result.labels == expected
    assert same[(expected != 1)].all() and same.mean() > 0.99  # a voxel-wise network: mirroring changes nothing


def _dataset(folder, stray: bool):
    """A dataset folder whose scans have a second piece of the big label's intensity outside the organ: a stray
    piece (``stray``) or a real second piece of that label in the reference too."""
    import json

    from MedSegEfficientLib.io.images import write_label_image

    for split, seed in (("Tr", 0), ("Val", 1)):
        image, labels = make_phantom(shape=(24, 32, 32), seed=seed)
        image.array[2:6, 2:6, 2:6] = 60
        if not stray:
            labels.array[2:6, 2:6, 2:6] = 1
        write_label_image(image.array, image, folder / f"images{split}" / f"case{seed}_0000.nii.gz")
        write_label_image(labels.array, labels, folder / f"labels{split}" / f"case{seed}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "big": 1, "small": 2},
                                                     "channel_names": {"0": "CT"}}))
    return folder


def test_tune_keeps_only_what_raises_the_validation_dice(tmp_path, capsys):
    from MedSegEfficientLib.cli.main import main
    from MedSegEfficientLib.model.model_file import read_card

    model = write_threshold_model(tmp_path / "bands.safetensors")
    data = _dataset(tmp_path / "data", stray=True)
    assert main(["tune", str(model), "--data", str(data), "-o", str(model), "--device", "cpu"]) != 0
    assert "is the input" in capsys.readouterr().err  # a tuned model goes to a new file
    tuned = tmp_path / "tuned.safetensors"
    assert main(["tune", str(model), "--data", str(data), "-o", str(tuned), "--device", "cpu", "--quiet"]) == 0
    card = read_card(tuned)
    assert card.postprocessing["big"].largest_component  # the stray piece lowered the big label's Dice
    assert card.mirroring == []  # a voxel-wise network gains nothing from mirroring: not kept
    choice = card.metrics["postprocessing_choice"]
    assert card.metrics["validation_dice"]["big"] > choice["before"]["big"]
    assert "plain_run" in choice["seconds_per_scan"] and "cleanup" in choice["seconds_per_scan"]
    assert "optimistic" in choice["note"] and "tune_command" in card.training
    real = tmp_path / "real.safetensors"
    assert main(["tune", str(model), "--data", str(_dataset(tmp_path / "real_data", stray=False)), "-o", str(real),
                 "--device", "cpu", "--quiet"]) == 0
    kept = read_card(real).postprocessing.get("big", LabelCleanup())
    assert not kept.largest_component and kept.min_island_mm3 < 360  # the real second piece (360 mm^3) stays


def test_a_model_tuned_again_keeps_how_it_was_tuned_before(tmp_path):
    from MedSegEfficientLib.cli.main import main
    from MedSegEfficientLib.model.model_file import read_card

    model = write_threshold_model(tmp_path / "bands.safetensors")
    data = _dataset(tmp_path / "data", stray=True)
    once, twice = tmp_path / "once.safetensors", tmp_path / "twice.safetensors"
    assert main(["tune", str(model), "--data", str(data), "-o", str(once), "--device", "cpu", "--quiet"]) == 0
    assert main(["tune", str(once), "--data", str(data), "-o", str(twice), "--device", "cpu", "--quiet"]) == 0
    first, second = read_card(once).training, read_card(twice).training
    assert "earlier_tune_commands" not in first
    assert second["earlier_tune_commands"] == [first["tune_command"]]
    assert str(once) in second["tune_command"] and second["tune_command"] != first["tune_command"]
    assert read_card(twice).postprocessing == read_card(once).postprocessing  # tuning starts from the plain card
