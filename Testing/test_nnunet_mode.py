"""nnU-Net's mode, part by part, against nnunetv2's own functions: its resampling of images and scores (orders 3, 1,
0; the separate slice axis both ways), tile placement, Gaussian, crop, export of logits to labels, and mirroring;
the card field and its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.inference.mirroring import with_mirroring
from MedSegEfficientLib.inference.nnunet import pipeline, tiling
from MedSegEfficientLib.inference.nnunet.pipeline import NnUNetGridInfo, NnUNetScores, nonzero_box
from MedSegEfficientLib.inference.nnunet.resampling import new_shape, resize
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.nnunet_mode import Resampling

default_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")
SPACINGS = [((3.0, 1.0, 1.0), (1.5, 0.8, 0.8)),  # ratio 3: not anisotropic (nnU-Net's '>')
            ((1.0, 1.0, 1.0), (2.0, 1.7, 1.3)),
            ((5.0, 1.0, 1.0), (2.0, 1.0, 1.0)),  # anisotropic input: the slice axis apart
            ((1.0, 1.0, 1.0), (1.0, 4.5, 1.0)),  # anisotropic target, along another axis
            ((0.8, 0.8, 0.8), (3.0, 3.0, 3.0))]
KWARGS = [{"order": 3, "order_z": 0, "force_separate_z": None}, {"order": 1, "order_z": 0, "force_separate_z": None},
          {"order": 3, "order_z": 1, "force_separate_z": True}, {"order": 3, "order_z": 0, "force_separate_z": False}]


@pytest.mark.parametrize("current,target", SPACINGS)
@pytest.mark.parametrize("kwargs", KWARGS)
def test_resampling_is_nnunets(current, target, kwargs):
    data = (np.random.default_rng(0).normal(size=(2, 21, 33, 30)) * 300).astype(np.float32)
    shape = new_shape(data.shape[1:], current, target)
    expected = default_resampling.resample_data_or_seg_to_shape(data, shape, current, target, is_seg=False, **kwargs)
    settings = Resampling(**kwargs)
    ours = resize(torch.from_numpy(data), shape, settings, settings.separate_axis(current, target)).numpy()
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 2e-6 * np.abs(expected).max()


def test_new_shape_rounds_as_nnunet():
    for old, spacing, target in [((7, 9, 11), (1.5, 1.0, 0.7), (1.0, 0.8, 2.0)), ((5, 5, 5), (1.0, 1.0, 1.0), (2.0,) * 3)]:
        assert list(new_shape(old, spacing, target)) == list(default_resampling.compute_new_shape(old, spacing, target))


def test_tiles_and_gaussian_are_nnunets():
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    for image, tile in [((100, 181, 77), (64, 96, 48)), ((300, 33, 129), (112, 32, 64)), ((28, 256), (20, 160))]:
        assert compute_steps_for_sliding_window(image, tile, 0.5) == [tiling.tile_starts(s, t, 0.5)
                                                                      for s, t in zip(image, tile)]
        expected = compute_gaussian(tile, 1 / 8, 10, device=torch.device("cpu")).float()
        assert torch.equal(tiling.importance_map(tile, torch.device("cpu")), expected)


def test_crop_is_nnunets_nonzero_box():
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

    data = np.zeros((2, 20, 30, 25), np.float32)
    data[0, 3:15, 5:9, 2:20] = 1.0
    data[1, 8:18, 12:28, 4:6] = -2.0
    data[0, 6:9, 6:8, 5:9] = 0.0  # a hole: filled by nnU-Net, the box unchanged
    _, _, bbox = crop_to_nonzero(data.copy())
    assert [(s.start, s.stop) for s in nonzero_box(torch.from_numpy(data))] == [tuple(b) for b in bbox]
    assert [(s.start, s.stop) for s in nonzero_box(torch.zeros(1, 4, 5, 6))] == [(0, 4), (0, 5), (0, 6)]


@pytest.mark.parametrize("model_spacing,input_spacing", [((3.0, 3.0, 3.0), (1.2, 0.9, 1.5)),
                                                         ((2.0, 2.0, 2.0), (6.0, 0.8, 0.8))])
def test_logits_to_labels_is_nnunets_export_in_slabs(monkeypatch, model_spacing, input_spacing):
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    logits = torch.from_numpy(np.random.default_rng(1).normal(size=(4, 9, 12, 11)).astype(np.float32))
    input_shape, box = (40, 45, 38), (slice(2, 24), slice(1, 41), slice(0, 30))
    cropped = tuple(b.stop - b.start for b in box)
    plans = {"dataset_name": "D", "plans_name": "P", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": {"spacing": list(model_spacing), "patch_size": [8, 8, 8],
                                               "architecture": {"network_class_name": "unused", "arch_kwargs": {},
                                                                "_kw_requires_import": []},
                                               "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                                               "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1,
                                                                                      "order_z": 0,
                                                                                      "force_separate_z": None}}},
             "image_reader_writer": "SimpleITKIO", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {}}
    manager = PlansManager(plans)
    properties = {"spacing": list(input_spacing), "shape_after_cropping_and_before_resampling": cropped,
                  "shape_before_cropping": input_shape, "bbox_used_for_cropping": [[b.start, b.stop] for b in box]}
    expected = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits.clone(), manager, manager.get_configuration("3d_fullres"),
        LabelManager({"background": 0, "a": 1, "b": 2, "c": 3}, None), properties)
    monkeypatch.setattr(pipeline, "_SLAB_BYTES", 4 * 4 * cropped[1] * cropped[2] * 3 * 3)  # three slices a slab
    info = NnUNetGridInfo(input_shape, box, input_spacing, model_spacing)
    ours = NnUNetScores(logits, info, Resampling(order=1)).labels()
    assert ours.shape == expected.shape
    assert np.mean(ours == expected) > 0.9999


def test_mirroring_takes_every_combination_as_nnunet():
    torch.manual_seed(0)
    network = torch.nn.Conv3d(1, 2, 3, padding=1)
    images = torch.randn(2, 1, 6, 7, 8)
    expected = network(images)
    for axes in ((2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)):
        expected = expected + torch.flip(network(torch.flip(images, axes)), axes)
    expected = expected / 8
    assert torch.allclose(with_mirroring(network, [2, 3, 4], combinations=True)(images), expected, atol=1e-6)
    assert not torch.allclose(with_mirroring(network, [2, 3, 4])(images), expected, atol=1e-4)


def test_the_card_field_is_checked():
    base = {"name": "m", "network": {"name": "demo_unet"}, "spatial_dims": 3, "in_channels": 1,
            "labels": [{"name": "kidney_left", "value": 1}], "orientation": "none", "mirroring": [0, 1, 2]}
    with pytest.raises(ModelFileError, match="sided"):  # without nnU-Net's mode, mirroring swaps sides
        ModelCard.from_dict(base)
    card = ModelCard.from_dict({**base, "nnunet": {"tile_step": 0.5, "data": {"order": 3}, "scores": {"order": 1}}})
    assert card.nnunet.data.order == 3 and card.nnunet.scores.order == 1
    assert ModelCard.from_dict(card.to_dict()) == card
    for bad, message in [({"tile_step": 0}, "tile_step"), ({"data": {"order": 2}}, "orders"),
                         ({"scores": {"force_separate_z": "yes"}}, "force_separate_z"), ({"steps": 1}, "unknown")]:
        with pytest.raises(ModelFileError, match=message):
            ModelCard.from_dict({**base, "nnunet": bad})


@pytest.mark.parametrize("dims", [2, 3])
def test_the_engine_gives_nnunets_predictor_labels_on_small_models(tmp_path, dims):
    """A 2d and a 3d_fullres model (random weights, two folds, mirroring) on a small CT whose spacing differs from
    the plans': nnUNetPredictor (nnunetv2's own) and the engine after the import agree voxel for voxel."""
    import json
    import sys
    from pathlib import Path

    from MedSegEfficientLib.importers.nnunet_v2 import import_nnunet
    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
    from MedSegEfficientLib.model.weights import load_model
    from MedSegEfficientLib.volume import Volume
    from authors_xlstm_layout import nnunet_checkpoint
    from test_nnunet_import import DATASET, original_network, results_folder

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from nnunet_predictor import nnunet_predictor

    folder, _ = results_folder(tmp_path, "PlainConvUNet", dims, "new")
    plans = json.loads((folder / "plans.json").read_text())
    configuration = "3d_fullres" if dims == 3 else "2d"
    plans["configurations"][configuration].update({
        "preprocessor_name": "DefaultPreprocessor", "batch_dice": False,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_probabilities":
            "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}})
    (folder / "plans.json").write_text(json.dumps(plans))
    second = original_network("PlainConvUNet", dims)
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.mul_(1.2)
    (folder / "fold_1").mkdir()
    torch.save(nnunet_checkpoint(second, "nnUNetTrainer", configuration, plans, DATASET),
               folder / "fold_1" / "checkpoint_final.pth")
    for fold in ("fold_0", "fold_1"):  # the axes a 2D trainer allows: its two
        checkpoint = torch.load(folder / fold / "checkpoint_final.pth", weights_only=False)
        checkpoint["inference_allowed_mirroring_axes"] = tuple(range(dims))
        torch.save(checkpoint, folder / fold / "checkpoint_final.pth")
    rng = np.random.default_rng(dims)
    array = (rng.normal(size=(14, 37, 45)) * 300).astype(np.int16)
    array[:2] = 0  # a zero border: nnU-Net crops it away and gives it label 0
    volume = Volume(array, (1.1, 0.9, 3.1))
    imported = import_nnunet(folder, tmp_path / "m.safetensors", ["0", "1"])
    ours = Segmenter(load_model(imported), SegmentOptions(device="cpu")).segment(volume).labels
    predictor = nnunet_predictor(folder, (0, 1), torch.device("cpu"))
    expected = predictor.predict_single_npy_array(array.astype(np.float32)[None], {"spacing": [3.1, 0.9, 1.1]},
                                                  None, None, False)
    assert ours.shape == expected.shape
    assert np.mean(ours == expected) > 0.999 and (ours[:2] == 0).all()
