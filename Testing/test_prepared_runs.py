"""Prepared runs: what --prepare-only writes, medseg fit trains from (folds, another network); a file that is not
one, or would need more memory than there is, is refused before anything big is read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training import prepared as prepared_module
from MedSegEfficientLib.training.prepared import load_prepared
from phantoms import make_phantom

SETTINGS = ["--network", "monai_unet:tiny", "--patch-size", "32", "32", "32", "--spacing", "2.0", "2.0", "2.5",
            "--batch-size", "2", "--lr", "1e-2", "--device", "cpu", "--quiet", "--iterations-per-epoch", "20"]


@pytest.fixture()
def prepared_file(tmp_path, capsys):
    pairs = []
    for seed in (1, 2, 3):
        image, labels = make_phantom(seed=seed)
        image_path, label_path = tmp_path / f"case{seed}_0000.nii.gz", tmp_path / f"case{seed}.nii.gz"
        write_label_image(image.array, image, image_path)
        write_label_image(labels.array, labels, label_path)
        pairs.append(f"{image_path}:{label_path}")
    path = tmp_path / "run.npz"
    assert main(["train", "--pairs", *pairs, "-o", str(path), "--prepare-only", "--epochs", "5", *SETTINGS]) == 0
    assert "medseg fit" in capsys.readouterr().out
    return path


def test_prepare_then_fit_trains_a_model_that_segments_a_new_phantom(prepared_file, tmp_path, capsys):
    run = load_prepared(prepared_file)
    assert run.item_names == ["case1_0000", "case2_0000"] and [c.name for c in run.validation] == ["case3_0000"]
    assert run.items[0]["image"].dtype == np.float32 and run.items[0]["label"].shape[0] == 1
    assert run.config.epochs == 5 and run.card.spacing == [2.0, 2.0, 2.5]
    output = tmp_path / "fitted.safetensors"
    assert main(["fit", str(prepared_file), "-o", str(output), "--device", "cpu", "--quiet"]) == 0
    card = read_card(output)
    assert card.training["fit_command"].startswith("medseg fit") and card.training["training_items"] == run.item_names
    image, labels = make_phantom(seed=42)
    found = Segmenter(load_model(output), SegmentOptions(device="cpu")).segment(image).labels
    scores = dice_per_label([found], [labels.array], [1, 2])
    assert scores[1] > 0.85 and scores[2] > 0.85, scores


def test_folds_and_another_network_from_one_file(prepared_file, tmp_path):
    run = load_prepared(prepared_file)
    assert run.without(["case1_0000"]).item_names == ["case2_0000"]
    with pytest.raises(MedSegError, match="no training item named"):
        run.without(["case9"])
    with pytest.raises(MedSegError, match="nothing to train on"):
        run.without(run.item_names)
    with pytest.raises(MedSegError, match="validation cases are case3_0000"):
        run.validated_on(["case1_0000"])
    output = tmp_path / "segresnet.safetensors"
    code = main(["fit", str(prepared_file), "-o", str(output), "--device", "cpu", "--quiet", "--epochs", "1",
                 "--iterations-per-epoch", "2", "--leave-out", "case2_0000", "--network", "monai_segresnet"])
    assert code == 0
    card = read_card(output)
    assert card.network.name == "monai_segresnet" and card.training["training_items"] == ["case1_0000"]


def test_fit_init_fine_tunes_from_a_model_and_says_how_much_it_took(prepared_file, tmp_path, capsys):
    start = tmp_path / "start.safetensors"
    assert main(["fit", str(prepared_file), "-o", str(start), "--device", "cpu", "--quiet", "--epochs", "1",
                 "--iterations-per-epoch", "2"]) == 0
    tuned = tmp_path / "tuned.safetensors"
    capsys.readouterr()
    assert main(["fit", str(prepared_file), "-o", str(tuned), "--device", "cpu", "--quiet", "--epochs", "1",
                 "--iterations-per-epoch", "1", "--lr", "1e-12", "--seed", "7", "--init", str(start)]) == 0
    started = load_model(start).network.state_dict()
    log = tuned.with_suffix(".train.log").read_text()
    assert f"of the network's {len(started)} weight tensors" in log and f"started from {start}: {len(started)} of" in log
    after = load_model(tuned).network.state_dict()
    changed = [name for name, value in started.items() if not np.allclose(after[name].numpy(), value.numpy(),
                                                                           atol=1e-6)]
    assert not changed, changed  # a learning rate of 1e-12 leaves the starting weights where they were
    assert read_card(tuned).training["config"]["init"] == str(start)

    assert main(["fit", str(prepared_file), "-o", str(tmp_path / "other.safetensors"), "--device", "cpu", "--quiet",
                 "--epochs", "1", "--network", "monai_segresnet", "--init", str(start)]) != 0
    assert "no weights match this network" in capsys.readouterr().err
    assert not (tmp_path / "other.safetensors").exists()


def test_a_file_that_is_not_a_prepared_run_is_refused(tmp_path, capsys):
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"meta.json": np.array([{"format": "x"}], dtype=object)})
    for path in (other, pickled, tmp_path / "missing.npz"):
        assert main(["fit", str(path), "-o", str(tmp_path / "m.safetensors")]) != 0
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("meta", [[1, 2], None, {"card": []}, {"item_names": 3}, {"config": "fast"},
                                  {"validation_names": [None]}, {"config": {"spacing": [float("inf")] * 3}}])
def test_a_prepared_file_with_broken_metadata_is_one_line(prepared_file, tmp_path, capsys, meta):
    with np.load(prepared_file, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    real = json.loads(bytes(arrays["meta.json"]).decode())
    broken = {**real, **meta} if isinstance(meta, dict) else meta  # one field replaced, or not an object at all
    arrays["meta.json"] = np.frombuffer(json.dumps(broken).encode(), np.uint8)
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, **arrays)
    code = main(["fit", str(damaged), "-o", str(tmp_path / "m.safetensors")])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1 and "internal error" not in error, error


def test_a_file_that_needs_more_memory_than_there_is_is_refused_before_reading(prepared_file, monkeypatch):
    monkeypatch.setattr(prepared_module, "free_memory", lambda device: (None, 1000))
    with pytest.raises(MedSegError, match="would need"):
        load_prepared(prepared_file)
