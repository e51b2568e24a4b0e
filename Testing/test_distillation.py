"""Distillation is real: a tiny student learns a teacher's probabilities on unlabelled phantoms and agrees with it
on a phantom neither saw; the card says where the student came from; bad sources are refused with one line."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.soft_targets import map_targets, resample_probabilities
from MedSegEfficientLib.volume import Volume, to_sitk
from models_for_tests import write_threshold_model
from phantoms import make_phantom

STUDENT = ["--network", "monai_unet:tiny", "--patch-size", "32", "32", "32", "--spacing", "2.0", "2.0", "2.5",
           "--batch-size", "2", "--lr", "1e-2", "--device", "cpu", "--quiet", "--no-strong-augmentation"]


def _phantom_files(folder, seeds, with_labels=False):
    images, labels = [], []
    for seed in seeds:
        image, label = make_phantom(seed=seed)
        images.append(folder / f"phantom{seed}.nii.gz")
        write_label_image(image.array, image, images[-1])
        if with_labels:
            labels.append(folder / f"phantom{seed}_labels.nii.gz")
            write_label_image(label.array, label, labels[-1])
    return images, labels


def _write_map(array: np.ndarray, like: Volume, path) -> str:
    import SimpleITK as sitk

    sitk.WriteImage(to_sitk(like.with_array(array.astype(np.float32))), str(path))
    return str(path)


def test_probabilities_sum_to_one_and_argmax_is_the_segmentation():
    from models_for_tests import threshold_card
    from MedSegEfficientLib.model.weights import LoadedModel, build_from_card

    image, _ = make_phantom(seed=5)
    for dims, spacing in ((3, [1.5, 1.5, 2.5]), (2, None)):
        card = threshold_card(dims, spacing=spacing)
        segmenter = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu"))
        probabilities, geometry = segmenter.probabilities(image)
        assert probabilities.shape == (3, *image.grid_shape) and geometry.same_grid(image)
        assert torch.allclose(probabilities.sum(0), torch.ones(()), atol=1e-4)
        labels = segmenter.segment(image).labels
        assert np.array_equal(probabilities.argmax(0).numpy(), labels), dims


def test_probabilities_that_would_not_fit_in_memory_are_refused(monkeypatch):
    from models_for_tests import threshold_card
    from MedSegEfficientLib.inference import engine
    from MedSegEfficientLib.model.weights import LoadedModel, build_from_card

    card = threshold_card(3, spacing=[1.5, 1.5, 2.5])
    segmenter = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu"))
    monkeypatch.setattr(engine, "free_memory", lambda device: (None, 10_000))
    with pytest.raises(Exception, match="class probabilities of this image need"):
        segmenter.probabilities(make_phantom(seed=5)[0])


def test_probabilities_move_to_another_grid_channel_by_channel():
    image, _ = make_phantom(seed=6)
    values = np.stack([np.full(image.grid_shape, 0.25, np.float32), np.full(image.grid_shape, 0.75, np.float32)])
    coarse = Volume(np.zeros((10, 12, 12)), (3.0, 3.0, 5.0), image.origin, image.direction)
    moved = resample_probabilities(values, image, coarse)
    assert moved.shape == (2, 10, 12, 12)
    inside = moved[:, :5, :5, :5]  # well within the source grid
    assert np.allclose(inside[0], 0.25) and np.allclose(inside[1], 0.75)
    assert np.array_equal(resample_probabilities(values, image, image), values)


def test_student_learns_the_teacher_on_unlabelled_images(tmp_path, capsys):
    teacher = write_threshold_model(tmp_path / "teacher.safetensors", spacing=[1.5, 1.5, 2.5])
    images, _ = _phantom_files(tmp_path, [1, 2])
    (tmp_path / "val").mkdir()
    validation, validation_labels = _phantom_files(tmp_path / "val", [3], with_labels=True)
    student = tmp_path / "student.safetensors"
    code = main(["distill", str(teacher), "-o", str(student), "--images", *map(str, images),
                 "--validation", f"{validation[0]}:{validation_labels[0]}", "--epochs", "5",
                 "--iterations-per-epoch", "20", "--licence", "MIT (test)", *STUDENT])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "validation mean Dice" in out

    card = read_card(student)
    record = card.training["distillation"]
    assert record["teachers"][0]["sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert record["images"] == [path.name for path in images]
    assert card.training["licence"] == "MIT (test)"
    assert card.metrics["validation_cases"] == ["phantom3"]
    assert [label.name for label in card.labels] == ["big", "small"]

    unseen, _ = make_phantom(seed=42)
    taught = Segmenter(load_model(teacher), SegmentOptions(device="cpu")).segment(unseen).labels
    learned = Segmenter(load_model(student), SegmentOptions(device="cpu")).segment(unseen).labels
    scores = dice_per_label([learned], [taught], [1, 2])
    assert scores[1] > 0.85 and scores[2] > 0.85, scores


def test_outside_teacher_maps_train_a_two_class_student(tmp_path, capsys):
    soft = []
    for seed in (1, 2):
        image, label = make_phantom(seed=seed)
        path = tmp_path / f"head{seed}.nii.gz"
        write_label_image(image.array, image, path)
        # An outside teacher's map: a little unsure at the organ's edge, one foreground channel.
        probability = np.where(label.array == 1, 0.9, 0.05)
        soft.append(f"{path}:{_write_map(probability, image, tmp_path / f'head{seed}_p.nii.gz')}")
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(json.dumps({"labels": {"background": 0, "big": 1}}))
    student = tmp_path / "student.safetensors"
    code = main(["distill", "-o", str(student), "--soft-targets", *soft, "--labels", str(labels_file),
                 "--modality", "CT", "--teacher-description", "a test map", "--epochs", "4",
                 "--iterations-per-epoch", "20", *STUDENT])
    _, err = capsys.readouterr()
    assert code == 0, err
    card = read_card(student)
    assert card.training["distillation"]["outside_teacher"] == "a test map"
    unseen_image, unseen_labels = make_phantom(seed=43)
    learned = Segmenter(load_model(student), SegmentOptions(device="cpu")).segment(unseen_image).labels
    assert dice_per_label([learned], [(unseen_labels.array == 1).astype(np.uint8)], [1])[1] > 0.85


def test_a_map_that_is_not_probabilities_is_refused():
    image, label = make_phantom(seed=1)
    with pytest.raises(Exception, match="outside 0..1"):
        map_targets(image.with_array(label.array.astype(np.float32) * 3), "bad.nii.gz", 2, image)
    with pytest.raises(Exception, match="channel"):
        map_targets(image.with_array(np.zeros((*image.grid_shape, 4), np.float32)), "four.nii.gz", 2, image)


@pytest.mark.parametrize("case", ["no_teacher", "validation_trained", "output_is_teacher", "labels_missing",
                                  "images_without_teacher", "teachers_disagree", "weight"])
def test_bad_sources_get_one_line_and_touch_nothing(tmp_path, capsys, case):
    teacher = write_threshold_model(tmp_path / "teacher.safetensors")
    other = write_threshold_model(tmp_path / "other.safetensors", labels=[read_card(teacher).labels[0]])
    images, labels = _phantom_files(tmp_path, [1], with_labels=True)
    image, label = str(images[0]), str(labels[0])
    output = tmp_path / "student.safetensors"
    argv = {
        "no_teacher": ["-o", str(output), "--images", image],
        "validation_trained": [str(teacher), "-o", str(output), "--images", image, "--validation", f"{image}:{label}"],
        "output_is_teacher": [str(teacher), "-o", str(teacher), "--images", image],
        "labels_missing": ["-o", str(output), "--soft-targets", f"{image}:{label}"],
        "images_without_teacher": ["-o", str(output), "--images", image, "--soft-targets", f"{image}:{label}"],
        "teachers_disagree": [str(teacher), str(other), "-o", str(output), "--images", image],
        "weight": [str(teacher), "-o", str(output), "--images", image, "--label-weight", "2"],
    }[case]
    before = teacher.read_bytes()
    code = main(["distill", *argv, *STUDENT])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert not output.exists() and teacher.read_bytes() == before


def test_partial_labels_take_the_teacher_for_the_structures_they_do_not_label():
    from MedSegEfficientLib.training.distillation import mix_labels

    truth = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # channels: aorta (labelled), liver, spleen; 2 voxels
    teacher = np.array([[0.2, 0.1], [0.7, 0.8], [0.1, 0.05]])
    labelled = np.array([True, False, False])
    target = mix_labels(truth, teacher, 0.5, labelled)
    assert np.allclose(target[0], [0.6, 0.05])  # the labels mixed in where they exist
    assert np.allclose(target[1:, 1], teacher[1:, 1])  # room left: the teacher's as it was
    assert np.isclose(target[:, 0].sum(), 1.0) and np.allclose(target[1:, 0] / target[1:, 0].sum(), [0.875, 0.125])
    full = mix_labels(truth, teacher, 0.5, np.ones(3, bool))
    assert np.allclose(full, 0.5 * truth + 0.5 * teacher)
