"""nnU-Net's own predictor for a trained model folder, set up as ``initialize_from_trained_model_folder`` does but
with the network built by nnU-Net's ``get_network_from_plans`` and handed over through ``manual_initialization``:
the folder method first imports every trainer module nnunetv2 ships to find the trainer class, and one of them
(Primus) needs timm and torchvision, which a CPU build of torch cannot load beside it. Same network, weights,
plans, folds and mirroring axes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch


def nnunet_predictor(model: Path, folds: Sequence[int], device: torch.device, mirroring: bool = True):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = json.loads((Path(model) / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((Path(model) / "plans.json").read_text()))
    checkpoints = [torch.load(Path(model) / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                              weights_only=False) for fold in folds]
    first = checkpoints[0]
    configuration_manager = plans_manager.get_configuration(first["init_args"]["configuration"])
    label_manager = plans_manager.get_label_manager(dataset_json)
    network = get_network_from_plans(
        configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
        configuration_manager.network_arch_init_kwargs_req_import,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        label_manager.num_segmentation_heads, allow_init=False, deep_supervision=False)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager,
                                    [checkpoint["network_weights"] for checkpoint in checkpoints], dataset_json,
                                    first["trainer_name"], first.get("inference_allowed_mirroring_axes"))
    return predictor


__all__ = ["nnunet_predictor"]
