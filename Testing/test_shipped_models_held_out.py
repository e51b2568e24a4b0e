"""Every shipped model on a scan it was never trained on: the mean Dice must hold a floor a little below the
figure its card states, and that floor fails for the same network untrained.

The held-out scans, each exactly as its card was scored on it:
- abdominal CT: TotalSegmentator's upper-abdomen DICOM series, labels merged as training/make_demo_dataset.py does;
- brain T1: pyradiomics' brain2 head against deepbet's mask of it (Testing/data/held_out/);
- nuclei 2D: the right 40 % of stardist's img2d, as training/make_nuclei_dataset.py splits it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card, load_model
from MedSegEfficientLib.training.datasets import TrainingCase, describe_folder, load_cases
from MedSegEfficientLib.training.postprocessing_choice import mean_dice
from MedSegEfficientLib.training.validation import validate

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(SHIPPED_MODELS_DIR.glob("*.safetensors"))
MARGIN = 0.02  # below the card's figure: room for float rounding across machines, not for a worse model
CPU = torch.device("cpu")


def _built_dataset(script: str, folder: Path) -> list[TrainingCase]:
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / "training" / script)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.main(folder)
    return load_cases(describe_folder(folder).validation)


@pytest.fixture(scope="module")
def held_out(samples, tmp_path_factory) -> dict[str, list[TrainingCase]]:
    """The validation cases of each task, by the name its cards record."""
    abdomen = _built_dataset("make_demo_dataset.py", tmp_path_factory.mktemp("demo_dataset"))
    nuclei = _built_dataset("make_nuclei_dataset.py", tmp_path_factory.mktemp("nuclei_dataset"))
    head = read_image(samples["brain_t1_mr"])
    mask = read_image(ROOT / "Testing" / "data" / "held_out" / "brain2_deepbet_mask.nii.gz")
    assert mask.same_grid(head, tolerance=1e-3)
    brain = [TrainingCase("brain2_0000", head, head.with_array(mask.array))]
    return {case.name: [case] for case in abdomen + nuclei + brain}


def _cases_of(loaded: LoadedModel, held_out: dict[str, list[TrainingCase]]) -> list[TrainingCase]:
    names = loaded.card.metrics["validation_cases"]
    assert all(name in held_out for name in names), f"no held-out scan named {names}"
    return [case for name in names for case in held_out[name]]


@pytest.mark.slow
@pytest.mark.parametrize("model", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_each_shipped_model_holds_its_cards_dice_on_the_held_out_scan(model, held_out):
    loaded = load_model(model)
    stated = loaded.card.metrics["validation_mean_dice"]
    measured = mean_dice(validate(loaded, _cases_of(loaded, held_out), CPU))
    print(f"\n{model.stem}: held-out mean Dice {measured:.4f} (card {stated})")
    assert measured >= stated - MARGIN


@pytest.mark.slow
@pytest.mark.parametrize("name", ["abdomen_ct_tokenseg", "brain_t1_tokenseg", "nuclei_2d_tm_unet"])
def test_the_floor_fails_for_the_same_network_untrained(name, held_out):
    trained = load_model(SHIPPED_MODELS_DIR / f"{name}.safetensors")
    torch.manual_seed(0)
    untrained = LoadedModel(card=trained.card, network=build_from_card(trained.card).eval())
    measured = mean_dice(validate(untrained, _cases_of(trained, held_out), CPU))
    assert not math.isnan(measured) and measured < trained.card.metrics["validation_mean_dice"] - MARGIN
