"""MLLA-UNet as its authors built it: a whole checkpoint saved by their trainer imports and gives their logits;
the decoder's upsampler has no ReLU after its transposed convolution; `mlla-imagenet` starts the decoder from
the encoder as their `load_from` does, or leaves it (`--decoder-init none`)."""

from __future__ import annotations

import pytest
import torch
from authors_mlla_unet_layout import AuthorsWrapper, randomised
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.networks.rope import rope_rotations

SIZE = 64


def authors_checkpoint(tmp_path, wrapped: bool):
    authors = randomised(AuthorsWrapper(image_size=SIZE, classes=4, dim=32, depths=(1, 1, 2, 1),
                                        decoder_depths=(1, 1, 2, 1), heads=(1, 2, 4, 8)))
    state = authors.state_dict()
    if wrapped:  # trained under nn.DataParallel
        state = {f"module.{key}": value for key, value in state.items()}
    path = tmp_path / "epoch_149.pth"
    torch.save(state, path)
    return authors, path


@pytest.mark.parametrize("in_channels, wrapped", [(1, False), (3, True)])
def test_an_authors_checkpoint_gives_their_logits(tmp_path, in_channels, wrapped):
    authors, source = authors_checkpoint(tmp_path, wrapped)
    output = tmp_path / "mlla.safetensors"
    assert main(["import", "mlla-unet", str(source), "-o", str(output), "--in-channels", str(in_channels),
                 "--size", str(SIZE)]) == 0
    model = load_model(output)
    assert model.card.in_channels == in_channels and model.card.network.args["decoder_depths"] == [1, 2, 1]
    assert model.card.normalization.kind == ("ct" if in_channels == 1 else "imagenet")
    image = torch.randn(2, in_channels, SIZE, SIZE)
    with torch.inference_mode():
        theirs, ours = authors(image), model.network(image)
    assert ours.shape == theirs.shape == (2, 4, SIZE, SIZE)
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < 1e-4


def test_a_file_that_is_not_a_whole_mlla_unet_is_one_line(tmp_path, capsys):
    source = tmp_path / "encoder_only.pth"
    torch.save({"patch_embed.conv1.conv.weight": torch.zeros(16, 3, 3, 3)}, source)
    code = main(["import", "mlla-unet", str(source), "-o", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "not a whole MLLA-UNet" in err and err.count("\n") == 1


def _imagenet_file(tmp_path):
    """An MLLA ImageNet checkpoint (LeapLabTHU/MLLA: {"model": state}) made from the authors' encoder names."""
    authors = randomised(AuthorsWrapper(image_size=224, classes=4, dim=32, depths=(1, 1, 2, 1),
                                        decoder_depths=(1, 1, 2, 1), heads=(1, 2, 4, 8)))
    encoder = {key[len("mlla_unet."):]: value for key, value in authors.state_dict().items()
               if key.startswith(("mlla_unet.patch_embed.", "mlla_unet.layers.", "mlla_unet.norm."))}
    encoder["head.weight"], encoder["head.bias"] = torch.randn(1000, 256), torch.randn(1000)
    path = tmp_path / "MLLA-T.pth"
    torch.save({"model": encoder, "epoch": 299}, path)
    return encoder, path


@pytest.mark.parametrize("decoder_init", ["encoder", "none"])
def test_imagenet_import_starts_the_decoder_from_the_encoder_like_load_from(tmp_path, decoder_init):
    encoder, source = _imagenet_file(tmp_path)
    output = tmp_path / "m.safetensors"
    assert main(["import", "mlla-imagenet", str(source), "-o", str(output), "--classes", "4",
                 "--decoder-init", decoder_init]) == 0
    state = load_model(output).network.state_dict()
    # their layers.2 (width 128, two blocks) starts their layers_up.1, our layers_up.0
    copied = [key for key in state if key.startswith("layers_up.0.blocks.")
              and not key.endswith("num_batches_tracked")]
    assert copied
    same = [torch.equal(state[key], encoder[key.replace("layers_up.0.", "layers.2.")]) for key in copied]
    assert all(same) if decoder_init == "encoder" else not any(same)
    assert torch.equal(state["layers.2.blocks.1.attn.qk.weight"], encoder["layers.2.blocks.1.attn.qk.weight"])


def test_the_rope_buffers_of_a_checkpoint_are_the_ones_we_compute():
    authors = AuthorsWrapper(image_size=SIZE, classes=2, dim=32)
    stored = authors.mlla_unet.layers[1].blocks[0].attn.rope.rotations
    assert torch.allclose(stored.float(), rope_rotations(SIZE // 8, SIZE // 8, 64), atol=1e-5)
