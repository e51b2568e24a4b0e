"""Learning from corrections without Slicer: the user's case folder (training/user_cases.py) and fine-tuning kept
only if it is not worse on held-out cases (training/finetune.py), from Python and from the command line. The model
is the test network whose output follows its intensity bands, so that a fine-tune can make it better or worse on
purpose; the cases are phantoms with known labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import Cancelled, MedSegError
from MedSegEfficientLib.files import sha256_of
from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.model.card import LabelInfo, NetworkInfo
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.weights import build_from_card, save_model
from MedSegEfficientLib.training.datasets import describe_folder
from MedSegEfficientLib.training.finetune import FinetuneSettings, finetune, split_cases
from MedSegEfficientLib.training.user_cases import (StoredCase, add_case, cases_folder, labels_from_segment_names,
                                                    stored_cases)
from models_for_tests import BANDS, threshold_card
from phantoms import make_phantom

MISPLACED_BANDS = [[-1.0, 0.8], [1.3, 0.5], [2.6, 0.5]]  # both organs' bands too bright: a rough model
QUICK = dict(epochs=3, iterations_per_epoch=10, learning_rate=5e-2, device="cpu")


def bands_model(path, bands):
    card = threshold_card(network=NetworkInfo("test_intensity_bands", None, {"bands": bands}))
    return save_model(path, card, build_from_card(card)), card


def add_phantoms(card, folder, seeds, swap=()):
    """One case per seed; ``swap``: those seeds' corrections swap the two organs (a careless correction)."""
    for seed in seeds:
        image, labels = make_phantom(seed=seed)
        array = labels.array.copy()
        if seed in swap:
            array = np.choose(array, [0, 2, 1]).astype(array.dtype)
        add_case(image, array, card, folder, name=f"case{seed}")


def test_one_case_in_five_is_held_out_and_at_least_one():
    def cases(count):
        return [StoredCase(f"c{i:02d}", None, None, "", "") for i in range(count)]

    for count, held in ((2, 1), (4, 1), (5, 1), (9, 1), (10, 2), (16, 3)):
        train, out = split_cases(cases(count))
        assert len(out) == held and len(train) + len(out) == count and not {c.name for c in train} & {c.name for c in out}
    with pytest.raises(MedSegError, match="at least 2"):
        split_cases(cases(1))


def test_a_case_is_kept_as_files_that_training_reads(tmp_path):
    _, card = bands_model(tmp_path / "m.safetensors", BANDS)
    folder = tmp_path / "cases"
    image, labels = make_phantom(seed=3)
    stored = add_case(image, labels.array, card, folder, name="liver scan/../x")
    assert stored.name == "liver_scan_x_001" and stored.image.parent == folder / "imagesTr"
    assert np.array_equal(read_image(stored.labels).array, labels.array)
    assert np.array_equal(read_image(stored.image).array, image.array)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "big": 1, "small": 2} and meta["numTraining"] == 1
    assert meta["cases"][0]["labels_sha256"] == sha256_of(stored.labels)
    assert meta["medseg_labels"][0]["type"] == ["SCT", "10200004", "Liver"]  # the card's codes travel along
    description = describe_folder(folder)  # medseg train reads it as it is
    assert [p.label for p in description.training] == [stored.labels]
    again = add_case(image, labels.array, card, folder, name="liver scan/../x")  # never overwritten
    assert again.name == "liver_scan_x_002" and len(stored_cases(folder, card)) == 2


def test_labels_the_model_does_not_number_or_name_are_refused(tmp_path):
    _, card = bands_model(tmp_path / "m.safetensors", BANDS)
    image, labels = make_phantom(seed=3)
    wrong = labels.array.copy()
    wrong[0, 0, :3] = 7
    with pytest.raises(MedSegError, match=r"label value\(s\) 7 are not labels of model"):
        add_case(image, wrong, card, tmp_path / "cases")
    assert not (tmp_path / "cases" / "dataset.json").exists()
    masks = [("big", labels.array == 1), ("tumour", labels.array == 2), ("small", labels.array == 2)]
    with pytest.raises(MedSegError, match=r"segment\(s\) 'tumour' are not labels of model"):
        labels_from_segment_names(masks, card, image.grid_shape)
    merged = labels_from_segment_names([m for m in masks if m[0] != "tumour"], card, image.grid_shape)
    assert np.array_equal(merged, labels.array)
    other = threshold_card(labels=[LabelInfo(1, "liver"), LabelInfo(2, "spleen")])
    add_case(image, labels.array, card, tmp_path / "cases")
    with pytest.raises(MedSegError, match="another model's cases"):
        stored_cases(tmp_path / "cases", other)


def test_a_fine_tune_that_helps_is_kept_with_its_record_and_the_old_model_untouched(tmp_path, user_models):
    model, card = bands_model(tmp_path / "rough.safetensors", MISPLACED_BANDS)
    old_hash = sha256_of(model)
    add_phantoms(card, tmp_path / "cases", range(5))
    seen = []
    outcome = finetune(model, None, tmp_path / "cases", FinetuneSettings(**QUICK, command="medseg finetune rough"),
                       progress=lambda fraction, stage: seen.append((fraction, stage)), log=lambda line: None)
    assert outcome.kept and outcome.mean_after > outcome.mean_before
    assert outcome.output == user_models / "rough_finetuned.safetensors" and sha256_of(model) == old_hash
    assert any("left" in stage for _, stage in seen) and seen[-1][0] == 1.0 and outcome.estimate_seconds > 0
    new = read_card(outcome.output)
    record = new.training
    assert new.name.endswith("(fine-tuned)") and record["command"] == "medseg finetune rough"
    assert record["finetuned_from"]["sha256"] == old_hash and record["user_cases"] == "rough"
    roles = {case["name"]: case["role"] for case in record["cases"]}
    assert roles == {"case0_001": "training", "case1_001": "training", "case2_001": "training",
                     "case3_001": "training", "case4_001": "held out"}
    assert all(len(case["labels_sha256"]) == 64 for case in record["cases"])
    assert record["mean_dice_before"] == outcome.mean_before and record["mean_dice_after"] == outcome.mean_after
    assert new.metrics["validation_cases"] == ["case4_001"]
    # A fine-tuned model adds its corrections to the folder of the model it came from.
    assert cases_folder(outcome.output, new).name == "rough"


