"""--weight-average: the model validated and saved is the moving average of the weights, not the last batch's."""

from __future__ import annotations

import pytest
import torch

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.weights import build_from_card, load_model
from MedSegEfficientLib.training.datasets import describe_pairs
from MedSegEfficientLib.training.trainer import TrainConfig, train
from test_training import _write_cases


def _distance_from_start(path, seed: int) -> float:
    """How far the saved weights moved from the network's initial weights (rebuilt from the same seed)."""
    card = read_card(path)
    torch.manual_seed(seed)
    start = build_from_card(card).state_dict()
    saved = load_model(path).network.state_dict()
    return sum(float((saved[k].float() - start[k].float()).norm()) for k in start if start[k].is_floating_point())


def test_the_saved_model_is_the_average(tmp_path):
    pairs = _write_cases(tmp_path, seeds=[1, 2])
    description = describe_pairs(pairs[:1], {1: "big", 2: "small"})
    description.validation = describe_pairs(pairs[1:], {1: "big", 2: "small"}).training
    moved = {}
    for decay in (None, 0.999999):  # an average that barely moves from the first batch's weights
        config = TrainConfig(network="monai_unet", preset="tiny", patch_size=[32, 32, 32], spacing=[2.0, 2.0, 2.5],
                             epochs=1, iterations_per_epoch=40, batch_size=2, learning_rate=1e-2, device="cpu",
                             weight_average=decay)
        output = tmp_path / f"model_{decay}.safetensors"
        train(description, output, config, log=lambda _: None, show_progress=False)
        assert read_card(output).training["config"]["weight_average"] == decay
        assert ("weights averaged" in output.with_suffix(".train.log").read_text()) == (decay is not None)
        moved[decay] = _distance_from_start(output, config.seed)
    assert moved[0.999999] < 0.25 * moved[None], moved


@pytest.mark.parametrize("decay", ["1.0", "0", "-0.5"])
def test_a_decay_outside_zero_to_one_is_refused_in_one_line(tmp_path, capsys, decay):
    pairs = _write_cases(tmp_path, seeds=[1])
    code = main(["train", "--pairs", ":".join(pairs[0]), "-o", str(tmp_path / "m.safetensors"),
                 "--weight-average", decay, "--device", "cpu", "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code != 0 and "--weight-average" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_fit_takes_the_average_over_what_was_prepared(tmp_path):
    from test_prepared_runs import SETTINGS

    pairs = [":".join(pair) for pair in _write_cases(tmp_path, seeds=[1, 2])]
    prepared, output = tmp_path / "run.npz", tmp_path / "fitted.safetensors"
    assert main(["train", "--pairs", *pairs, "-o", str(prepared), "--prepare-only", "--epochs", "1", *SETTINGS]) == 0
    assert main(["fit", str(prepared), "-o", str(output), "--weight-average", "0.9", "--device", "cpu",
                 "--quiet"]) == 0
    assert read_card(output).training["config"]["weight_average"] == 0.9
