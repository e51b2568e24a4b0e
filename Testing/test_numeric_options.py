"""Every numeric option is checked for range and finiteness at the command line (issue 34, item 5): a bad value is
argparse's usage error naming the option, exit 2, before anything is read or started."""

from __future__ import annotations

import pytest

from MedSegEfficientLib.cli.main import main

BAD = [
    ("serve", "--port", "-1"), ("serve", "--port", "70000"), ("serve", "--queue", "0"),
    ("serve", "--max-upload-mb", "nan"), ("serve", "--max-upload-mb", "inf"), ("serve", "--max-upload-mb", "1e-9"),
    ("segment x.nii.gz -o y.nii.gz", "--batch-size", "0"),
    ("batch x -o y", "--workers", "-2"), ("batch x -o y", "--gpus-per-worker", "nan"),
    ("info medseg_unet", "--classes", "-3"), ("info medseg_unet", "--classes", "1000000000"),
    ("bench", "--threads", "-2"), ("bench", "--repeat", "0"), ("bench", "--patch", "5000"),
    ("train data -o m.safetensors", "--lr", "inf"), ("train data -o m.safetensors", "--lr", "-1"),
    ("train data -o m.safetensors", "--seed", "-1"), ("train data -o m.safetensors", "--max-minutes", "nan"),
    ("train data -o m.safetensors", "--iterations-per-epoch", "0"), ("train data -o m.safetensors", "--workers", "-1"),
    ("fit run.npz -o m.safetensors", "--lr", "nan"), ("fit run.npz -o m.safetensors", "--epochs", "-1"),
    ("import mlla-imagenet x.pth -o m.safetensors", "--classes", "1000000000"),
]


@pytest.mark.parametrize("command, option, value", BAD)
def test_a_number_out_of_range_is_one_usage_error(command, option, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main([*command.split(), option, value])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert f"argument {option}" in err and "error:" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing read, nothing written


@pytest.mark.parametrize("command, option, value", [("serve", "--port", "0"), ("serve", "--max-upload-mb", "0.5"),
                                                    ("train data -o m.safetensors", "--seed", "0"),
                                                    ("fit run.npz -o m.safetensors", "--lr", "0.0005")])
def test_values_in_range_still_parse(command, option, value):
    from MedSegEfficientLib.cli.main import build_parser

    arguments = build_parser().parse_args([*command.split(), option, value])
    assert float(getattr(arguments, option.lstrip("-").replace("-", "_"))) == float(value)