def test_a_fine_tune_that_makes_things_worse_is_discarded(tmp_path, user_models, capsys):
    model, card = bands_model(tmp_path / "good.safetensors", BANDS)
    add_phantoms(card, tmp_path / "cases", range(5), swap={0, 1, 2, 3})  # the held-out case4 is corrected right
    output = tmp_path / "new.safetensors"
    code = main(["finetune", str(model), "--cases", str(tmp_path / "cases"), "-o", str(output), "--device", "cpu",
                 "--epochs", "3", "--lr", "0.05", "--quiet"])
    assert code == 3 and not output.exists()
    assert "discarded the fine-tuned model" in capsys.readouterr().out


def test_cancel_mid_epoch_leaves_the_old_model_and_writes_nothing(tmp_path, user_models):
    model, card = bands_model(tmp_path / "rough.safetensors", MISPLACED_BANDS)
    old_hash = sha256_of(model)
    add_phantoms(card, tmp_path / "cases", range(3))
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 4  # within the first epoch of 10 steps

    with pytest.raises(Cancelled, match="old model stays"):
        finetune(model, tmp_path / "new.safetensors", tmp_path / "cases", FinetuneSettings(**QUICK), cancel=cancel,
                 log=lambda line: None)
    assert len(asked) == 5 and not (tmp_path / "new.safetensors").exists() and sha256_of(model) == old_hash
    assert not list(tmp_path.glob("*.part*")) and not user_models.exists()


def test_the_command_line_adds_cases_and_fine_tunes(tmp_path, user_models, monkeypatch, capsys):
    monkeypatch.setenv("MEDSEG_CASES_DIR", str(tmp_path / "all-cases"))
    model, _ = bands_model(user_models / "rough.safetensors", MISPLACED_BANDS)
    for seed in range(3):
        image, labels = make_phantom(seed=seed)
        write_label_image(image.array, image, tmp_path / f"scan{seed}.nii.gz")
        write_label_image(labels.array, labels, tmp_path / f"scan{seed}_fixed.nii.gz")
        assert main(["cases", "add", str(tmp_path / f"scan{seed}.nii.gz"), str(tmp_path / f"scan{seed}_fixed.nii.gz"),
                     "--model", "rough"]) == 0
    assert "3 case(s)" in capsys.readouterr().out
    assert main(["cases", "list", "--model", "rough", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["folder"] == str(tmp_path / "all-cases" / "rough") and len(listed["cases"]) == 3
    # a label map on another grid is refused in one line
    image, labels = make_phantom(shape=(20, 48, 48))
    write_label_image(labels.array, labels, tmp_path / "other_grid.nii.gz")
    assert main(["cases", "add", str(tmp_path / "scan0.nii.gz"), str(tmp_path / "other_grid.nii.gz"),
                 "--model", "rough"]) == 2
    assert "is not on scan0.nii.gz's grid" in capsys.readouterr().err
    assert main(["finetune", "rough", "--device", "cpu", "--minutes", "0.3", "--lr", "0.05", "--quiet"]) == 0
    assert (user_models / "rough_finetuned.safetensors").is_file()
    assert "kept the fine-tuned model" in capsys.readouterr().out


def test_outputs_that_would_replace_a_model_are_refused(tmp_path, user_models):
    from MedSegEfficientLib.model.library import default_model_path

    model, card = bands_model(tmp_path / "rough.safetensors", MISPLACED_BANDS)
    add_phantoms(card, tmp_path / "cases", range(2))
    with pytest.raises(MedSegError, match="is the model being fine-tuned"):
        finetune(model, model, tmp_path / "cases", FinetuneSettings(**QUICK))
    with pytest.raises(MedSegError, match="shipped models' folder"):
        finetune(model, default_model_path().parent / "x.safetensors", tmp_path / "cases", FinetuneSettings(**QUICK))


def test_the_data_the_card_was_trained_on_joins_the_cases_where_it_is_at_hand(tmp_path, user_models, monkeypatch):
    """A card whose training command names a dataset folder that exists here: its cases train beside the user's."""
    import dataclasses

    _, card = bands_model(tmp_path / "unused.safetensors", MISPLACED_BANDS)
    add_phantoms(card, tmp_path / "original", [7, 8])  # the folder the model was "trained" on
    monkeypatch.chdir(tmp_path)
    card = dataclasses.replace(card, training={"command": "medseg train original -o rough.safetensors"})
    model = save_model(tmp_path / "rough.safetensors", card, build_from_card(card))
    add_phantoms(card, tmp_path / "cases", range(2))
    outcome = finetune(model, None, tmp_path / "cases", FinetuneSettings(**QUICK), log=lambda line: None)
    assert "trained also on 2 case(s) of original" in outcome.notes
    other = dataclasses.replace(card, training={"command": "medseg train missing -o rough.safetensors"})
    model = save_model(tmp_path / "rough2.safetensors", other, build_from_card(other))
    outcome = finetune(model, None, tmp_path / "cases", FinetuneSettings(**QUICK), log=lambda line: None)
    assert not any("trained also" in note for note in outcome.notes)
