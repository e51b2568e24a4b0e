"""Import a TM-UNet trained with the authors' code (xq141839/TM-UNet ``train.py``: ``torch.save(model.state_dict())``
of ``tmunet.Model(num_classes=1, img_size, embed_dims)``, maybe under ``module.``) into a model file.

Mapping, theirs -> ours:

=====================================================  =====================================================
``encoder<k>.`` / ``ebn<k>.`` (k = 1..3)               ``encoders.<k-1>.conv.`` / ``encoders.<k-1>.bn.``
``patch_embed3.``, ``patch_embed4.``                   the same
``block1.0.`` + ``norm3.``, ``block2.0.`` + ``norm4.``   ``stage3.block.`` + ``stage3.norm.``, ``stage4.*``
``dblock1.0.`` + ``dnorm3.``, ``dblock2.0.`` + ``dnorm4.``  ``decoder_stage3.*``, ``decoder_stage2.*``
``decoder<k>.`` / ``dbn<k>.`` (k = 1..4)               ``decoder<k>.conv.`` / ``decoder<k>.bn.``
``decoder5.``, ``final.``                              the same (``final`` widened, below)
in a block: ``layer.fc2.`` / ``layer.fc3.``            ``layer.forward_scan.`` / ``layer.backward_scan.``
``layer.dwconv_2.`` / ``layer.dwconv_3.``              ``layer.mix_after_forward.`` / ``layer.mix_after_backward.``
in a ViL layer: ``conv1d.conv.``, ``mlstm_cell.``      ``conv1d.``, (dropped)
=====================================================  =====================================================

Dropped and reported: ``layer.dwconv_1.*`` (their code builds it and never calls it). Their network ends in one
logit per pixel for a sigmoid; ours in one score per class for an argmax, so ``final`` becomes two channels,
background 0 and their logit: argmax picks the structure exactly where their sigmoid passes 0.5. The card asks
for ``pooling: tokens_channels``, their pooling over the (token, channel) plane, so that the outputs are theirs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.backbone import apply_renames, placeholder_labels, save_whole_network
from MedSegEfficientLib.model.card import ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.pth_import import load_state_dict_safely, strip_wrapper_prefix
from MedSegEfficientLib.networks import get_network_spec

RENAMES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"^encoder([1-3])\.", lambda m: f"encoders.{int(m[1]) - 1}.conv."),
    (r"^ebn([1-3])\.", lambda m: f"encoders.{int(m[1]) - 1}.bn."),
    (r"^block1\.0\.", "stage3.block."), (r"^norm3\.", "stage3.norm."),
    (r"^block2\.0\.", "stage4.block."), (r"^norm4\.", "stage4.norm."),
    (r"^dblock1\.0\.", "decoder_stage3.block."), (r"^dnorm3\.", "decoder_stage3.norm."),
    (r"^dblock2\.0\.", "decoder_stage2.block."), (r"^dnorm4\.", "decoder_stage2.norm."),
    (r"^decoder([1-4])\.", r"decoder\1.conv."), (r"^dbn([1-4])\.", r"decoder\1.bn."),
    (r"\.layer\.fc2\.", ".layer.forward_scan."), (r"\.layer\.fc3\.", ".layer.backward_scan."),
    (r"\.layer\.dwconv_2\.", ".layer.mix_after_forward."), (r"\.layer\.dwconv_3\.", ".layer.mix_after_backward."),
    (r"\.conv1d\.conv\.", ".conv1d."), (r"\.mlstm_cell\.", "."),
]
UNUSED = re.compile(r"\.layer\.dwconv_1\.")
DEFAULT_SIZE = 512  # their train.py --img_size


def import_tm_unet(source: str | Path, output: str | Path, name: str | None = None,
                   size: int = DEFAULT_SIZE) -> Path:
    source = Path(source)
    state = {strip_wrapper_prefix(key): value for key, value in load_state_dict_safely(source).items()
             if isinstance(value, torch.Tensor)}
    if "encoder1.weight" not in state or "final.weight" not in state:
        raise MedSegError(f"{source.name} has no encoder1/final tensors: not a TM-UNet state dict of the authors")
    if any(re.match(r"^(d?block[12])\.[1-9]", key) for key in state):
        raise MedSegError(f"{source.name}: more than one MSTM block per stage; TM-UNet has one")
    dropped = sorted(key for key in state if UNUSED.search(key))
    tensors = {rename(key): value for key, value in state.items() if not UNUSED.search(key)}
    final_weight, final_bias = tensors.pop("final.weight"), tensors.pop("final.bias")
    if final_weight.shape[0] != 1:
        raise MedSegError(f"{source.name}: {final_weight.shape[0]} output channels; the authors' TM-UNet has one")
    tensors["final.weight"] = torch.cat([torch.zeros_like(final_weight), final_weight])
    tensors["final.bias"] = torch.cat([torch.zeros_like(final_bias), final_bias])
    embed_dims = [int(tensors[f"encoders.{k}.conv.weight"].shape[0]) for k in range(3)] + [
        int(tensors["patch_embed3.proj.weight"].shape[0]), int(tensors["patch_embed4.proj.weight"].shape[0])]
    presets = get_network_spec("tm_unet").presets
    preset = next((key for key, args in presets.items() if args["embed_dims"] == embed_dims), None)
    args = {"pooling": "tokens_channels", **({} if preset else {"embed_dims": embed_dims})}
    card = ModelCard(
        name=name or f"TM-UNet{' ' + preset if preset else ''} from {source.name}", spatial_dims=2,
        in_channels=int(tensors["encoders.0.conv.weight"].shape[1]), network=NetworkInfo("tm_unet", preset, args),
        labels=placeholder_labels(2), modality="RGB", normalization=Normalization(kind="imagenet"), spacing=None,
        patch_size=[size, size], size_divisor=32,
        description="TM-UNet weights trained with the authors' code (binary: one structure), imported as published.",
        training={"source": f"TM-UNet authors' state dict {source.name}",
                  "import_notes": [f"dropped {len(dropped)} tensors of the never-called dwconv_1 "
                                   f"(e.g. {dropped[0]})" if dropped else "no dwconv_1 tensors to drop"]},
    )
    return save_whole_network(card, tensors, source, output)


def rename(key: str) -> str:
    return apply_renames(key, RENAMES)


__all__ = ["import_tm_unet", "rename"]
