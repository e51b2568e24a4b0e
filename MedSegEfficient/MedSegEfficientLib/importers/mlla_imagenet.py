"""Import MLLA ImageNet backbone weights (LeapLabTHU/MLLA: a dict with a ``model`` entry) into MLLA-UNet's encoder.

Their names are ours: ``patch_embed.*``, ``layers.<s>.blocks.<b>.*``, ``layers.<s>.downsample.*``, ``norm.*``.
Dropped: the classifier ``head.*``, and each block's ``attn.rope.rotations`` buffer, which we compute for the
grid at hand (the stored one is checked against ours first). The decoder starts from the encoder as the authors'
``MLLAUnet.load_from`` does (``decoder_from_encoder``; ``decoder_init="none"`` leaves it at its initial values).
The model is meant for ``medseg train --init MODEL``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.model.card import ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.importers.backbone import import_backbone, placeholder_labels, read_backbone

ENCODER = ("patch_embed.", "layers.", "norm.")


DECODER_INITS = ("encoder", "none")


def import_mlla_imagenet(source: str | Path, output: str | Path, classes: int = 2, name: str | None = None,
                         decoder_init: str = "encoder") -> Path:
    if decoder_init not in DECODER_INITS:
        raise MedSegError(f"--decoder-init must be one of {', '.join(DECODER_INITS)}, not {decoder_init!r}")
    tensors = read_backbone(source, wrapper="model")
    width = tensors.get("patch_embed.conv3.1.conv.weight")
    dim = int(width.shape[0]) if width is not None else 64
    depths = [1 + max(int(k.split(".")[3]) for k in tensors if k.startswith(f"layers.{s}.blocks."))
              for s in range(4) if any(k.startswith(f"layers.{s}.blocks.") for k in tensors)]
    heads = [max(1, dim * 2 ** s // 32) for s in range(len(depths))]  # head width 32, as MLLA-T
    card = ModelCard(
        name=name or f"MLLA-UNet from ImageNet MLLA (dim {dim}, depths {depths})",
        network=NetworkInfo("mlla_unet", "t", {"dim": dim, "depths": depths, "heads": heads}),
        spatial_dims=2, in_channels=3, labels=placeholder_labels(classes), modality="RGB",
        description="Encoder from ImageNet MLLA weights; decoder untrained: train with medseg train --init.",
        normalization=Normalization(kind="imagenet"), spacing=None, patch_size=[224, 224],
        training={"source": f"MLLA ImageNet backbone {Path(source).name}"},
    )
    card.description += "" if decoder_init == "none" else " The decoder stages start from the encoder's (load_from)."
    return import_backbone(source, output, card, tensors, lambda key: None if key.startswith("head.") else key,
                           ENCODER, decoder_from_encoder if decoder_init == "encoder" else None)


def decoder_from_encoder(loaded: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' ``load_from``: encoder stage i's tensors start their decoder stage ``layers_up.<3 - i>`` (our
    ``layers_up.<2 - i>``: their ``layers_up.0`` is our ``expand_bottom``), then a decoder tensor still unset takes
    the encoder tensor of their same index; each only where the shapes agree, as theirs checks."""
    derived: dict[str, torch.Tensor] = {}
    for key, tensor in loaded.items():
        match = re.match(r"^layers\.(\d+)\.(.+)$", key)
        if match and 3 - int(match[1]) >= 1:
            target = f"layers_up.{2 - int(match[1])}.{match[2]}"
            if target in own and own[target].shape == tensor.shape:
                derived[target] = tensor
    for key, wanted in own.items():
        match = re.match(r"^layers_up\.(\d+)\.(.+)$", key)
        if match and key not in derived:
            source = f"layers.{int(match[1]) + 1}.{match[2]}"
            if source in loaded and loaded[source].shape == wanted.shape:
                derived[key] = loaded[source]
    return derived
