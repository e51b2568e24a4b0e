"""The model file: safetensors + card, clear errors for every bad file, nothing ever unpickled."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.library import resolve_model_path
from MedSegEfficientLib.model.model_file import CARD_METADATA_KEY, read_card
from MedSegEfficientLib.model.pth_import import import_state_dict
from MedSegEfficientLib.model.weights import load_model, round_to_half, save_model
from MedSegEfficientLib.errors import ModelFileError
from models_for_tests import threshold_card, write_threshold_model


def test_round_trip_keeps_card_and_weights(tmp_path):
    path = write_threshold_model(tmp_path / "m.safetensors")
    model = load_model(path)
    assert model.card.to_dict() == threshold_card().to_dict()
    assert torch.allclose(model.network.centres, torch.tensor([-1.0, 0.6, 1.8]))


def test_every_missing_card_field_is_named():
    with pytest.raises(ModelFileError) as raised:
        ModelCard.from_dict({"name": "x", "network": {"name": "monai_unet"}})
    message = str(raised.value)
    for field in ("spatial_dims", "in_channels", "labels"):
        assert f"'{field}'" in message


def test_invalid_card_values_are_named():
    card = threshold_card().to_dict()
    card["spatial_dims"] = 4
    card["labels"][0]["color"] = [300, 0, 0]
    card["normalization"]["kind"] = "magic"
    with pytest.raises(ModelFileError) as raised:
        ModelCard.from_dict(card)
    for field in ("spatial_dims", "labels[0].color", "normalization.kind"):
        assert field in str(raised.value)


def _write_with_metadata(path, metadata):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


def test_card_missing_from_file(tmp_path):
    path = _write_with_metadata(tmp_path / "nocard.safetensors", {"other": "x"})
    with pytest.raises(ModelFileError, match="no model card"):
        read_card(path)


def test_card_with_missing_field_in_file(tmp_path):
    card = threshold_card().to_dict()
    del card["labels"]
    path = _write_with_metadata(tmp_path / "bad.safetensors", {CARD_METADATA_KEY: json.dumps(card)})
    with pytest.raises(ModelFileError, match="missing field 'labels'"):
        load_model(path)


def test_truncated_file(tmp_path):
    path = write_threshold_model(tmp_path / "m.safetensors")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 7])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(truncated)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00\x01not a model at all" * 10)
    with pytest.raises(ModelFileError):
        load_model(path)


def test_weights_that_do_not_match_the_card(tmp_path):
    card = threshold_card()
    path = _write_with_metadata(tmp_path / "mismatch.safetensors", {CARD_METADATA_KEY: json.dumps(card.to_dict())})
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(path)


class Hostile:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_object_in_pth_is_refused(tmp_path, capsys):
    path = tmp_path / "hostile.pth"
    with open(path, "wb") as stream:
        pickle.dump({"weights": Hostile()}, stream)
    with pytest.raises(ModelFileError, match="pickled Python objects"):
        import_state_dict(path, threshold_card(), tmp_path / "out.safetensors")
    assert "pwned" not in capsys.readouterr().out
    assert not (tmp_path / "out.safetensors").exists()


def test_plain_state_dict_import(tmp_path):
    from MedSegEfficientLib.model.weights import build_from_card

    card = threshold_card()
    network = build_from_card(card)
    with torch.no_grad():
        network.centres.copy_(torch.tensor([1.0, 2.0, 3.0]))
    torch.save({"state_dict": {f"module.{k}": v for k, v in network.state_dict().items()}}, tmp_path / "w.pth")
    output = import_state_dict(tmp_path / "w.pth", card, tmp_path / "imported.safetensors")
    assert torch.equal(load_model(output).network.centres, torch.tensor([1.0, 2.0, 3.0]))


def test_models_are_found_by_name(tmp_path, user_models):
    write_threshold_model(user_models / "my_model.safetensors")
    assert resolve_model_path("my_model") == user_models / "my_model.safetensors"
    assert resolve_model_path("abdomen_ct_demo").is_file()
    with pytest.raises(ModelFileError, match="no model file or known model named 'nope'"):
        resolve_model_path("nope")


def test_save_is_atomic_and_readable_by_others(tmp_path):
    path = write_threshold_model(tmp_path / "m.safetensors")
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    save_model(path, threshold_card(name="second"), load_model(path).network)
    assert read_card(path).name == "second"


def test_half_weights_halve_the_file_and_load_as_the_rounded_network(tmp_path):
    from MedSegEfficientLib.model.weights import build_from_card

    card = ModelCard.from_dict({**threshold_card().to_dict(), "network": {"name": "medseg_unet", "preset": "small",
                                                                          "args": {}}})
    torch.manual_seed(0)
    network = build_from_card(card)
    full = save_model(tmp_path / "full.safetensors", card, network)
    half = save_model(tmp_path / "half.safetensors", card, network, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half).network
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    rounded = round_to_half(network).state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, rounded[name]), name
    weight = next(n for n, t in network.state_dict().items() if t.is_floating_point() and t.numel() > 100)
    assert not torch.equal(network.state_dict()[weight], rounded[weight])  # the rounding is real
