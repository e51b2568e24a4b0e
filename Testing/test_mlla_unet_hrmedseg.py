"""MLLA-UNet-T and HRMedSeg: sizes and costs against the papers' (thop, the counter their figures used), any
input size, channels and classes, engine runs, training, and HRMedSeg's activation checkpointing."""

from __future__ import annotations

import numpy as np
import pytest
import thop
import torch
from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card
from MedSegEfficientLib.inference.engine import Segmenter, SegmentOptions
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.volume import Volume
from phantoms import train_on_phantom

TINY_MLLA = {"dim": 16, "depths": [1, 1, 1, 1], "heads": [1, 1, 2, 2], "decoder_depths": [1, 1, 1]}


def _thop(network, shape):
    macs, params = thop.profile(network.eval(), inputs=(torch.zeros(shape),), verbose=False)
    return macs, sum(p.numel() for p in network.parameters())


def test_mlla_unet_t_matches_the_paper_configuration():
    macs, params = _thop(build_network("mlla_unet", 2, 3, 9, preset="t"), (1, 3, 224, 224))
    assert params == pytest.approx(28.51e6, rel=0.02)
    assert macs == pytest.approx(5.91e9, rel=0.05)


def test_hrmedseg_matches_the_paper_configuration():
    macs, params = _thop(build_network("hrmedseg", 2, 3, 2), (1, 3, 1024, 1024))
    assert params == pytest.approx(3.53e6, rel=0.05)
    assert macs == pytest.approx(9.39e9, rel=0.05)


@pytest.mark.parametrize("name, args, shape", [("mlla_unet", TINY_MLLA, (2, 1, 64, 96)),
                                               ("mlla_unet", TINY_MLLA, (1, 4, 160, 32)),
                                               ("hrmedseg", {}, (2, 1, 128, 96)), ("hrmedseg", {}, (1, 3, 64, 64))])
def test_any_size_channels_and_classes(name, args, shape):
    network = build_network(name, 2, shape[1], 5, args=args).eval()
    with torch.inference_mode():
        assert network(torch.randn(shape)).shape == (shape[0], 5, *shape[2:])


def test_hrmedseg_checkpointing_changes_memory_not_results():
    torch.manual_seed(0)
    plain = build_network("hrmedseg", 2, 3, 2).train()
    checkpointed = build_network("hrmedseg", 2, 3, 2, preset="checkpointed").train()
    checkpointed.load_state_dict(plain.state_dict())
    image = torch.randn(2, 3, 64, 64)
    outputs = []
    for network in (plain, checkpointed):
        torch.manual_seed(1)
        out = network(image)
        out.square().mean().backward()
        outputs.append((out.detach(), network.image_encoder.patch_embed.weight.grad.clone()))
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    torch.testing.assert_close(outputs[0][1], outputs[1][1], atol=1e-6, rtol=1e-4)


def _card(name, args, patch, channels=1):
    return ModelCard(name="x", network=NetworkInfo(name, None, args), spatial_dims=2, in_channels=channels,
                     labels=[LabelInfo(1, "big"), LabelInfo(2, "small")], normalization=Normalization(kind="zscore"),
                     spacing=None, patch_size=patch)


@pytest.mark.parametrize("name, args, patch", [("mlla_unet", TINY_MLLA, None), ("hrmedseg", {}, [128, 128])])
def test_engine_runs_them_slice_by_slice(name, args, patch):
    card = _card(name, args, patch)
    volume = Volume(np.random.default_rng(0).normal(size=(3, 70, 50)).astype(np.float32), spacing=(1.0, 1.0, 2.0))
    labels = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu")).segment(volume).labels
    assert labels.shape == (3, 70, 50)


def test_hrmedseg_segments_an_rgb_image_at_its_native_size():
    card = _card("hrmedseg", {}, [1024, 1024], channels=3)
    rgb = Volume(np.random.default_rng(0).integers(0, 255, (1, 300, 400, 3)).astype(np.float32), spacing=(0.1, 0.1, 1))
    labels = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu")).segment(rgb).labels
    assert labels.shape == (1, 300, 400)


@pytest.mark.parametrize("name, preset, args", [("mlla_unet", "t", TINY_MLLA),
                                                ("hrmedseg", "default", {"dim": 32, "depths": [1, 1, 1, 1], "heads": [1, 2, 2, 4]})])
def test_trainable_with_medseg_train(tmp_path, name, preset, args):
    from MedSegEfficientLib.training.trainer import TrainConfig

    config = TrainConfig(network=name, preset=preset, network_args=args, spatial_dims=2, patch_size=[64, 64], epochs=2,
                         iterations_per_epoch=6, batch_size=4, learning_rate=2e-3, device="cpu")
    _, losses = train_on_phantom(tmp_path, (12, 64, 64), config)
    assert (tmp_path / "model.safetensors").is_file() and losses[-1] < losses[0]
