"""`medseg import tm-unet`: a state dict saved the way the TM-UNet authors' train.py saves it imports, reports the
unused dwconv_1, and the imported network gives their network's outputs on the same input."""

from __future__ import annotations

import pytest
import torch
from authors_tm_unet_layout import AuthorsTMUNet, randomised
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.model.weights import load_model

PRESET_DIMS = {"t": [8, 16, 32, 64, 128], "s": [16, 32, 64, 128, 256]}


@pytest.mark.parametrize("preset, wrapped", [("t", False), ("s", True)])
def test_an_authors_state_dict_imports_and_gives_their_outputs(tmp_path, capsys, preset, wrapped):
    authors = randomised(AuthorsTMUNet(PRESET_DIMS[preset]))
    state = authors.state_dict()
    if wrapped:  # trained under nn.DataParallel
        state = {f"module.{key}": value for key, value in state.items()}
    source, output = tmp_path / "tmunet_isic2018_97.pth", tmp_path / "tm.safetensors"
    torch.save(state, source)
    assert main(["import", "tm-unet", str(source), "-o", str(output), "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert "dropped" in err and "dwconv_1" in err
    model = load_model(output)
    assert model.card.network.preset == preset and model.card.network.args == {"pooling": "tokens_channels"}
    assert model.card.patch_size == [64, 64] and model.card.normalization.kind == "imagenet"
    image = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        theirs, ours = authors(image), model.network(image)
    scale = theirs.abs().max()
    assert ours.shape == (2, 2, 64, 64) and bool((ours[:, 0] == 0).all())  # background score 0
    assert float((ours[:, 1:] - theirs).abs().max() / scale) < 1e-4
    assert bool(((ours.argmax(1) == 1) == (torch.sigmoid(theirs[:, 0]) > 0.5)).all())


def test_grid_pooling_stays_the_default_and_differs(tmp_path):
    from MedSegEfficientLib.networks import build_network

    torch.manual_seed(0)
    grid = build_network("tm_unet", 2, 3, 2, preset="t").eval()
    tokens = build_network("tm_unet", 2, 3, 2, preset="t", args={"pooling": "tokens_channels"}).eval()
    tokens.load_state_dict(grid.state_dict())
    image = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(grid(image), tokens(image))


def test_not_a_tm_unet_file_is_one_line(tmp_path, capsys):
    source = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, source)
    code = main(["import", "tm-unet", str(source), "-o", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "not a TM-UNet state dict" in err and err.count("\n") == 1
