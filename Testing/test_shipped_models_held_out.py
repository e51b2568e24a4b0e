"""Every shipped model on the scan none of them was trained on (TotalSegmentator's upper-abdomen DICOM series,
its labels merged as training/make_demo_dataset.py merges them): the mean Dice must hold a floor a little below
the figure its card states, and that floor fails for the same network untrained."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card, load_model
from MedSegEfficientLib.training.datasets import describe_folder, load_cases
from MedSegEfficientLib.training.postprocessing_choice import mean_dice
from MedSegEfficientLib.training.validation import validate

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(SHIPPED_MODELS_DIR.glob("*.safetensors"))
MARGIN = 0.02  # below the card's figure: room for float rounding across machines, not for a worse model
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def held_out(samples, tmp_path_factory):
    """The validation case exactly as the cards were scored on it: the dataset folder the training script builds."""
    spec = importlib.util.spec_from_file_location("make_demo_dataset", ROOT / "training" / "make_demo_dataset.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    folder = tmp_path_factory.mktemp("demo_dataset")
    builder.main(folder)
    return load_cases(describe_folder(folder).validation)


@pytest.mark.slow
@pytest.mark.parametrize("model", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_each_shipped_model_holds_its_cards_dice_on_the_held_out_scan(model, held_out):
    loaded = load_model(model)
    stated = loaded.card.metrics["validation_mean_dice"]
    assert [case.name for case in held_out] == loaded.card.metrics["validation_cases"]
    measured = mean_dice(validate(loaded, held_out, CPU))
    print(f"\n{model.stem}: held-out mean Dice {measured:.4f} (card {stated})")
    assert measured >= stated - MARGIN


@pytest.mark.slow
def test_the_floor_fails_for_the_same_network_untrained(held_out):
    trained = load_model(SHIPPED_MODELS_DIR / "abdomen_ct_tokenseg.safetensors")
    torch.manual_seed(0)
    untrained = LoadedModel(card=trained.card, network=build_from_card(trained.card).eval())
    measured = mean_dice(validate(untrained, held_out, CPU))
    assert not math.isnan(measured) and measured < trained.card.metrics["validation_mean_dice"] - MARGIN
