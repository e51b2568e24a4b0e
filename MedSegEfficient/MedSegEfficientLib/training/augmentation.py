"""Training augmentation from MONAI: foreground-biased crops, small affine changes, intensity jitter.

No flips by default: many labels are sided (left and right kidney), and a flip would teach the network to swap
them. ``strong`` (distillation, and models meant for many scanners) adds a bias field, a lower resolution, wider
contrast and noise, larger rotations, and flips where no label is sided.
A random slab keeps only a few slices of a 3D crop (the rest filled with air), so that a model trained on
whole-body scans also works on partial acquisitions of a few centimetres.
"""

from __future__ import annotations

import math

import numpy as np


def randomizable_base():
    """MONAI's Randomizable, imported only when a transform is built (MONAI loads slowly)."""
    from monai.transforms import Randomizable

    return Randomizable


class RandSlabd(randomizable_base()):
    """With probability ``prob``, keep a random run of 4..all slices along array axis 1 (z) of a
    channel-first crop; fill the rest of the image with ``pad_value`` and of the labels with background."""

    def __init__(self, prob: float, pad_value: float, min_slices: int = 4) -> None:
        # Randomizable gives ``self.R``, which MONAI's DataLoader reseeds in every worker process.
        self.prob, self.pad_value, self.min_slices = prob, pad_value, min_slices

    def randomize(self, data=None) -> None:  # required by Randomizable; draws happen in __call__
        pass

    def __call__(self, data: dict) -> dict:
        depth = data["image"].shape[1]
        if depth <= self.min_slices or self.R.random_sample() >= self.prob:
            return data
        thickness = int(self.R.randint(self.min_slices, depth))
        start = int(self.R.randint(0, depth - thickness + 1))
        outside = np.ones(depth, bool)
        outside[start:start + thickness] = False
        data = dict(data)
        for key, fill in (("image", self.pad_value), ("label", 0), ("soft", 0.0)):  # soft: foreground probabilities
            if key in data:
                data[key] = data[key].clone() if hasattr(data[key], "clone") else data[key].copy()
                data[key][:, outside] = fill
        return data


def training_transforms(spatial_dims: int, patch_size: list[int], pad_value: float = 0.0, soft: bool = False,
                        strong: bool = False, flips: bool = False, enhancement=None):
    """``soft``: items carry ``soft`` foreground probabilities, moved with the image (linear) and padded with 0.
    ``enhancement``: a transform applied to each crop before it moves (contrast_enhancement.py), or None."""
    from monai import transforms as T

    keys = ["image", "label"] + (["soft"] if soft else [])
    zero_padded = keys[1:]
    modes = ("bilinear", "nearest") + (("bilinear",) if soft else ())
    if spatial_dims == 3:
        crop_size, squeeze = list(patch_size), []
    else:  # 2D: crop one slice (array axis 1 is z) and drop that axis
        crop_size, squeeze = [1, *patch_size], [T.SqueezeDimd(keys, dim=1)]
    angle = math.radians(30 if strong else 15)
    rotations = 3 if spatial_dims == 3 else 1
    return T.Compose([
        T.SpatialPadd("image", spatial_size=crop_size, mode="constant", value=pad_value),
        T.SpatialPadd(zero_padded, spatial_size=crop_size, mode="constant"),
        T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=crop_size, pos=2, neg=1, num_samples=1,
                                 allow_smaller=True),
        *squeeze,
        *([enhancement] if enhancement is not None else []),
        *([RandSlabd(prob=0.35, pad_value=pad_value)] if spatial_dims == 3 else []),
        *([T.RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(spatial_dims)] if flips else []),
        T.RandAffined(keys, prob=0.5 if strong else 0.3, rotate_range=[angle] * rotations,
                      scale_range=[0.25 if strong else 0.2] * spatial_dims, mode=modes, padding_mode="border"),
        *(_strong_intensity() if strong else []),
        T.RandGaussianNoised("image", prob=0.15, std=0.1),
        T.RandScaleIntensityd("image", factors=0.1, prob=0.3),
        T.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
        T.RandAdjustContrastd("image", prob=0.2, gamma=(0.75, 1.5)),
        T.ToTensord(keys, track_meta=False),
    ])


def _strong_intensity() -> list:
    """What differs between scanners and protocols: coil bias, slice thickness, contrast, noise and blur."""
    from monai import transforms as T

    return [
        T.RandBiasFieldd("image", prob=0.3, coeff_range=(0.1, 0.4)),
        T.RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.4, 1.0)),
        T.RandGaussianSmoothd("image", prob=0.15, sigma_x=(0.5, 1.2), sigma_y=(0.5, 1.2), sigma_z=(0.5, 1.2)),
        T.RandAdjustContrastd("image", prob=0.3, gamma=(0.5, 2.0)),
        T.RandGaussianNoised("image", prob=0.2, std=0.2),
    ]
