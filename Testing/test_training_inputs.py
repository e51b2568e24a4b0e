"""`medseg train` refuses, in one line and before it writes anything, what would give a silently wrong model: an
image without its label map, label values the dataset does not name, settings that cannot train (infinite or NaN
spacing, a patch that cannot be allocated, a negative seed), and weights that diverged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.training.config import TrainConfig
from MedSegEfficientLib.training.datasets import describe_folder
from MedSegEfficientLib.training.trainer import train
from phantoms import make_phantom


def dataset(folder: Path, seeds=(1, 2), labels=None) -> Path:
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for seed in seeds:
        image, label_map = make_phantom(shape=(24, 32, 32), seed=seed)
        write_label_image(image.array, image, folder / "imagesTr" / f"case{seed}_0000.nii.gz")
        write_label_image(label_map.array, label_map, folder / "labelsTr" / f"case{seed}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"labels": labels or {"background": 0, "big": 1, "small": 2},
                                                     "channel_names": {"0": "CT"}}))
    return folder


def test_an_image_without_its_label_map_is_named_not_dropped(tmp_path):
    folder = dataset(tmp_path / "data")
    image, _ = make_phantom(shape=(24, 32, 32), seed=7)
    write_label_image(image.array, image, folder / "imagesTr" / "orphan_0000.nii.gz")
    with pytest.raises(MedSegError, match=r"1 image\(s\) in .* have no label map .*orphan_0000.nii.gz"):
        describe_folder(folder)


def test_label_values_the_dataset_does_not_name_are_refused_before_training(tmp_path, capsys):
    folder = dataset(tmp_path / "data", labels={"background": 0, "big": 1})  # the maps also hold 2 ("small")
    output = tmp_path / "model.safetensors"
    code = main(["train", str(folder), "-o", str(output), "--epochs", "1", "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 2 and "value(s) 2 that the dataset's labels (1 big) do not name" in error
    assert not output.exists()


@pytest.mark.parametrize("settings, message", [
    ({"spacing": [float("inf")] * 3}, "--spacing"), ({"spacing": [float("nan"), 1.0, 1.0]}, "--spacing"),
    ({"patch_size": [100000] * 3}, "too large"), ({"seed": -1}, "--seed"),
    ({"learning_rate": float("inf")}, "--lr"), ({"max_minutes": float("nan")}, "--max-minutes"),
])
def test_settings_that_cannot_train_are_one_line(settings, message):
    with pytest.raises(MedSegError, match=message):
        TrainConfig(**settings).check()


def test_weights_that_diverge_are_never_saved(tmp_path):
    folder = dataset(tmp_path / "data")
    output = tmp_path / "model.safetensors"
    config = TrainConfig(network="monai_unet", preset="tiny", patch_size=[16, 16, 16], spacing=[3.0, 3.0, 3.0],
                         epochs=2, iterations_per_epoch=3, batch_size=1, learning_rate=10.0, device="cpu")
    # lr 10 is allowed, and still diverges: the loss may stay finite while the weights do not
    try:
        train(describe_folder(folder), output, config, log=lambda _: None, show_progress=False)
    except MedSegError as error:
        assert "diverged" in str(error)
        assert not output.exists() or "stays in" in str(error)
    if output.exists():
        from MedSegEfficientLib.model.weights import load_model

        model = load_model(output)
        assert all(bool(np.isfinite(p.detach().numpy()).all()) for p in model.network.parameters())
