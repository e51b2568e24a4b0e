"""xLSTM-UNet: Bot and Enc in 2D and 3D from a plan, channel-token ViL, deep supervision, engine runs."""

from __future__ import annotations

import pytest
import torch

from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.mlstm.xlstm_unet import ViLOnGrid, default_plan
from phantoms import make_phantom, train_on_phantom

SMALL_PLAN = {"features": [8, 16, 32, 32], "kernels": [3, 3, 3, 3], "strides": [1, 2, 2, 2], "blocks": [1, 1, 1, 1]}


@pytest.mark.parametrize("preset, shape", [("bot_2d", (2, 1, 64, 48)), ("enc_2d", (2, 1, 64, 48)),
                                           ("bot_3d", (1, 2, 32, 24, 16)), ("enc_3d", (1, 2, 32, 24, 16))])
def test_presets_run_in_their_dimension(preset, shape):
    dims = len(shape) - 2
    network = build_network("xlstm_unet", dims, shape[1], 3, preset=preset, args={"plan": SMALL_PLAN}).eval()
    with torch.inference_mode():
        assert network(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])
    has_vil = any(isinstance(m, ViLOnGrid) for m in network.modules())
    assert has_vil


def test_enc_places_vil_blocks_as_the_authors_do():
    network = build_network("xlstm_unet", 3, 1, 2, preset="enc_3d")  # default 6-stage plan
    assert [type(m).__name__ for m in network.mixers] == ["ResidualBlock"] * 3 + ["ViLOnGrid"] * 3
    flat = build_network("xlstm_unet", 2, 1, 2, preset="enc_2d")  # 8 stages: odd stages > 1, stage 1 a block
    assert [type(m).__name__ for m in flat.mixers] == ["Identity", "ResidualBlock", "Identity", "ViLOnGrid",
                                                       "Identity", "ViLOnGrid", "Identity", "ViLOnGrid"]


def test_channel_tokens_when_a_stage_has_fewer_voxels_than_channels():
    network = build_network("xlstm_unet", 3, 1, 2, preset="enc_3d", args={"patch_size": [64, 64, 64]})
    assert network.mixers[5].channel_tokens and not network.mixers[3].channel_tokens  # 2^3 vs 8^3 voxels, 320
    assert not build_network("xlstm_unet", 3, 1, 2, preset="bot_3d",
                             args={"patch_size": [64, 64, 64]}).bottleneck.channel_tokens  # as the authors
    with torch.inference_mode():
        assert network.eval()(torch.randn(1, 1, 64, 64, 64)).shape == (1, 2, 64, 64, 64)


def test_default_plans_follow_nnunet_and_the_authors_block_rule():
    assert default_plan(2)["features"] == [32, 64, 128, 256, 512, 512, 512, 512]
    assert default_plan(2)["blocks"] == [2, 2, 2, 2, 1, 1, 1, 1]
    assert default_plan(2)["decoder_blocks"] == [2, 2, 2, 2, 1, 1, 1]
    three = default_plan(3)
    assert three["features"] == [32, 64, 128, 256, 320, 320]
    assert (three["blocks"], three["decoder_blocks"]) == ([2, 2, 2, 1, 1, 1], [2, 2, 2, 1, 1])


def test_anisotropic_plan_and_no_full_resolution_skip():
    plan = {"features": [8, 16, 24], "kernels": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]], "blocks": [2, 1, 1], "decoder_blocks": [2, 1],
            "full_resolution_skip": False}
    network = build_network("xlstm_unet", 3, 1, 3, preset="bot_3d", args={"plan": plan}).eval()
    assert network.decoder[-1][0].conv1.in_channels == 8  # no skip concatenated at full resolution
    assert network.encoder[1][0].conv1.stride == (1, 2, 2) and network.stem[0].conv1.kernel_size == (1, 3, 3)
    with torch.inference_mode():
        assert network(torch.randn(1, 1, 8, 16, 12)).shape == (1, 3, 8, 16, 12)


def test_deep_supervision_in_training():
    network = build_network("xlstm_unet", 2, 1, 2, preset="bot_2d",
                            args={"plan": SMALL_PLAN, "deep_supervision": True}).train()
    outputs = network(torch.randn(2, 1, 32, 32))
    assert [o.shape[-1] for o in outputs] == [32, 16, 8]


@pytest.mark.parametrize("dims", [2, 3])
def test_engine_runs_it(dims):
    card = ModelCard(name="x", network=NetworkInfo("xlstm_unet", f"bot_{dims}d", {"plan": SMALL_PLAN}),
                     spatial_dims=dims, in_channels=1, labels=[LabelInfo(1, "big"), LabelInfo(2, "small")],
                     normalization=Normalization(kind="zscore"), spacing=None,
                     patch_size=[24, 24, 24] if dims == 3 else None)
    torch.manual_seed(0)
    image, _ = make_phantom(shape=(20, 40, 36))
    labels = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu")).segment(image).labels
    assert labels.shape == (20, 40, 36)


def test_trainable_with_deep_supervision(tmp_path):
    from MedSegEfficientLib.training.trainer import TrainConfig

    config = TrainConfig(network="xlstm_unet", preset="bot_3d",
                         network_args={"plan": SMALL_PLAN, "deep_supervision": True}, patch_size=[24, 24, 24],
                         spacing=[1.5, 1.5, 2.5], epochs=2, iterations_per_epoch=6, batch_size=2,
                         learning_rate=3e-3, device="cpu")
    _, losses = train_on_phantom(tmp_path, (24, 32, 32), config)
    assert (tmp_path / "model.safetensors").is_file() and losses[-1] < losses[0]
