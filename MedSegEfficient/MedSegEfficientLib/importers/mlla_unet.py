"""Import a whole MLLA-UNet trained with the authors' code (csyfjiang/MLLA-UNet ``trainer.py``:
``torch.save(model.state_dict())`` of the ``MLLAUnet`` wrapper, keys under ``mlla_unet.``, maybe ``module.``).

Mapping, theirs -> ours (the encoder's names are ours already):

=================================================  ====================================================
``layers_up.0.`` (a bare PatchExpand)              ``expand_bottom.``
``layers_up.<k>.`` (k = 1..3)                      ``layers_up.<k-1>.``
``concat_back_dim.<k>.`` (k = 1..3; 0 is Identity)  ``concat_back_dim.<k-1>.``
PatchExpand ``conv.0.conv.`` / ``conv.1.`` / ``conv.2.``  ``expand.conv.`` / ``up.`` / ``reduce.``
``up.expand.`` / ``up.norm.``                      ``final_expand.`` (rows in their (p1, p2, c) order) / ``final_norm.``
=================================================  ====================================================

The ``attn.rope.rotations`` buffers are checked against our RoPE and dropped. Their wrapper repeats a grey image to
the three channels the network takes; for a grey model (``in_channels=1``, the default) the first convolution's
three input-channel weights are summed instead, which computes the same. The heads are not in the weights: the
default gives each head 32 channels, as their configurations do.
"""

from __future__ import annotations

from pathlib import Path

import torch

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.backbone import (apply_renames, check_rope_buffer, placeholder_labels,
                                                   save_whole_network)
from MedSegEfficientLib.model.card import ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.pth_import import load_state_dict_safely, strip_wrapper_prefix
from MedSegEfficientLib.networks import get_network_spec

EXPANDS = r"(expand_bottom|layers_up\.\d\.upsample)"
RENAMES = [
    (r"^layers_up\.0\.", "expand_bottom."),
    (r"^layers_up\.(\d)\.", lambda m: f"layers_up.{int(m[1]) - 1}."),
    (r"^concat_back_dim\.(\d)\.", lambda m: f"concat_back_dim.{int(m[1]) - 1}."),
    (rf"^{EXPANDS}\.conv\.0\.conv\.", r"\1.expand.conv."),
    (rf"^{EXPANDS}\.conv\.1\.", r"\1.up."),
    (rf"^{EXPANDS}\.conv\.2\.", r"\1.reduce."),
    (r"^up\.expand\.", "final_expand."), (r"^up\.norm\.", "final_norm."),
]
# Synapse CT as TransUNet preprocessed it, which the authors' data loaders read: HU clipped to [-125, 275], to [0, 1].
GREY_CT = Normalization(kind="ct", lower=-125.0, upper=275.0, mean=-125.0, std=400.0)
HEAD_WIDTH = 32


def import_mlla_unet(source: str | Path, output: str | Path, name: str | None = None, in_channels: int = 1,
                     size: int = 224) -> Path:
    source = Path(source)
    state = {}
    for key, value in load_state_dict_safely(source).items():
        key = strip_wrapper_prefix(key)
        if isinstance(value, torch.Tensor):
            state[key[len("mlla_unet."):] if key.startswith("mlla_unet.") else key] = value
    if "up.expand.weight" not in state or "layers_up.0.conv.0.conv.weight" not in state:
        raise MedSegError(f"{source.name} has no up.expand / layers_up.0 tensors: not a whole MLLA-UNet of the authors")
    tensors = {}
    for key, value in state.items():
        if key.endswith("rope.rotations"):
            check_rope_buffer(key, value)
            continue
        tensors[rename(key)] = value
    if in_channels not in (1, 3):
        raise MedSegError("--in-channels must be 1 (grey, repeated to three as their wrapper does) or 3")
    if in_channels == 1:
        stem = tensors["patch_embed.conv1.conv.weight"]
        tensors["patch_embed.conv1.conv.weight"] = stem.sum(dim=1, keepdim=True)
    dim = int(tensors["patch_embed.conv3.1.conv.weight"].shape[0])
    depths = _depths(tensors, "layers", range(4))
    decoder_depths = _depths(tensors, "layers_up", range(3))
    heads = [max(1, dim * 2 ** s // HEAD_WIDTH) for s in range(len(depths))]
    args = {"dim": dim, "depths": depths, "decoder_depths": decoder_depths, "heads": heads}
    preset = next((key for key, value in get_network_spec("mlla_unet").presets.items()
                   if value["dim"] == dim and list(value["depths"]) == depths and list(value["heads"]) == heads
                   and decoder_depths == [2, 2, 2]), None)
    classes = int(tensors["output.weight"].shape[0])
    card = ModelCard(
        name=name or f"MLLA-UNet from {source.name}", spatial_dims=2, in_channels=in_channels,
        network=NetworkInfo("mlla_unet", preset, {} if preset else args), labels=placeholder_labels(classes),
        modality="CT" if in_channels == 1 else "RGB",
        normalization=GREY_CT if in_channels == 1 else Normalization(kind="imagenet"),
        spacing=None, patch_size=[size, size], size_divisor=32,
        description="MLLA-UNet weights trained with the authors' code, imported as published; the labels are their "
                    "dataset's classes in its order (rename them in the card).",
        training={"source": f"MLLA-UNet authors' checkpoint {source.name}"},
    )
    return save_whole_network(card, tensors, source, output)


def rename(key: str) -> str:
    return apply_renames(key, RENAMES)


def _depths(tensors: dict[str, torch.Tensor], prefix: str, stages) -> list[int]:
    found = []
    for stage in stages:
        blocks = {int(key.split(".")[3]) for key in tensors if key.startswith(f"{prefix}.{stage}.blocks.")}
        found.append(max(blocks) + 1 if blocks else 0)
    return found


__all__ = ["import_mlla_unet", "rename"]
