"""Simulated intravenous contrast for CT training.

The one fully labelled abdominal CT the registries hold (TotalSegmentator's example_ct) is native: liver ~46 HU,
aorta ~41 HU. Most abdominal CT a user opens is contrast-enhanced (the held-out DICOM series: liver ~93 HU, aorta
~150 HU). This augmentation brightens each labelled structure by an amount drawn from the range that arterial and
portal-venous phases give it, with one shared phase strength per crop (organs enhance together) and a little
jitter per structure. The offset map is smoothed over 3 voxels so that no label edge becomes a hard step the
network could learn to look for. Structures that do not enhance (bone, cord, fat) are left as they are.
"""

from __future__ import annotations

import numpy as np

from MedSegEfficientLib.model.card import LabelInfo, Normalization
from MedSegEfficientLib.training.augmentation import randomizable_base

# Increase over native HU, lowest to highest phase (portal-venous to early arterial, published ranges); matched
# against a label's name as a word, so "left kidney" takes "kidney".
ENHANCEMENT_HU: dict[str, tuple[float, float]] = {
    "aorta": (80.0, 320.0),
    "artery": (80.0, 320.0),
    "heart": (60.0, 300.0),
    "inferior vena cava": (20.0, 150.0),
    "portal vein": (40.0, 160.0),
    "kidney": (60.0, 200.0),
    "spleen": (30.0, 110.0),
    "liver": (20.0, 80.0),
    "pancreas": (30.0, 100.0),
    "stomach": (0.0, 40.0),
    "adrenal": (20.0, 60.0),
}


def enhancement_ranges(labels: list[LabelInfo], normalization: Normalization) -> dict[int, tuple[float, float]]:
    """Label value -> offset range in the model's normalised units; empty where the model is not CT-normalised."""
    if normalization.kind != "ct" or not normalization.std:
        return {}
    ranges: dict[int, tuple[float, float]] = {}
    for label in labels:
        name = f" {label.name.lower()} "
        for structure, (low, high) in ENHANCEMENT_HU.items():
            if f" {structure} " in name:
                ranges[label.value] = (low / normalization.std, high / normalization.std)
                break
    return ranges


def normalised_ceiling(normalization: Normalization) -> float:
    """The brightest value the engine's CT normalisation can produce (it clips to ``upper`` first)."""
    return (normalization.upper - normalization.mean) / normalization.std


class RandContrastEnhancementd(randomizable_base()):
    """With probability ``prob``, add a simulated contrast phase to ``image`` where ``label`` names an enhancing
    structure. Channel-first arrays or tensors of any spatial rank; ``label`` holds class values."""

    def __init__(self, ranges: dict[int, tuple[float, float]], prob: float, ceiling: float,
                 jitter: float = 0.25) -> None:
        self.ranges, self.prob, self.ceiling, self.jitter = ranges, prob, ceiling, jitter

    def randomize(self, data=None) -> None:  # required by Randomizable; draws happen in __call__
        pass

    def __call__(self, data: dict) -> dict:
        if not self.ranges or self.R.random_sample() >= self.prob:
            return data
        import torch
        import torch.nn.functional as F

        strength = self.R.random_sample()  # 0: the weakest phase of every range, 1: the strongest
        values = np.asarray(data["label"])[0].astype(np.int64)
        lookup = np.zeros(max(max(self.ranges), int(values.max())) + 1, np.float32)
        for value, (low, high) in self.ranges.items():
            own = np.clip(strength + self.R.uniform(-self.jitter, self.jitter), 0.0, 1.0)
            lookup[value] = low + (high - low) * own
        offsets = lookup[values]
        if not offsets.any():
            return data
        pool = F.avg_pool3d if offsets.ndim == 3 else F.avg_pool2d  # a 3-voxel box: softens each edge by a voxel
        offsets = pool(torch.from_numpy(offsets)[None, None], 3, 1, 1, count_include_pad=False)[0].numpy()
        data = dict(data)
        image = data["image"]
        if isinstance(image, torch.Tensor):  # MONAI's MetaTensor: keep its type
            brighter = torch.as_tensor(offsets, dtype=image.dtype)
            data["image"] = torch.minimum(image + brighter, torch.clamp(image, min=self.ceiling))
        else:
            data["image"] = np.minimum(image + offsets, np.maximum(image, self.ceiling)).astype(image.dtype)
        return data
