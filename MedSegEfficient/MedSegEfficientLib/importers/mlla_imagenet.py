"""Import MLLA ImageNet backbone weights (LeapLabTHU/MLLA: a dict with a ``model`` entry) into MLLA-UNet's encoder.

Their names are ours: ``patch_embed.*``, ``layers.<s>.blocks.<b>.*``, ``layers.<s>.downsample.*``, ``norm.*``.
Dropped: the classifier ``head.*``, and each block's ``attn.rope.rotations`` buffer, which we compute for the
grid at hand (the stored one is checked against ours first). The decoder stays at its initialisation; the model
is meant for ``medseg train --init MODEL``.
"""

from __future__ import annotations

from pathlib import Path

from MedSegEfficientLib.model.card import ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.importers.backbone import import_backbone, placeholder_labels, read_backbone

ENCODER = ("patch_embed.", "layers.", "norm.")


def import_mlla_imagenet(source: str | Path, output: str | Path, classes: int = 2, name: str | None = None) -> Path:
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
    return import_backbone(source, output, card, tensors,
                           lambda key: None if key.startswith("head.") else key, ENCODER)
