"""Learning from corrections, measured on the sample data (issue: learn from the radiologist's corrections).

The user's scans are played by slabs of the two sample CTs that have reference masks: six axial slabs of 36 mm
cut from TotalSegmentator's sample CT where it has labels, and the two halves (20 mm each) of the upper-abdomen
DICOM series, a different patient and scanner that the default model never saw. The default model segments each;
the user's correction is played by TotalSegmentator's mask in the model's numbering (every wrong voxel fixed, as a
radiologist would in Segment Editor). Five corrected slabs go in as cases (``medseg cases add``'s code): four CT
slabs and the DICOM series' first half. ``medseg finetune``'s code fine-tunes within its default time budget,
holding one case out by its rule, with the model's own training scan beside the cases (``--base-data``: the card's
training data, here at hand). The old and new models are then scored on the cases that were never trained on: the
held-out slab, two more CT slabs, and the DICOM series' second half (the same scanner and patient as a case: the
"cases of the same kind" the issue asks about). Prints JSON (``--json OUT`` writes it too).

    python benchmarks/finetune_from_corrections.py --device cpu|cuda --work DIR [--minutes M] [--lr LR] [--json OUT]
        [--samples FOLDER]   (a folder holding example_ct.nii.gz, example_seg.nii.gz, example_ct_dicom/,
                              example_seg_dicom.nii.gz; default: medseg sample-data's cache)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from MedSegEfficientLib.cli.evaluate import reference_numbers
from MedSegEfficientLib.inference.gpu.devices import describe_device, select_device
from MedSegEfficientLib.inference.region import crop
from MedSegEfficientLib.model.library import default_model_path
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.datasets import CasePaths, TrainingCase, load_cases
from MedSegEfficientLib.training.finetune import FinetuneSettings, finetune
from MedSegEfficientLib.training.user_cases import add_case
from MedSegEfficientLib.training.validation import dice_for_card, present_mean, renumbered, validate

LABEL_MAP = Path(__file__).resolve().parents[1] / "training" / "demo_labels.json"
SLABS, SLAB_MM = 6, 36.0


def sample_files(folder: str | None) -> dict[str, Path]:
    if folder is None:
        from MedSegEfficientLib.io.sample_data import sample_paths

        return {key: Path(path) for key, path in sample_paths().items()}
    root = Path(folder)
    return {"example_ct": root / "example_ct.nii.gz", "example_seg": root / "example_seg.nii.gz",
            "example_ct_dicom": root / "example_ct_dicom", "example_seg_dicom": root / "example_seg_dicom.nii.gz"}


def labelled_case(name: str, image_path: Path, reference_path: Path, card) -> TrainingCase:
    """The image with its reference on the image's own grid (load_cases brings a mask stored in another axis order
    over), in the model's numbering."""
    (case,) = load_cases([CasePaths(image_path, reference_path)])
    mapping = reference_numbers(card.labels, reference_path, str(LABEL_MAP))
    labels = case.labels.with_array(renumbered(case.labels.array, mapping).astype(np.uint8))
    return TrainingCase(name, case.image, labels)


def slabs(case: TrainingCase) -> list[TrainingCase]:
    """SLABS axial slabs of SLAB_MM, spread evenly over the slices that hold labels."""
    z = np.flatnonzero((case.labels.array != 0).any(axis=(1, 2)))
    thickness = int(round(SLAB_MM / case.image.spacing[2]))
    starts = np.linspace(z[0], z[-1] + 1 - thickness, SLABS).round().astype(int)
    if np.any(np.diff(starts) < thickness):
        raise SystemExit("the labelled range is too short for non-overlapping slabs")
    cut = []
    for index, start in enumerate(starts):
        _, rows, columns = case.image.grid_shape
        box = (slice(int(start), int(start) + thickness), slice(0, rows), slice(0, columns))
        cut.append(TrainingCase(f"slab{index}", crop(case.image, box), crop(case.labels, box)))
    return cut


def halves(case: TrainingCase) -> tuple[TrainingCase, TrainingCase]:
    """The series' first and second halves along its slices (named so that they sort before the CT slabs)."""
    count, rows, columns = case.image.grid_shape
    boxes = [(slice(0, count // 2), slice(0, rows), slice(0, columns)),
             (slice(count // 2, count), slice(0, rows), slice(0, columns))]
    first, second = (TrainingCase(name, crop(case.image, box), crop(case.labels, box))
                     for name, box in zip(("dicom_a", "dicom_b"), boxes))
    return first, second


def scores(model, cases: list[TrainingCase], device) -> dict:
    dice = validate(model, cases, device, check_memory=False)
    mean = present_mean(dice)
    return {"mean": None if mean is None else round(mean, 4), "per_label": dice_for_card(dice)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", required=True, help="a folder for the cases and the new model (emptied first)")
    parser.add_argument("--minutes", type=float, help="fine-tuning budget (default: the product's, 4 GPU / 25 CPU)")
    parser.add_argument("--lr", type=float, default=FinetuneSettings.learning_rate,
                        help="fine-tuning learning rate (default: the product's)")
    parser.add_argument("--samples")
    parser.add_argument("--json")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    device = select_device(args.device)
    files = sample_files(args.samples)
    old = load_model(default_model_path())
    whole = labelled_case("example_ct", files["example_ct"], files["example_seg"], old.card)
    dicom = labelled_case("example_ct_dicom", files["example_ct_dicom"], files["example_seg_dicom"], old.card)
    cut = slabs(whole)
    first, second = halves(dicom)
    cases = [first] + cut[:4]  # named so that the rule (the last by name) holds a CT slab out: slab3
    started = time.time()
    before_each = {case.name: scores(old, [case], device)["mean"] for case in cut + [first, second]}
    for case in cases:  # the user corrects the model's output on these and adds them
        add_case(case.image, case.labels.array, old.card, work / "cases", name=case.name, source="benchmark")
    add_case(whole.image, whole.labels.array, old.card, work / "base", name="example_ct", source="its training scan")
    outcome = finetune(default_model_path(), work / "finetuned.safetensors", work / "cases",
                       FinetuneSettings(minutes=args.minutes, device=args.device, learning_rate=args.lr,
                                        base_data=work / "base",
                                        command="python benchmarks/finetune_from_corrections.py"),
                       log=print)
    held = [case for case in cut if case.name + "_001" in outcome.held_out]
    result = {
        "machine": f"{platform.machine()} {platform.system()}, {describe_device(device)}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"), "model": default_model_path().stem, "learning_rate": args.lr,
        "cases": [case.name for case in cases], "held_out_by_finetune": outcome.held_out,
        "default_model_mean_dice_per_slab": before_each,
        "estimate_seconds": outcome.estimate_seconds, "finetune_seconds": outcome.seconds,
        "kept": outcome.kept, "held_out_mean_dice": {"before": outcome.mean_before, "after": outcome.mean_after},
        "total_seconds_with_corrections": round(time.time() - started, 1),
    }
    unseen = {"example_ct_dicom second half (never a case; its first half is)": [second],
              "CT slabs 4 and 5 (never cases)": cut[4:], "held-out CT slab": held,
              "whole example_ct_dicom (half of it a case)": [dicom]}
    new = load_model(outcome.output) if outcome.kept else None
    for name, measured in unseen.items():
        result[name] = {"before": scores(old, measured, device),
                        "after": scores(new, measured, device) if new is not None else "discarded: the old model stays"}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
