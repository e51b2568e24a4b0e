"""Partly labelled scans in `medseg train`: the marginal loss ignores the classes a scan does not label, equals
MONAI's Dice + cross-entropy where every class is labelled, and a student learns a structure that only one of its
training scans labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.partial_labels import marginal_dice_ce
from MedSegEfficientLib.training.prepared import load_prepared
from phantoms import make_phantom

STUDENT = ["--network", "monai_unet:tiny", "--patch-size", "32", "32", "32", "--spacing", "2.0", "2.0", "2.5",
           "--batch-size", "2", "--lr", "1e-2", "--device", "cpu", "--quiet", "--no-strong-augmentation"]
LABELS = {"background": 0, "big": 1, "small": 2}


def test_with_every_class_labelled_the_loss_is_monai_dice_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 7, 8) * 3
    labels = torch.randint(0, 3, (2, 1, 6, 7, 8))
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)
    measured = marginal_dice_ce(logits, labels, torch.ones(2, 3, dtype=torch.bool))
    assert torch.allclose(measured, expected, atol=1e-5), (measured, expected)


def test_a_class_the_scan_does_not_label_costs_nothing_where_the_scan_is_silent():
    labels = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    labels[..., :4] = 1  # "big" labelled; the scan says nothing of "small"
    confident = 20.0

    def logits_calling_the_rest(channel: int) -> torch.Tensor:
        scores = torch.zeros(1, 3, 8, 8, 8)
        scores[:, 1][labels[:, 0] == 1] = confident
        scores[:, channel][labels[:, 0] == 0] = confident
        return scores

    only_big = torch.tensor([[True, True, False]])
    as_background = marginal_dice_ce(logits_calling_the_rest(0), labels, only_big)
    as_small = marginal_dice_ce(logits_calling_the_rest(2), labels, only_big)
    assert torch.allclose(as_small, as_background, atol=1e-4)
    # The usual loss punishes calling those voxels "small"; with every class labelled this loss does too.
    every = torch.ones(1, 3, dtype=torch.bool)
    assert marginal_dice_ce(logits_calling_the_rest(2), labels, every) > as_background + 1.0
    gradient_logits = logits_calling_the_rest(0).requires_grad_()
    marginal_dice_ce(gradient_logits, labels, only_big).backward()
    assert torch.isfinite(gradient_logits.grad).all()


def test_a_value_for_a_class_the_scan_says_it_does_not_label_is_refused():
    labels = torch.full((1, 1, 4, 4, 4), 2, dtype=torch.long)
    with pytest.raises(MedSegError, match="does not label"):
        marginal_dice_ce(torch.zeros(1, 3, 4, 4, 4), labels, torch.tensor([[True, True, False]]))


def _dataset(folder, partial_validation: bool = False, validation: bool = True):
    """Phantom 1 labels both organs; phantoms 2 and 4 label only "big" (their "small" is erased, as a scan that
    never annotated it); phantom 3 validates."""
    entries = []
    for seed in (1, 2, 4, 3):
        image, labels = make_phantom(seed=seed)
        partial = seed in (2, 4) or (seed == 3 and partial_validation)
        array = np.where(labels.array == 2, 0, labels.array) if partial else labels.array
        write_label_image(image.array, image, folder / f"phantom{seed}_0000.nii.gz")
        write_label_image(array, labels, folder / f"phantom{seed}.nii.gz")
        entry = {"image": f"phantom{seed}_0000.nii.gz", "label": f"phantom{seed}.nii.gz"}
        if partial:
            entry["labelled"] = ["big"]
        entries.append(entry)
    (folder / "dataset.json").write_text(json.dumps({
        "labels": LABELS, "channel_names": {"0": "CT"}, "training": entries[:3] if validation else entries,
        "validation": entries[3:] if validation else []}))


def test_a_student_learns_a_structure_that_only_one_training_scan_labels(tmp_path, capsys):
    _dataset(tmp_path)
    student = tmp_path / "student.safetensors"
    code = main(["train", str(tmp_path), "-o", str(student), "--epochs", "5", "--iterations-per-epoch", "20",
                 *STUDENT])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "partly labelled cases (marginal loss)" in out
    card = read_card(student)
    assert card.training["partly_labelled"] == {"phantom2_0000": ["big"], "phantom4_0000": ["big"]}
    assert card.metrics["validation_cases"] == ["phantom3_0000"]

    unseen, truth = make_phantom(seed=42)
    learned = Segmenter(load_model(student), SegmentOptions(device="cpu")).segment(unseen).labels
    scores = dice_per_label([learned], [truth.array], [1, 2])
    assert scores[1] > 0.8 and scores[2] > 0.7, scores


def test_a_prepared_run_keeps_which_classes_each_case_labels(tmp_path):
    _dataset(tmp_path)
    prepared = tmp_path / "run.npz"
    assert main(["train", str(tmp_path), "-o", str(prepared), "--prepare-only", *STUDENT]) == 0
    run = load_prepared(prepared)
    masks = dict(zip(run.item_names, (item["labelled"].tolist() for item in run.items)))
    assert masks == {"phantom1_0000": [True, True, True], "phantom2_0000": [True, True, False],
                     "phantom4_0000": [True, True, False]}
    assert run.provenance["partly_labelled"] == {"phantom2_0000": ["big"], "phantom4_0000": ["big"]}


def test_a_partly_labelled_validation_scan_is_refused_with_one_line(tmp_path, capsys):
    _dataset(tmp_path, partial_validation=True)
    output = tmp_path / "m.safetensors"
    code = main(["train", str(tmp_path), "-o", str(output), *STUDENT])
    err = capsys.readouterr().err
    assert code != 0 and "validation scan must label them all" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_without_validation_scans_a_fully_labelled_one_is_held_out(tmp_path):
    _dataset(tmp_path, validation=False)
    student = tmp_path / "student.safetensors"
    assert main(["train", str(tmp_path), "-o", str(student), "--epochs", "1", "--iterations-per-epoch", "2",
                 *STUDENT]) == 0
    card = read_card(student)
    assert card.metrics["validation_cases"] == ["phantom3_0000"]  # the last fully labelled one, not phantom4
    assert card.training["partly_labelled"] == {"phantom2_0000": ["big"], "phantom4_0000": ["big"]}
