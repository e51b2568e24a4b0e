"""Training augmentation from MONAI: foreground-biased crops, small affine changes, intensity jitter.

No flips: many labels are sided (left and right kidney), and a flip would teach the network to swap them.
"""

from __future__ import annotations

import math


def training_transforms(spatial_dims: int, patch_size: list[int], pad_value: float = 0.0):
    from monai import transforms as T

    keys = ["image", "label"]
    if spatial_dims == 3:
        crop_size, squeeze = list(patch_size), []
    else:  # 2D: crop one slice (array axis 1 is z) and drop that axis
        crop_size, squeeze = [1, *patch_size], [T.SqueezeDimd(keys, dim=1)]
    angle = math.radians(15)
    return T.Compose([
        T.SpatialPadd("image", spatial_size=crop_size, mode="constant", value=pad_value),
        T.SpatialPadd("label", spatial_size=crop_size, mode="constant"),
        T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=crop_size, pos=2, neg=1, num_samples=1,
                                 allow_smaller=True),
        *squeeze,
        T.RandAffined(keys, prob=0.3, rotate_range=[angle] * (3 if spatial_dims == 3 else 1),
                      scale_range=[0.15] * spatial_dims, mode=("bilinear", "nearest"), padding_mode="border"),
        T.RandGaussianNoised("image", prob=0.15, std=0.1),
        T.RandScaleIntensityd("image", factors=0.1, prob=0.3),
        T.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
        T.RandAdjustContrastd("image", prob=0.2, gamma=(0.75, 1.5)),
        T.ToTensord(keys, track_meta=False),
    ])
