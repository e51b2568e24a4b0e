"""Import HRMedSeg's feature-distilled encoder and neck (``SAM_PFD_10K.pth``: ``image_encoder.*``, ``neck.*``,
maybe under ``module.``) into an HRMedSeg model file.

Mapping, theirs -> ours: ``image_encoder.patch_embed.proj.`` -> ``image_encoder.patch_embed.``;
``image_encoder.layers.0.blocks.<i>.conv<k>.{c,bn}.`` -> ``image_encoder.convs.<i>.conv<k>.{conv,norm}.``;
``image_encoder.layers.<s>.blocks.<i>.`` (s = 1..3) -> ``image_encoder.blocks.<n>.`` numbered through the
stages; ``neck.*`` unchanged. The persistent ``attn.rope.rotations`` buffers are checked against our RoPE and
dropped. The mask decoder stays at its initialisation: train with ``medseg train --init MODEL``.
"""

from __future__ import annotations

import re
from pathlib import Path

from MedSegEfficientLib.model.card import ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.backbone import apply_renames, import_backbone, placeholder_labels, read_backbone

ENCODER = ("image_encoder.", "neck.")
CONV_RULES = [(r"^image_encoder\.patch_embed\.proj\.", "image_encoder.patch_embed."),
              (r"^image_encoder\.layers\.0\.blocks\.(\d+)\.", r"image_encoder.convs.\1."),
              (r"\.c\.", ".conv."), (r"\.bn\.", ".norm.")]


def import_hrmedseg_pfd(source: str | Path, output: str | Path, classes: int = 2, name: str | None = None) -> Path:
    tensors = read_backbone(source)
    if not any(key.startswith("image_encoder.") for key in tensors):
        raise MedSegError(f"{Path(source).name} has no image_encoder.* tensors: not an HRMedSeg PFD checkpoint")
    depths = _attention_depths(tensors)
    offsets = [sum(depths[:s]) for s in range(len(depths))]

    def rename(key: str) -> str | None:
        if not key.startswith(ENCODER):
            return None  # a full PFD file may carry the teacher; only the student moves
        match = re.match(r"^image_encoder\.layers\.([1-9])\.blocks\.(\d+)\.(.+)$", key)
        if match:
            stage, block, rest = int(match[1]), int(match[2]), match[3]
            return f"image_encoder.blocks.{offsets[stage - 1] + block}.{rest}"
        return apply_renames(key, CONV_RULES)

    card = ModelCard(
        name=name or "HRMedSeg from the authors' distilled encoder (PFD)", spatial_dims=2, in_channels=3,
        network=NetworkInfo("hrmedseg", "default", {}), labels=placeholder_labels(classes), modality="RGB",
        description="LGViT encoder and neck distilled from SAM ViT-H by the HRMedSeg authors; decoder untrained: "
                    "train with medseg train --init.",
        normalization=Normalization(kind="imagenet"), spacing=None, patch_size=[1024, 1024],
        training={"source": f"HRMedSeg PFD weights {Path(source).name}"},
    )
    if depths != [2, 6, 2]:
        raise MedSegError(f"{Path(source).name}: attention stages of {depths} blocks; HRMedSeg has [2, 6, 2]")
    return import_backbone(source, output, card, tensors, rename, ENCODER)


def _attention_depths(tensors) -> list[int]:
    depths = []
    for stage in (1, 2, 3):
        blocks = {int(k.split(".")[4]) for k in tensors if k.startswith(f"image_encoder.layers.{stage}.blocks.")}
        depths.append(max(blocks) + 1 if blocks else 0)
    return depths
