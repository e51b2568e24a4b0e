"""Import a trained nnU-Net v2 model (PlainConvUNet or ResidualEncoderUNet, as its plans name them; 2d or
3d_fullres; any fold) from its results folder. The network is dynamic_network_architectures' own class built
from the plans, so the checkpoint's weights load under their own names: nothing is renamed or guessed.

Both plans generations are read: nnU-Net >= 2.3 (``architecture.network_class_name`` with ``arch_kwargs``) and
the older one (``UNet_class_name``, ``UNet_base_num_features``, ``conv_kernel_sizes``, ...), which the models of
TotalSegmentator 2 use. Labels come from dataset.json, normalisation and spacing from the plans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.nnunet_results import (NnUNetResult, imported_card, network_topology,
                                                         read_results_folder)
from MedSegEfficientLib.model.card import ModelCard, NetworkInfo
from MedSegEfficientLib.model.pth_import import strip_wrapper_prefix
from MedSegEfficientLib.model.weights import build_from_card, load_weights, save_model
from MedSegEfficientLib.networks.baselines.nnunet_v2 import ARCHITECTURES


def import_nnunet(folder: str | Path, output: str | Path, folds: str | list[str] | None = None,
                  checkpoint: str | None = None, name: str | None = None, mirroring: bool = True) -> Path:
    card, network = nnunet_model(read_results_folder(folder, folds, checkpoint), name, mirroring)
    return save_model(output, card, network)


def nnunet_model(result: NnUNetResult, name: str | None = None, mirroring: bool = True) -> tuple[ModelCard, nn.Module]:
    """The card and the network with the checkpoint's weights, as ``import_nnunet`` stores them."""
    architecture, arch_kwargs = architecture_from_plans(result)
    card = imported_card(result, NetworkInfo("nnunet_v2", None, {"architecture": architecture,
                                                                  "arch_kwargs": arch_kwargs}),
                         f"nnU-Net {architecture}", name, mirroring)
    labels_in_dataset = len(result.dataset.get("labels", {}))
    if card.out_channels != labels_in_dataset:
        raise MedSegError(f"dataset.json's {labels_in_dataset} labels are not numbered 0..{labels_in_dataset - 1}")
    network = build_from_card(card)
    load_weights(network, fold_tensors(result.fold_weights, strip_wrapper_prefix), result.checkpoint_path.name)
    return card, network


def fold_tensors(fold_weights: list[dict[str, torch.Tensor]],
                 rename: Callable[[str], str]) -> dict[str, torch.Tensor]:
    """The folds' tensors under the network's names: as they are for one fold, ``members.<n>.`` for several."""
    if len(fold_weights) == 1:
        return {rename(key): value for key, value in fold_weights[0].items()}
    return {f"members.{index}.{rename(key)}": value
            for index, weights in enumerate(fold_weights) for key, value in weights.items()}


def architecture_from_plans(result: NnUNetResult) -> tuple[str, dict[str, Any]]:
    config, dims = result.config, result.spatial_dims
    entry = config.get("architecture")
    if entry:  # nnU-Net >= 2.3
        architecture = str(entry.get("network_class_name", "")).rsplit(".", 1)[-1]
        arch_kwargs = dict(entry.get("arch_kwargs", {}))
    else:  # the older plans: the same networks from the per-stage lists, as nnU-Net 2.1 built them
        architecture = str(config.get("UNet_class_name", ""))
        topology = network_topology(config)
        blocks = "n_blocks_per_stage" if architecture == "ResidualEncoderUNet" else "n_conv_per_stage"
        arch_kwargs = {
            "n_stages": len(topology["features"]), "features_per_stage": topology["features"],
            "conv_op": f"torch.nn.Conv{dims}d", "kernel_sizes": topology["kernels"], "strides": topology["strides"],
            blocks: topology["encoder"], "n_conv_per_stage_decoder": topology["decoder"], "conv_bias": True,
            "norm_op": f"torch.nn.InstanceNorm{dims}d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}
    if architecture not in ARCHITECTURES:
        raise MedSegError(f"the plans name the network '{architecture or 'nothing'}'; nnU-Net's own "
                          f"{' and '.join(ARCHITECTURES)} import (the xLSTM-UNet authors' models: "
                          "medseg import xlstm-unet-nnunet)")
    return architecture, arch_kwargs


__all__ = ["architecture_from_plans", "fold_tensors", "import_nnunet", "nnunet_model"]
