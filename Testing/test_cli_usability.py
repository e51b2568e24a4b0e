"""What a new user meets on the command line: a bug is one line and a log, bad numbers are named, the benchmark
says what it is doing, and `--max-minutes` is honoured within an epoch."""

from __future__ import annotations

import json

import pytest

from MedSegEfficientLib.cli import segment as segment_command
from MedSegEfficientLib.cli.main import EXIT_INTERNAL, main
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.training.datasets import describe_pairs
from MedSegEfficientLib.training.trainer import TrainConfig, train
from phantoms import make_phantom


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_bug_is_one_line_with_its_traceback_in_a_log(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_LOG_DIR", str(tmp_path))

    def broken(args):
        raise KeyError("an internal slip")

    monkeypatch.setattr(segment_command, "run", broken)
    code, out, err = run(capsys, "segment", "x.nii.gz", "-o", "y.nii.gz")
    assert code == EXIT_INTERNAL and err.count("\n") == 1 and "internal error: KeyError" in err
    log = (tmp_path / "last-error.log").read_text()
    assert "Traceback" in log and "an internal slip" in log
    code, _, err = run(capsys, "--debug", "segment", "x.nii.gz", "-o", "y.nii.gz")
    assert code == EXIT_INTERNAL and "Traceback" in err


def test_a_negative_batch_size_is_named(capsys, tmp_path):
    image, _ = make_phantom(shape=(8, 10, 12))
    source = write_label_image(image.array, image, tmp_path / "ct.nii.gz")
    with pytest.raises(SystemExit) as stopped:  # the command line's range check, before the image is read
        run(capsys, "segment", source, "-o", tmp_path / "o.nii.gz", "--batch-size", "-1")
    assert stopped.value.code == 2 and "argument --batch-size: -1 is outside 1..4096" in capsys.readouterr().err


def test_bench_says_what_it_runs_and_gives_each_network_its_own_peak_ram(capsys, tmp_path):
    output = tmp_path / "bench.json"
    code, out, err = run(capsys, "bench", "--networks", "monai_unet:tiny,medseg_unet:tiny", "--input",
                         "1x1x40x40x24", "--patch", "32", "--device", "cpu", "--repeat", "1", "--json", output)
    assert code == 0
    assert "medseg bench: monai_unet:tiny: building" in err and "medseg bench: medseg_unet:tiny: run 1 of 1" in err
    results = json.loads(output.read_text())["results"]
    assert all(0 < result["peak_ram_bytes"] < 4 << 30 for result in results)


def test_max_minutes_stops_within_the_first_epoch(tmp_path):
    pairs = []
    for seed in (1, 2):
        image, labels = make_phantom(shape=(24, 32, 32), seed=seed)
        pairs.append((str(write_label_image(image.array, image, tmp_path / f"ct{seed}.nii.gz")),
                      str(write_label_image(labels.array, labels, tmp_path / f"labels{seed}.nii.gz"))))
    description = describe_pairs(pairs[:1], {1: "big", 2: "small"})
    description.validation = describe_pairs(pairs[1:], {1: "big", 2: "small"}).training
    config = TrainConfig(network="medseg_unet", preset="tiny", patch_size=[16, 16, 16], spacing=[2.0, 2.0, 2.5],
                         epochs=50, iterations_per_epoch=1000, batch_size=1, device="cpu", max_minutes=0.001)
    messages: list[str] = []
    card = train(description, tmp_path / "m.safetensors", config, log=messages.append, show_progress=False)
    assert any(message.startswith("stopping after epoch 1") for message in messages)
    cut = next(message for message in messages if "minute limit passed after" in message)
    assert int(cut.split("after ")[1].split(" of ")[0]) < 1000  # mid-epoch, not after all 1000 batches
    assert card.metrics["validation_dice"].keys() == {"big", "small"}  # the partial epoch was validated and kept


@pytest.mark.parametrize("command", ["segment", "batch", "models", "info", "evaluate", "sample-data", "import", "train",
                                     "bench", "distill", "fit", "tune"])
def test_every_option_has_help(command):
    from MedSegEfficientLib.cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [action.dest for action in commands[command]._actions if not action.help]
    assert not missing, missing


def test_one_sample_fetches_only_the_package_that_holds_it(tmp_path, monkeypatch, capsys):
    from MedSegEfficientLib.cli.main import main

    monkeypatch.setenv("MEDSEG_DATA_DIR", str(tmp_path))
    assert main(["sample-data", "--path", "nuclei_2d"]) == 0
    assert capsys.readouterr().out.strip().endswith("img2d.tif")
    assert [path.name for path in tmp_path.iterdir()] == ["stardist-0.9.2"]  # not the 38 MB CT archive
    assert main(["sample-data", "--path", "no_such_sample"]) == 2
    assert "no sample named no_such_sample" in capsys.readouterr().err


def test_an_input_error_is_its_one_line_without_an_empty_progress_bar(tmp_path, capsys):
    from MedSegEfficientLib.cli.main import main

    assert main(["segment", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "out.nii.gz")]) == 2
    error = capsys.readouterr().err
    assert error.splitlines() == [f"medseg: error: no such file or folder: {tmp_path / 'missing.nii.gz'}"]
