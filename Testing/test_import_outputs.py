"""`medseg import` never destroys a file: the output is never one of its inputs, and the card is checked before
anything is written, so a failed import leaves an existing output as it was (issue 34, item 4)."""

from __future__ import annotations

import json

import pytest
import torch
from authors_tm_unet_layout import AuthorsTMUNet, randomised
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.files import sha256_of
from models_for_tests import IntensityBands, BANDS, threshold_card


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def test_import_pth_refuses_to_write_over_its_own_checkpoint_or_card(tmp_path, capsys):
    card = threshold_card()
    source, card_file = tmp_path / "weights.pth", tmp_path / "card.json"
    torch.save(IntensityBands(3, 1, card.out_channels, BANDS).state_dict(), source)
    card_file.write_text(json.dumps(card.to_dict()))
    before = {path: sha256_of(path) for path in (source, card_file)}
    for output in (source, card_file, tmp_path / "." / "weights.pth"):
        code, err = run(capsys, "import", "pth", source, "--card", card_file, "-o", output)
        assert code == 2 and err.count("\n") == 1 and "is the input" in err, err
    assert {path: sha256_of(path) for path in before} == before
    code, err = run(capsys, "import", "pth", source, "--card", card_file, "-o", tmp_path / "model.safetensors")
    assert code == 0, err


@pytest.mark.parametrize("size", ["-1", "100000"])
def test_a_failed_import_leaves_the_existing_output_as_it_was(tmp_path, capsys, size):
    source, output = tmp_path / "tmunet.pth", tmp_path / "tm.safetensors"
    torch.save(randomised(AuthorsTMUNet([8, 16, 32, 64, 128])).state_dict(), source)
    assert main(["import", "tm-unet", str(source), "-o", str(output), "--size", "64"]) == 0
    capsys.readouterr()
    before = sha256_of(output)
    code, err = run(capsys, "import", "tm-unet", source, "-o", output, "--size", size)
    assert code == 2 and "invalid model card" in err and "patch_size" in err, err
    assert sha256_of(output) == before  # the model that was there still loads
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tm.safetensors", "tmunet.pth"]  # no leftovers


@pytest.mark.parametrize("command", [
    ["train", "{data}", "-o", "{data}/dataset.json"],
    ["train", "--pairs", "{image}:{label}", "-o", "{label}"],
    ["fit", "{image}", "-o", "{image}"],
    ["distill", "--data", "{data}", "-o", "{data}/dataset.json"],
    ["tune", "{image}", "--data", "{data}", "-o", "{image}"],
    ["bench", "--networks", "monai_unet", "--image", "{image}", "--json", "{image}"],
])
def test_no_command_writes_over_one_of_its_inputs(tmp_path, capsys, command):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text('{"labels": {"background": 0, "a": 1}}')
    image, label = tmp_path / "image.nii.gz", tmp_path / "label.nii.gz"
    image.write_bytes(b"image bytes")
    label.write_bytes(b"label bytes")
    before = {path: path.read_bytes() for path in (data / "dataset.json", image, label)}
    argv = [part.format(data=data, image=image, label=label) for part in command]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "is the input" in error or "inside the input folder" in error, error
    assert {path: path.read_bytes() for path in before} == before


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("command", [["import", "pth", "{good}", "--card", "{fifo}", "-o", "{out}"],
                                     ["evaluate", "{fifo}", "{good}"], ["fit", "{fifo}", "-o", "{out}"],
                                     ["evaluate", "{good}", "{good}", "--label-map", "{fifo}"]])
def test_a_named_pipe_given_as_any_input_is_one_line_not_a_hang(tmp_path, capsys, command):
    import os

    fifo, good = tmp_path / "pipe", tmp_path / "weights.pth"
    os.mkfifo(fifo)
    good.write_bytes(b"x")
    argv = [part.format(fifo=fifo, good=good, out=tmp_path / "out.safetensors") for part in command]
    assert main(argv) == 2
    assert "not a regular file or a folder" in capsys.readouterr().err
