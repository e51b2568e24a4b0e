"""`medseg evaluate` and `medseg train` on labels that are not what they seem, and `import` on hostile files: one
line each, never a traceback or a silent zero."""

from __future__ import annotations

import json
from pathlib import Path
import os
import zipfile

import numpy as np
import pytest
import torch

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.model.weights import load_model
from models_for_tests import threshold_card, write_threshold_model
from phantoms import make_phantom


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def phantom(tmp_path):
    image, labels = make_phantom(shape=(16, 20, 24), seed=1)
    return (write_label_image(image.array, image, tmp_path / "ct.nii.gz"),
            write_label_image(labels.array, labels, tmp_path / "labels.nii.gz"), image, labels,
            write_threshold_model(tmp_path / "bands.safetensors"))


def test_evaluate_matches_by_number_and_prints_the_mean(phantom, capsys):
    source, labels, *_, model = phantom
    code, out, err = run(capsys, "evaluate", source, labels, "--model", model, "--device", "cpu")
    assert code == 0 and err == ""
    scores = dict(line.split()[:2] for line in out.splitlines() if line.split()[0] in ("big", "small", "mean"))
    assert float(scores["big"]) > 0.7 and float(scores["small"]) > 0.7 and float(scores["mean"]) > 0.7


def test_evaluate_against_other_numbers_warns_and_label_map_fixes_it(phantom, capsys, tmp_path):
    source, _, image, labels, model = phantom
    other = labels.array.copy()
    other[labels.array == 1], other[labels.array == 2] = 7, 9
    renumbered = write_label_image(other, labels, tmp_path / "other.nii.gz")
    code, out, err = run(capsys, "evaluate", source, renumbered, "--model", model, "--device", "cpu")
    assert code == 0 and "no label number of the model is in the reference" in err and "--label-map" in err
    code, out, err = run(capsys, "evaluate", source, renumbered, "--model", model, "--device", "cpu",
                         "--label-map", "big=7,small=9", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["dice"]["big"] > 0.7 and report["mean_dice"] > 0.7 and report["labels_scored"] == 2
    code, _, err = run(capsys, "evaluate", source, renumbered, "--model", model, "--label-map", "lung=3")
    assert code == 2 and "lung" in err and err.count("\n") == 1


def test_a_partial_label_map_scores_what_it_names_and_says_what_it_does_not(phantom, capsys, tmp_path):
    source, _, image, labels, model = phantom
    other = labels.array.copy()
    half = np.zeros_like(other, bool)
    half[: other.shape[0] // 2] = True
    other[(labels.array == 1) & half], other[(labels.array == 1) & ~half] = 7, 8  # "big" split in two numbers
    other[labels.array == 2] = 9
    reference = write_label_image(other, labels, tmp_path / "split.nii.gz")
    code, out, err = run(capsys, "evaluate", source, reference, "--model", model, "--device", "cpu",
                         "--label-map", "big=7+8")
    assert code == 0, err
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert float(rows["big"]) > 0.7  # both numbers count as "big"
    assert rows["small"].strip() == "not in --label-map"  # present in both maps, but not named: not "absent"
    assert "(1 label scored; 1 not in --label-map)" in rows["mean"]
    code, out, _ = run(capsys, "evaluate", source, reference, "--model", model, "--device", "cpu",
                       "--label-map", '{"big": [7, 8], "small": 9}', "--json")
    assert code == 0 and json.loads(out)["labels_scored"] == 2 and json.loads(out)["labels_not_matched"] == []
    for bad in ("big=-1", "big=0", "big=99999999999", "big=7.5", "big=7,small=7", '{"big": true}'):
        code, _, err = run(capsys, "evaluate", source, reference, "--model", model, "--label-map", bad)
        assert code == 2 and err.count("\n") == 1 and "--label-map" in err, (bad, err)


def test_a_seg_nrrd_reference_is_matched_by_segment_name(phantom, capsys, tmp_path):
    from MedSegEfficientLib.io.seg_nrrd import write_seg_nrrd
    from MedSegEfficientLib.model.card import LabelInfo

    source, _, image, labels, model = phantom
    other = labels.array.copy()
    other[labels.array == 1], other[labels.array == 2] = 2, 1  # the numbers swapped, the names kept
    reference = write_seg_nrrd(other, labels, [LabelInfo(2, "big"), LabelInfo(1, "small")], tmp_path / "ref.seg.nrrd")
    code, out, err = run(capsys, "evaluate", source, reference, "--model", model, "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["dice"]["big"] > 0.7


@pytest.mark.parametrize("reference, expected", [("ct", "it is an image, not a label map"),
                                                 ("fractional", "fractional voxel values"),
                                                 ("flat", "a label map must cover its image")])
def test_evaluate_refuses_what_is_not_a_label_map(phantom, capsys, tmp_path, reference, expected):
    source, _, image, labels, model = phantom
    if reference == "ct":
        path = source
    elif reference == "fractional":
        path = write_label_image(labels.array.astype(np.float32) * 0.5, labels, tmp_path / "f.nii.gz")
    else:
        path = write_label_image(labels.array[8:9], labels.with_array(labels.array[8:9]), tmp_path / "flat.nrrd")
    code, out, err = run(capsys, "evaluate", source, path, "--model", model, "--device", "cpu")
    assert code == 2 and expected in err and err.count("\n") == 1 and out == ""


@pytest.mark.slow
def test_evaluate_takes_a_dicom_folder(samples, capsys):
    code, out, err = run(capsys, "evaluate", samples["example_ct_dicom"], samples["example_seg_dicom"],
                         "--device", "cpu")
    assert code == 0, err
    assert "mean" in out and "liver" in out


@pytest.mark.parametrize("options, expected", [
    (["--patch-size", "0", "0", "0"], "--patch-size needs 3 positive sizes"),
    (["--patch-size", "32", "32"], "--patch-size needs 3 positive sizes"),
    (["--spacing", "-1", "1", "1"], "--spacing needs 3 values in mm above 0"),
    (["--epochs", "0"], "--epochs must be 1 or more"),
    (["--batch-size", "0"], "--batch-size must be 1 or more"),
])
def test_train_settings_are_checked_before_any_data(phantom, capsys, tmp_path, options, expected):
    source, labels, *_ = phantom
    code, out, err = run(capsys, "train", "--pairs", f"{source}:{labels}", "-o", tmp_path / "m.safetensors",
                         "--quiet", *options)
    assert code == 2 and expected in err and err.count("\n") == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_train_refuses_a_ct_given_as_its_own_labels_and_a_broken_dataset_json(phantom, capsys, tmp_path):
    source, *_ = phantom
    code, _, err = run(capsys, "train", "--pairs", f"{source}:{source}", "-o", tmp_path / "m.safetensors")
    assert code == 2 and "it is an image, not a label map" in err
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "dataset.json").write_text('{"labels": {"liver": 1},')
    code, _, err = run(capsys, "train", folder, "-o", tmp_path / "m.safetensors")
    assert code == 2 and "is not valid JSON" in err and err.count("\n") == 1


def test_import_of_random_bytes_is_not_called_pickled_objects(capsys, tmp_path):
    noise, card = tmp_path / "noise.pth", tmp_path / "card.json"
    noise.write_bytes(os.urandom(8192))
    card.write_text(json.dumps(threshold_card().to_dict()))
    code, _, err = run(capsys, "import", "pth", noise, "--card", card, "-o", tmp_path / "m.safetensors")
    assert code == 2 and "not a" in err and "pickled Python objects" not in err and "\x1b[" not in err


def test_import_refuses_a_zip_bomb_before_inflating_it(capsys, tmp_path):
    bomb, card = tmp_path / "bomb.pth", tmp_path / "card.json"
    card.write_text(json.dumps(threshold_card().to_dict()))
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(128):
                entry.write(block)
    code, _, err = run(capsys, "import", "pth", bomb, "--card", card, "-o", tmp_path / "m.safetensors")
    assert code == 2 and "zip bomb" in err and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_missing_gpu_is_not_blamed_on_the_file(tmp_path):
    with pytest.raises(MedSegError, match="device 'cuda' is not available here"):
        load_model(write_threshold_model(tmp_path / "ok.safetensors"), device="cuda")


def test_a_label_merge_file_is_a_label_map():
    from MedSegEfficientLib.cli.evaluate import _parse_label_map

    merged = _parse_label_map(str(Path(__file__).resolve().parents[1] / "training" / "demo_labels.json"))
    assert merged["liver"] == (5,) and len(merged["vertebrae"]) > 5  # the README's worked example uses this file
