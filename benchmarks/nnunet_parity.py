"""Parity with nnU-Net: the same trained nnU-Net model run by nnunetv2's own ``nnUNetPredictor`` and by
``medseg`` after ``medseg import nnunet``, on CTs of several spacings and orientations; per-label Dice between the
two label maps on the input grid, and the mean absolute difference of their class probabilities on the model grid.

    python benchmarks/nnunet_parity.py [--device cpu|cuda] [--model FOLDER] [--json OUT.json]

The model (Testing/data/nnunet_parity/, made by training/make_nnunet_parity_model.py with nnU-Net's own planner
and trainer) is averaged over its two folds and mirrored along its three axes, as nnUNetPredictor runs it by
default (tile step 0.5, Gaussian). Needs nnunetv2 (pip install -e ".[nnunet]"). Testing/test_nnunet_parity.py
runs the same cases and holds the goals: Dice >= 0.999 on the planned grid, >= 0.995 elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "MedSegEfficient"), str(ROOT / "benchmarks")]

from MedSegEfficientLib.importers.nnunet_v2 import import_nnunet  # noqa: E402
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter  # noqa: E402
from MedSegEfficientLib.model.weights import load_model  # noqa: E402
from MedSegEfficientLib.volume import Volume  # noqa: E402

MODEL = ROOT / "Testing" / "data" / "nnunet_parity" / "Dataset900_MedSegParity" / \
    "nnUNetTrainerNoDA__nnUNetPlansSmall__3d_fullres"
FOLDS = (0, 1)


@dataclass
class Case:
    name: str
    volume: Volume
    planned_grid: bool  # the grid the model was planned on: no resampling either way
    mirroring: bool = False  # 8 passes a tile: on the planned grid only, which keeps the harness within CI's time


def parity_cases(example_ct: Path, aorta_ct: Path | None = None) -> list[Case]:
    """The planned CT; it at 1.5 mm; an anisotropic version (1.2 x 1.2 x 5 mm: nnU-Net's separate slice axis both
    ways); its axes permuted and flipped (another array order of the same body); and the aorta CT (1.5 mm)."""
    from MedSegEfficientLib.io.images import read_image
    from MedSegEfficientLib.inference.torch_preprocessing import resampled

    planned = read_image(example_ct)
    cpu = torch.device("cpu")
    cases = [Case("planned grid (3 mm)", planned, True, mirroring=True),
             Case("1.5 mm isotropic", resampled(planned, (1.5, 1.5, 1.5), cpu), False),
             Case("1.2 x 1.2 x 5 mm", resampled(planned, (1.2, 1.2, 5.0), cpu), False)]
    permuted = np.ascontiguousarray(np.flip(planned.array.transpose(2, 0, 1), axis=1))  # (k, j, i) -> (i, k, j)
    direction = planned.direction[:, [1, 2, 0]] * np.array([1.0, -1.0, 1.0])
    origin = np.asarray(planned.origin) + planned.direction[:, 2] * planned.spacing[2] * (planned.array.shape[0] - 1)
    cases.append(Case("axes permuted and flipped", Volume(permuted, (planned.spacing[1], planned.spacing[2],
                                                                     planned.spacing[0]), tuple(origin), direction),
                      False))
    if aorta_ct is not None:
        cases.append(Case("aorta CT (1.5 mm)", read_image(aorta_ct), False))
    return cases


def nnunet_predictor(model: Path, device: torch.device, mirroring: bool = True):
    from nnunet_predictor import nnunet_predictor as make_predictor

    return make_predictor(model, FOLDS, device, mirroring)


def nnunet_outputs(predictor, volume: Volume) -> tuple[np.ndarray, torch.Tensor]:
    """nnU-Net's labels on the input grid, and its class probabilities on its model grid: the steps of its
    ``predict_single_npy_array`` (preprocess, predict the logits, export), the logits kept on the way."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    image = volume.array.astype(np.float32)[None]
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, properties = preprocessor.run_case_npy(image, None, {"spacing": list(volume.spacing[::-1])},
                                                    predictor.plans_manager, predictor.configuration_manager,
                                                    predictor.dataset_json)
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    labels = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties)
    return labels, torch.softmax(logits.float(), 0)


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float | None:
    first, second = a == label, b == label
    total = int(first.sum()) + int(second.sum())
    return None if total == 0 else 2.0 * int(np.logical_and(first, second).sum()) / total


def compare(case: Case, predictor, segmenter: Segmenter) -> dict:
    started = time.perf_counter()
    reference, reference_probabilities = nnunet_outputs(predictor, case.volume)
    nnunet_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = segmenter.nnunet_scores(case.volume)
    ours = scores.labels()
    medseg_seconds = time.perf_counter() - started
    probabilities = torch.softmax(scores.logits.float().cpu(), 0)
    names = {label.value: label.name for label in segmenter.card.labels}
    return {"case": case.name, "planned_grid": case.planned_grid, "mirroring": case.mirroring,
            "shape": list(case.volume.array.shape), "spacing": list(case.volume.spacing),
            "labels_equal": float(np.mean(reference == ours)),
            "voxels": {names[value]: int((reference == value).sum()) for value in sorted(names)},
            "dice": {names[value]: dice(reference, ours, value) for value in sorted(names)},
            "mean_abs_probability_difference": float((probabilities - reference_probabilities).abs().mean())
            if probabilities.shape == reference_probabilities.shape else None,
            "seconds": {"nnUNetPredictor": round(nnunet_seconds, 2), "medseg": round(medseg_seconds, 2)}}


def run(cases: list[Case], device: torch.device, model: Path = MODEL) -> list[dict]:
    """Each case through both, with or without mirroring as the case says (the import's --no-mirroring and
    nnUNetPredictor's use_mirroring=False)."""
    with tempfile.TemporaryDirectory() as folder:
        runners = {}
        for mirroring in sorted({case.mirroring for case in cases}):
            imported = import_nnunet(model, Path(folder) / f"parity_{mirroring}.safetensors", [str(f) for f in FOLDS],
                                     mirroring=mirroring)
            runners[mirroring] = (nnunet_predictor(model, device, mirroring),
                                  Segmenter(load_model(imported), SegmentOptions(device=device.type)))
        return [compare(case, *runners[case.mirroring]) for case in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--example-ct", type=Path, help="the sample CT (default: from `medseg sample-data`)")
    parser.add_argument("--aorta-ct", type=Path, help="the 1.5 mm aorta CT (default: from `medseg sample-data`)")
    args = parser.parse_args()
    if args.example_ct is None:
        from MedSegEfficientLib.io.sample_data import sample_paths

        samples = sample_paths(names=["example_ct", "aorta_ct"])
        args.example_ct, args.aorta_ct = samples["example_ct"], args.aorta_ct or samples["aorta_ct"]
    results = run(parity_cases(args.example_ct, args.aorta_ct), torch.device(args.device), args.model)
    for result in results:
        scores = ", ".join(f"{name} {value:.4f}" if value is not None else f"{name} absent"
                           for name, value in result["dice"].items())
        print(f"{result['case']:28s} Dice {scores}; mean |p - p_nnU-Net| "
              f"{result['mean_abs_probability_difference']:.2e}; {result['seconds']}")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "results": results}, indent=1))


if __name__ == "__main__":
    main()
