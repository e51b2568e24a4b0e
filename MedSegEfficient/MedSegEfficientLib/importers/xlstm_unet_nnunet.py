"""Import the xLSTM-UNet authors' trained nnU-Net v2 models (UxLSTMBot / UxLSTMEnc, 2D and 3D).

Our network mirrors theirs block for block, so the weights move by renaming keys. The mapping, theirs -> ours:

=============================================  ===========================================================
``encoder.stem.<b>.``                          ``stem.<b>.``
``encoder.stages.<s>.<b>.``                    ``encoder.<s>.<b>.``
``encoder.xlstm_layers.<s>.vil.``              ``mixers.<s>.block.`` (Enc: ViL after stage s)
``encoder.xlstm_layers.<s>.``                  ``mixers.<s>.`` (Enc: the extra residual block)
``xlstm.vil.``                                 ``bottleneck.block.`` (Bot)
``decoder.upsample_layers.<i>.conv.``          ``upsample.<i>.1.``
``decoder.stages.<i>.<b>.``                    ``decoder.<i>.<b>.``
``decoder.seg_layers.<i>.``                    ``heads.<i>.``
first block of a stage: ``conv1 norm1 conv2 norm2 conv3``  ``conv1 norm1 conv2 norm2 shortcut``
later blocks (BasicBlockD): ``conv1.conv conv1.norm conv2.conv conv2.norm``  ``conv1 norm1 conv2 norm2``
ViL block: ``norm.weight``, ``layer.conv1d.conv.``, ``layer.mlstm_cell.{igate,fgate,outnorm}``
                                               ``norm_weight``, ``layer.conv1d.``, ``layer.{igate,fgate,outnorm}``
=============================================  ===========================================================

Dropped after checks: ``decoder.encoder.*`` (the decoder keeps a reference to the encoder, so every encoder
tensor is saved twice: each copy must equal the original), ``*.all_modules.*`` (dynamic_network_architectures'
second name for the same conv and norm, also checked equal), and the ``norm`` LayerNorm of the authors' ViL
wrapper (``xlstm.norm.*``, ``encoder.xlstm_layers.<s>.norm.*``), which their forward pass never uses. Their
mLSTM output norm has no bias; ours gets zeros, which computes the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from MedSegEfficientLib.model.card import ModelCard, NetworkInfo
from MedSegEfficientLib.model.pth_import import strip_wrapper_prefix
from MedSegEfficientLib.model.weights import build_from_card, load_weights, save_model
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.networks.mlstm.xlstm_unet import single_blocks_in_deep_half
from MedSegEfficientLib.importers.nnunet_results import imported_card, network_topology, read_results_folder
from MedSegEfficientLib.importers.nnunet_v2 import fold_tensors
from MedSegEfficientLib.networks.fold_average import FoldAverage

RENAMES: list[tuple[str, str]] = [
    (r"^encoder\.stem\.", "stem."),
    (r"^encoder\.stages\.", "encoder."),
    (r"^encoder\.xlstm_layers\.(\d+)\.vil\.", r"mixers.\1.block."),
    (r"^encoder\.xlstm_layers\.", "mixers."),
    (r"^xlstm\.vil\.", "bottleneck.block."),
    (r"^decoder\.upsample_layers\.(\d+)\.conv\.", r"upsample.\1.1."),
    (r"^decoder\.stages\.", "decoder."),
    (r"^decoder\.seg_layers\.", "heads."),
    (r"\.conv1\.conv\.", ".conv1."), (r"\.conv1\.norm\.", ".norm1."),
    (r"\.conv2\.conv\.", ".conv2."), (r"\.conv2\.norm\.", ".norm2."),
    (r"\.conv3\.", ".shortcut."),
    (r"\.block\.norm\.weight$", ".block.norm_weight"),
    (r"\.layer\.conv1d\.conv\.", ".layer.conv1d."),
    (r"\.layer\.mlstm_cell\.", ".layer."),
]
UNUSED = re.compile(r"^(xlstm\.norm\.|encoder\.xlstm_layers\.\d+\.norm\.)")


def import_xlstm_unet_nnunet(folder: str | Path, output: str | Path, folds: str | list[str] | None = None,
                             checkpoint: str | None = None, name: str | None = None, mirroring: bool = True) -> Path:
    result = read_results_folder(folder, folds, checkpoint)
    variant = _variant(result.trainer)
    card = card_from_plans(result, variant, name, mirroring)
    network = build_from_card(card)
    member = network.members[0] if isinstance(network, FoldAverage) else network
    renamed = []
    for weights in result.fold_weights:
        tensors = rename_weights(weights)
        for key, parameter in member.state_dict().items():  # our mLSTM output norm's bias; theirs has none
            if key.endswith("layer.outnorm.bias") and key not in tensors:
                tensors[key] = torch.zeros_like(parameter)
        renamed.append(tensors)
    load_weights(network, fold_tensors(renamed, lambda key: key), result.checkpoint_path.name)
    return save_model(output, card, network)


def rename_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' state dict in our names, after checking the duplicated tensors it drops."""
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        key = strip_wrapper_prefix(key)
        if key.startswith("decoder.encoder."):
            _check_same(weights, key, key.removeprefix("decoder."))
            continue
        if ".all_modules." in key:
            continue  # checked against its primary name below
        if UNUSED.match(key):
            continue
        ours = key
        for pattern, replacement in RENAMES:
            ours = re.sub(pattern, replacement, ours)
        renamed[ours] = tensor
    for key in weights:
        if ".all_modules." in key:  # index 0 is the conv, then (dropout and) the norm
            prefix, rest = re.match(r"(.+)\.all_modules\.\d+\.(.+)$", key).groups()
            twins = [f"{prefix}.{part}.{rest}" for part in ("conv", "norm")]
            if not any(twin in weights and torch.equal(weights[twin], weights[key]) for twin in twins
                       if weights[twin].shape == weights[key].shape):
                raise MedSegError(f"checkpoint tensor {key} matches neither {twins[0]} nor {twins[1]}")
    return renamed


def card_from_plans(result, variant: str, name: str | None = None, mirroring: bool = True) -> ModelCard:
    topology = network_topology(result.config)
    encoder, decoder = single_blocks_in_deep_half(topology["encoder"], topology["decoder"])
    plan = {"features": topology["features"], "kernels": topology["kernels"], "strides": topology["strides"],
            "blocks": encoder, "decoder_blocks": decoder, "full_resolution_skip": result.spatial_dims == 3}
    patch = [int(p) for p in result.config["patch_size"]]
    network = NetworkInfo("xlstm_unet", f"{variant}_{result.spatial_dims}d", {"plan": plan, "patch_size": patch})
    return imported_card(result, network, f"xLSTM-UNet {variant.capitalize()}", name, mirroring)


def _variant(trainer: str) -> str:
    lowered = trainer.lower()
    if "uxlstmbot" in lowered:
        return "bot"
    if "uxlstmenc" in lowered:
        return "enc"
    raise MedSegError(f"trainer '{trainer}' is not an xLSTM-UNet trainer (nnUNetTrainerUxLSTMBot or ...Enc)")


def _check_same(weights: dict[str, torch.Tensor], copy: str, original: str) -> None:
    if original not in weights:
        raise MedSegError(f"checkpoint has {copy} but not {original}")
    if weights[original].shape != weights[copy].shape or not torch.equal(weights[original], weights[copy]):
        raise MedSegError(f"checkpoint tensors {copy} and {original} should be the same tensor but differ")
