"""Store a model's weights in float16 (half the file) and re-measure its validation Dice on those weights.

    python training/store_half.py MODEL --data DATASET_FOLDER -o OUT.safetensors

The card's clean-up and mirroring stay as they were chosen; its validation figures are replaced by the ones the
float16 weights give on the folder's validation cases, exactly as a user runs the model (CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import torch

from MedSegEfficientLib.model.library import resolve_model_path
from MedSegEfficientLib.model.weights import LoadedModel, load_model, round_to_half, save_model
from MedSegEfficientLib.training.datasets import describe_folder, load_cases
from MedSegEfficientLib.training.validation import validate, validation_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True, help="dataset folder whose validation cases score the model")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    source = resolve_model_path(args.model)
    if Path(args.output).resolve() == source.resolve():
        raise SystemExit("write to a new file, never over the model it starts from")
    model = load_model(source)
    half = LoadedModel(model.card, round_to_half(model.network))
    cases = load_cases(describe_folder(Path(args.data), need_training=False).validation)
    before = model.card.metrics.get("validation_mean_dice")
    scores = validate(half, cases, torch.device("cpu"))
    metrics = {**model.card.metrics, **validation_metrics(scores, cases), "weights": "float16"}
    training = {**model.card.training, "half_command": "python training/store_half.py " + shlex.join(sys.argv[1:])}
    card = dataclasses.replace(model.card, metrics=metrics, training=training)
    save_model(args.output, card, half.network, half=True)
    print(f"{args.output}: float16 weights, validation mean Dice {before} -> {metrics['validation_mean_dice']}")


if __name__ == "__main__":
    main()
