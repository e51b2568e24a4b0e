"""The nnU-Net model of the parity harness (Testing/test_nnunet_parity.py), made with nnU-Net's own code
(nnunetv2 2.8.1 from PyPI): its dataset layout, fingerprint, planner, preprocessor and trainer.

    python training/make_nnunet_parity_model.py prepare WORK   # here, on the CPU: dataset, plans, preprocessing
    python training/make_nnunet_parity_model.py train WORK --folds 0 --epochs 20 --iterations 50
    python training/make_nnunet_parity_model.py train WORK --folds 1 --epochs 10 --iterations 50
    python training/make_nnunet_parity_model.py export WORK Testing/data/nnunet_parity

Data: TotalSegmentator 2.18.0's sample CT and its mask (Apache-2.0), four organs (spleen, right and left kidney,
liver). The default planner's 3d_fullres plans are kept but for a smaller network (four stages of 8-64 features,
a 64^3 tile) so that CI runs it on two cores. Two folds are trained on the one case (a custom split, different
seeds) so that the harness checks fold averaging too, with nnU-Net's trainer variant without augmentation
(``nnUNetTrainerNoDA``), which learns the one case within minutes on two cores. The export drops the optimiser
state and allows mirroring along the three axes, as nnUNetTrainer's own models do, so that the harness mirrors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

DATASET_ID, DATASET = 900, "Dataset900_MedSegParity"
PLANS = "nnUNetPlansSmall"
TRAINER = "nnUNetTrainerNoDA"  # nnU-Net's own variant without augmentation: it learns one case fast on a CPU
TRAINER_FOLDER = f"{TRAINER}__{PLANS}__3d_fullres"
ORGANS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5}  # TotalSegmentator's numbers


def _environment(work: Path) -> None:
    for name in ("raw", "preprocessed", "results"):
        os.environ[f"nnUNet_{name}"] = str(work / name)
        (work / name).mkdir(parents=True, exist_ok=True)


def prepare(work: Path) -> None:
    import numpy as np
    import SimpleITK as sitk

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MedSegEfficient"))
    from MedSegEfficientLib.io.sample_data import sample_paths

    _environment(work)
    samples = sample_paths(names=["example_ct"])
    raw = work / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(samples["example_ct"], raw / "imagesTr" / "case_0000_0000.nii.gz")
    mask = sitk.ReadImage(str(samples["example_seg"]))
    values = sitk.GetArrayFromImage(mask)
    labels = np.zeros(values.shape, np.uint8)
    for number, source in enumerate(ORGANS.values(), start=1):
        labels[values == source] = number
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(mask)
    sitk.WriteImage(image, str(raw / "labelsTr" / "case_0000.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, **{n: i + 1 for i, n in enumerate(ORGANS)}},
        "numTraining": 1, "file_ending": ".nii.gz", "licence": "Apache-2.0 (TotalSegmentator 2.18.0 test files)"},
        indent=1))

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                       preprocess)
    extract_fingerprints([DATASET_ID], check_dataset_integrity=True, num_processes=2)
    plan_experiments([DATASET_ID])
    preprocessed = work / "preprocessed" / DATASET
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["plans_name"] = PLANS
    config = plans["configurations"]["3d_fullres"]
    config.update({"patch_size": [64, 64, 64], "batch_size": 2})
    arch = config["architecture"]["arch_kwargs"]
    arch.update({"n_stages": 4, "features_per_stage": [8, 16, 32, 64], "kernel_sizes": [[3, 3, 3]] * 4,
                 "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2, 2],
                 "n_conv_per_stage_decoder": [2, 2, 2]})
    plans["configurations"] = {"3d_fullres": config}
    (preprocessed / f"{PLANS}.json").write_text(json.dumps(plans, indent=1))
    preprocess([DATASET_ID], plans_identifier=PLANS, configurations=("3d_fullres",), num_processes=(2,))
    # One case, two folds: each trains and validates on it (nnU-Net reads a custom split from this file).
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": ["case_0000"], "val": ["case_0000"]}] * 2))


def train(work: Path, epochs: int, iterations: int, folds: list[int]) -> None:
    import torch

    _environment(work)
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA

    preprocessed = work / "preprocessed" / DATASET
    plans = json.loads((preprocessed / f"{PLANS}.json").read_text())
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    for fold in folds:
        torch.manual_seed(fold)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        trainer = nnUNetTrainerNoDA({**plans, "continue_training": False}, "3d_fullres", fold, dataset, device)
        trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = epochs, iterations, 5
        trainer.run_training()


def export(work: Path, target: Path) -> None:
    import torch

    source = work / "results" / DATASET / TRAINER_FOLDER
    destination = target / DATASET / TRAINER_FOLDER
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, destination / name)
    for fold in (0, 1):
        checkpoint = torch.load(source / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False,
                                map_location="cpu")
        kept = {key: checkpoint[key] for key in ("network_weights", "init_args", "trainer_name", "current_epoch")}
        kept["inference_allowed_mirroring_axes"] = (0, 1, 2)  # what nnUNetTrainer's models carry: mirroring is tested
        (destination / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(kept, destination / f"fold_{fold}" / "checkpoint_final.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "train", "export"])
    parser.add_argument("work", type=Path)
    parser.add_argument("target", type=Path, nargs="?")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.work)
    elif args.step == "train":
        train(args.work, args.epochs, args.iterations, args.folds)
    else:
        export(args.work, args.target)


if __name__ == "__main__":
    main()
