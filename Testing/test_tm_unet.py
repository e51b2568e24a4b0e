"""TM-UNet: the published parameter counts, any channels and classes, grid pooling, backends, engine and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.mlstm.tm_unet import MultiScalePooling
from MedSegEfficientLib.networks.mlstm.vil import ViLLayer
from MedSegEfficientLib.networks.cost import count_parameters
from MedSegEfficientLib.volume import Volume
from phantoms import make_phantom, train_on_phantom


@pytest.mark.parametrize("preset, millions", [("t", 0.389), ("s", 1.477), ("b", 5.751)])
def test_parameter_counts_match_the_paper_code(preset, millions):
    network = build_network("tm_unet", 2, in_channels=3, out_channels=1, preset=preset)
    assert count_parameters(network) == pytest.approx(millions * 1e6, rel=0.02)


def test_any_channels_classes_and_sizes():
    network = build_network("tm_unet", 2, in_channels=1, out_channels=5, preset="t").eval()
    with torch.inference_mode():
        assert network(torch.randn(2, 1, 64, 96)).shape == (2, 5, 64, 96)


def test_pooling_mixes_the_grid_not_the_channels():
    impulse = torch.zeros(1, 4, 16, 16)
    impulse[0, 2, 8, 8] = 1.0
    mixed = MultiScalePooling()(impulse)
    assert mixed[0, 2, 8, 12] != 0 and mixed[0, 2, 12, 8] != 0  # spreads over rows and columns
    assert not mixed[0, [0, 1, 3]].any()  # never into other channels


def test_linear_and_quadratic_backends_agree():
    torch.manual_seed(0)
    network = build_network("tm_unet", 2, 3, 2, preset="t").eval()
    image = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        chunkwise = network(image)
        for layer in network.modules():
            if isinstance(layer, ViLLayer):
                layer.backend = "parallel"
        assert torch.allclose(network(image), chunkwise, atol=1e-4)


def _tm_unet_model(in_channels: int) -> LoadedModel:
    card = ModelCard(name="tm", network=NetworkInfo("tm_unet", "t"), spatial_dims=2, in_channels=in_channels,
                     labels=[LabelInfo(1, "organ")], normalization=Normalization(kind="zscore"), spacing=None)
    torch.manual_seed(0)
    return LoadedModel(card, build_from_card(card))


def test_engine_runs_it_slice_by_slice_and_on_rgb_pictures():
    image, _ = make_phantom(shape=(5, 40, 50))
    labels = Segmenter(_tm_unet_model(1), SegmentOptions(device="cpu")).segment(image).labels
    assert labels.shape == (5, 40, 50)
    rgb = Volume(np.random.default_rng(0).integers(0, 255, (1, 70, 90, 3)).astype(np.uint8))
    assert Segmenter(_tm_unet_model(3), SegmentOptions(device="cpu")).segment(rgb).labels.shape == (1, 70, 90)


@pytest.mark.slow
def test_trainable_with_medseg_train(tmp_path):
    """Trained here on one phantom (about 12 s), it segments an unseen one."""
    from MedSegEfficientLib.model.weights import load_model
    from MedSegEfficientLib.metrics import dice_per_label
    from MedSegEfficientLib.training.trainer import TrainConfig

    config = TrainConfig(network="tm_unet", preset="t", spatial_dims=2, patch_size=[64, 64], epochs=6,
                         iterations_per_epoch=20, batch_size=8, learning_rate=3e-3, device="cpu")
    card, losses = train_on_phantom(tmp_path, (16, 64, 64), config)
    assert card.network.name == "tm_unet" and losses[-1] < losses[0]
    image, reference = make_phantom(shape=(16, 64, 64), seed=5)
    labels = Segmenter(load_model(tmp_path / "model.safetensors"), SegmentOptions(device="cpu")).segment(image).labels
    scores = dice_per_label([labels], [reference.array], [1, 2])
    assert scores[1] > 0.85 and scores[2] > 0.85, scores
