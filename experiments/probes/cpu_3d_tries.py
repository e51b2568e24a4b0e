"""CPU tries for the 3D models that miss the GPU-run issue's CPU goal (fast mode <= 0.6x MONAI's time): two ways to
cut the network stage on 2 threads, each with its effect on the held-out Dice.

- memory order: the network's weights channels-last (oneDNN's NDHWC convolutions), alone and with the instance
  norms written as order-keeping reductions (``kernel_value_gate.swap_instance_norms``); one tile, best of 4,
  the variants interleaved so that a busy shared machine slows each alike;
- one pass over the whole model grid instead of overlapping tiles (the card's patch size dropped), timed on the
  clinical-size CT and scored on the held-out DICOM series.

    python benchmarks/make_clinical_ct.py /tmp/clinical.nii.gz
    python training/make_demo_dataset.py DEMO_FOLDER
    python experiments/probes/cpu_3d_tries.py /tmp/clinical.nii.gz DEMO_FOLDER --json experiments/results/cpu_3d_tries.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MedSegEfficient"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernel_value_gate import swap_instance_norms  # noqa: E402
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter  # noqa: E402
from MedSegEfficientLib.io.images import read_image  # noqa: E402
from MedSegEfficientLib.model.library import resolve_model_path  # noqa: E402
from MedSegEfficientLib.model.weights import load_model  # noqa: E402
from MedSegEfficientLib.training.datasets import describe_folder, load_cases  # noqa: E402
from MedSegEfficientLib.training.postprocessing_choice import mean_dice  # noqa: E402
from MedSegEfficientLib.training.validation import validate  # noqa: E402

MODELS = ("abdomen_ct_xlstm_unet_3d", "abdomen_ct_demo", "abdomen_ct_tokenseg")


def memory_order_times(name: str, repeat: int = 4) -> dict[str, float]:
    network = load_model(resolve_model_path(name)).network.eval().float()
    side = load_model(resolve_model_path(name)).card.patch_size[0]
    channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last_3d)
    order_keeping = copy.deepcopy(channels_last)
    swap_instance_norms(order_keeping)
    variants = {"default": network, "channels-last": channels_last, "channels-last-norm": order_keeping}
    tile = torch.randn(1, 1, side, side, side)
    times: dict[str, list[float]] = {key: [] for key in variants}
    with torch.inference_mode():
        for candidate in variants.values():
            candidate(tile)  # warm-up
        for _ in range(repeat):
            for key, candidate in variants.items():
                started = time.perf_counter()
                candidate(tile)
                times[key].append(time.perf_counter() - started)
    return {f"{key}_tile_seconds": round(min(values), 3) for key, values in times.items()} | {"tile": side}


def whole_grid_try(name: str, clinical, held_out) -> dict[str, float]:
    row = {}
    for mode in ("tiles", "whole-grid"):
        model = load_model(resolve_model_path(name))
        if mode == "whole-grid":
            model.card.patch_size = None  # the engine then runs the padded model grid in one pass
        segmenter = Segmenter(model, SegmentOptions(device="cpu", fast=True))
        segmenter.segment(clinical)  # warm-up
        report = segmenter.segment(clinical).report
        row[f"{mode}_network_seconds"] = round(report.seconds["network"], 3)
        row[f"{mode}_held_out_mean_dice"] = round(mean_dice(validate(model, held_out, torch.device("cpu"))), 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clinical_ct")
    parser.add_argument("demo_dataset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clinical = read_image(args.clinical_ct)
    held_out = load_cases(describe_folder(Path(args.demo_dataset)).validation)
    rows = []
    for name in MODELS:
        row = {"model": name} | memory_order_times(name) | whole_grid_try(name, clinical, held_out)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {platform.system()}, "
              f"{args.threads} torch threads", "torch": torch.__version__, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
