"""``medseg_unet``: a residual U-Net in plain torch (2D or 3D), the network of the shipped demo models.

Encoder stages halve the grid with strided convolutions; the decoder doubles it with transposed convolutions
and merges the skip by concatenation. No MONAI import, so loading a model never pays MONAI's import time.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from MedSegEfficientLib.networks.blocks import ResidualStage, conv_class, transposed_conv_class
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network


class PlainResidualUNet(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 features: list[int], convs_per_stage: int = 2) -> None:
        super().__init__()
        self.encoder = nn.ModuleList()
        previous = in_channels
        for index, width in enumerate(features):
            self.encoder.append(ResidualStage(spatial_dims, previous, width, stride=1 if index == 0 else 2,
                                              convs=convs_per_stage))
            previous = width
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        up = transposed_conv_class(spatial_dims)
        for deeper, width in zip(features[:0:-1], features[-2::-1]):
            self.upsample.append(up(deeper, width, kernel_size=2, stride=2))
            self.decoder.append(ResidualStage(spatial_dims, 2 * width, width, convs=convs_per_stage))
        self.head = conv_class(spatial_dims)(features[0], out_channels, 1)
        self.size_divisor = 2 ** (len(features) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        for upsample, stage, skip in zip(self.upsample, self.decoder, reversed(skips[:-1])):
            x = stage(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)


register_network(NetworkSpec(
    name="medseg_unet", builder=PlainResidualUNet, spatial_dims=(2, 3), default_preset="small",
    description="residual U-Net in plain torch (fast to load; the demo models' network)",
    presets={
        "tiny": {"features": [8, 16, 32, 64]},
        "small": {"features": [12, 24, 48, 96, 112]},
        "default": {"features": [32, 64, 128, 256, 320]},
    },
))
