"""A model card is user input: every field's type and range is checked when the file is opened, and the message
names the field. Weights are checked too: floating point where the network is, and finite."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.weights import build_from_card, load_model
from models_for_tests import threshold_card, write_threshold_model
from phantoms import make_phantom


def with_field(path: list, value) -> dict:
    card = threshold_card().to_dict()
    node = card
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return card


@pytest.mark.parametrize("path, value, expected", [
    (["metrics"], [1, 2], "field 'metrics' must be an object"),
    (["labels", 0, "name"], "liver\x1b[2J", "field 'labels[0].name' holds control or text-direction characters"),
    (["labels", 0, "name"], "\u202erevil", "field 'labels[0].name' holds control or text-direction characters"),
    (["name"], "model\x07", "field 'name' holds control or text-direction characters"),
    (["orientation"], "XYZ", "field 'orientation' must be one of"),
    (["orientation"], 7, "field 'orientation' must be one of"),
    (["training"], "yesterday", "field 'training' must be an object"),
    (["normalization", "lower"], "-1000", "field 'normalization.lower' must be a finite number"),
    (["normalization", "std"], float("nan"), "field 'normalization.std' must be a finite number"),
    (["size_divisor"], "16", "field 'size_divisor' must be an integer"),
    (["size_divisor"], 0, "field 'size_divisor' must be an integer in 1..1024"),
    (["spacing"], [0.0001, 1.0, 1.0], "outside 0.001..100 mm"),
    (["spacing"], [1e6, 1.0, 1.0], "outside 0.001..100 mm"),
    (["patch_size"], [100000, 16, 16], "outside 1..2048 voxels"),
    (["labels", 0, "color"], [0.5, 0.5, 0.5], "multiply by 255"),
    (["labels", 0, "color"], [300, 0, 0], "three integers in 0..255"),
    (["labels", 0, "category"], ["SCT", "123037004"], "labels[0].category' must be a code"),
    (["labels", 0, "name"], "", "labels[0].name' must be a non-empty string"),
    (["name"], 42, "field 'name' must be a string"),
    (["metrics"], {"validation_dice": {"liver": "good"}}, "metrics.validation_dice"),
])
def test_a_bad_field_is_named(path, value, expected):
    with pytest.raises(ModelFileError, match="invalid model card") as raised:
        ModelCard.from_dict(with_field(path, value))
    assert expected in str(raised.value)


def test_a_valid_card_survives_a_json_round_trip():
    card = threshold_card().to_dict()
    assert ModelCard.from_dict(json.loads(json.dumps(card))).to_dict() == card


@pytest.mark.parametrize("damage, expected", [("nan", "holds NaN or infinite values"), ("int32", "is int32")])
def test_weights_that_would_give_an_empty_result_are_refused(tmp_path, capsys, damage, expected):
    card = threshold_card()
    tensors = {name: tensor.clone() for name, tensor in build_from_card(card).state_dict().items()}
    tensors["centres"] = torch.full_like(tensors["centres"], float("nan")) if damage == "nan" else \
        tensors["centres"].to(torch.int32)
    path = tmp_path / f"{damage}.safetensors"
    save_file(tensors, str(path), metadata={"medseg_card": json.dumps(card.to_dict())})
    with pytest.raises(ModelFileError, match=expected):
        load_model(path)
    image, _ = make_phantom(shape=(16, 20, 24))
    from MedSegEfficientLib.io.images import write_label_image

    source = write_label_image(image.array, image, tmp_path / "ct.nii.gz")
    code = main(["segment", str(source), "-o", str(tmp_path / "out.nii.gz"), "--model", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1


def test_a_good_model_still_loads(tmp_path):
    assert load_model(write_threshold_model(tmp_path / "ok.safetensors")).card.name == "intensity bands"
