"""Simulated contrast phases for CT training (training/contrast_enhancement.py), and CT normalisation that a partly
labelled scan cannot skew."""

from __future__ import annotations

import json

import numpy as np

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.model.card import LabelInfo, Normalization
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.training.contrast_enhancement import (ENHANCEMENT_HU, RandContrastEnhancementd,
                                                             enhancement_ranges, normalised_ceiling)
from MedSegEfficientLib.training.datasets import TrainingCase, normalization_from_data
from MedSegEfficientLib.volume import Volume
from phantoms import make_phantom

CT = Normalization(kind="ct", lower=-100.0, upper=400.0, mean=50.0, std=100.0)
LABELS = [LabelInfo(1, "liver"), LabelInfo(2, "left kidney"), LabelInfo(3, "vertebrae")]


def _slab(values: dict[int, tuple[slice, ...]], shape=(24, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """A flat normalised image (0 = 50 HU) and label blocks at the given places."""
    image = np.zeros((1, *shape), np.float32)
    label = np.zeros((1, *shape), np.uint8)
    for value, place in values.items():
        label[(0, *place)] = value
    return image, label


def test_ranges_follow_the_label_names_in_normalised_units():
    ranges = enhancement_ranges(LABELS, CT)
    low, high = ENHANCEMENT_HU["kidney"]
    assert ranges[2] == (low / CT.std, high / CT.std)  # "left kidney" takes the kidney's range
    assert 1 in ranges and 3 not in ranges  # bone does not enhance
    assert enhancement_ranges(LABELS, Normalization(kind="zscore")) == {}


def test_each_enhancing_structure_brightens_within_its_range_and_the_rest_stays():
    inner = (slice(2, 10),) * 3
    image, label = _slab({1: inner, 3: (slice(14, 22),) * 3})
    transform = RandContrastEnhancementd(enhancement_ranges(LABELS, CT), prob=1.0, ceiling=normalised_ceiling(CT))
    for seed in range(6):
        transform.set_random_state(seed)
        out = transform({"image": image, "label": label})["image"]
        added_hu = out[0, 4:8, 4:8, 4:8] * CT.std  # the liver's core, away from the smoothed edge
        low, high = ENHANCEMENT_HU["liver"]
        assert low - 1e-3 <= added_hu.min() and added_hu.max() <= high + 1e-3
        assert np.allclose(added_hu, added_hu.mean(), atol=1e-4)  # one offset per structure
        assert np.all(out[0, 15:21, 15:21, 15:21] == 0)  # vertebrae unchanged
        assert np.all(out[0, 12:, :, :12] == 0)  # background unchanged
    transform = RandContrastEnhancementd(enhancement_ranges(LABELS, CT), prob=0.0, ceiling=10.0)
    assert transform({"image": image, "label": label})["image"] is image


def test_nothing_is_pushed_past_what_the_engine_can_see():
    image, label = _slab({2: (slice(0, 24),) * 3})  # all kidney
    image[0, :12] = 3.4  # near the ceiling of 3.5 (400 HU)
    image[0, 12:] = 5.0  # already above it (a value the engine would have clipped): left alone
    transform = RandContrastEnhancementd(enhancement_ranges(LABELS, CT), prob=1.0, ceiling=normalised_ceiling(CT))
    transform.set_random_state(0)
    out = transform({"image": image, "label": label})["image"]
    assert np.allclose(out[0, :12], 3.5) and np.all(out[0, 12:] == 5.0)


def test_ct_statistics_come_from_the_fully_labelled_scans():
    image, labels = make_phantom(seed=1)
    full = TrainingCase("full", image, labels)
    geometry = dict(spacing=image.spacing, origin=image.origin, direction=image.direction)
    bright = Volume(np.where(labels.array == 1, 600, image.array).astype(np.int16), **geometry)
    partial = TrainingCase("aorta_only", bright, Volume((labels.array == 1).astype(np.uint8), **geometry),
                           labelled=["big"])
    assert normalization_from_data([full, partial], "CT") == normalization_from_data([full], "CT")
    assert normalization_from_data([partial], "CT").mean > normalization_from_data([full], "CT").mean + 100


def _dataset(folder, labels: dict[str, int]) -> None:
    entries = []
    for seed in (1, 2):
        image, label_map = make_phantom(seed=seed)
        write_label_image(image.array, image, folder / f"phantom{seed}_0000.nii.gz")
        write_label_image(label_map.array, label_map, folder / f"phantom{seed}.nii.gz")
        entries.append({"image": f"phantom{seed}_0000.nii.gz", "label": f"phantom{seed}.nii.gz"})
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "channel_names": {"0": "CT"},
                                                     "training": entries[:1], "validation": entries[1:]}))


ARGS = ["--network", "monai_unet:tiny", "--patch-size", "32", "32", "32", "--spacing", "2.0", "2.0", "2.5",
        "--batch-size", "2", "--epochs", "1", "--iterations-per-epoch", "2", "--device", "cpu", "--quiet"]


def test_train_with_contrast_enhancement_records_it(tmp_path):
    _dataset(tmp_path, {"background": 0, "liver": 1, "spleen": 2})
    output = tmp_path / "m.safetensors"
    assert main(["train", str(tmp_path), "-o", str(output), "--contrast-enhancement", *ARGS]) == 0
    assert read_card(output).training["config"]["contrast_enhancement"] is True


def test_contrast_enhancement_without_an_enhancing_label_is_one_line(tmp_path, capsys):
    _dataset(tmp_path, {"background": 0, "big": 1, "small": 2})
    output = tmp_path / "m.safetensors"
    code = main(["train", str(tmp_path), "-o", str(output), "--contrast-enhancement", *ARGS])
    err = capsys.readouterr().err
    assert code != 0 and "enhancing structure" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()
