"""Small building blocks shared by the network families, for 2D and 3D alike."""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_class(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def transposed_conv_class(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]


def instance_norm_class(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims]


class ConvInstanceNormAct(nn.Sequential):
    """Convolution, instance norm with affine parameters, leaky ReLU: the nnU-Net unit."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            conv_class(spatial_dims)(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2),
            instance_norm_class(spatial_dims)(out_channels, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class ResidualStage(nn.Module):
    """``convs`` ConvInstanceNormAct units, the first with ``stride``, and a projected identity path around them."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1, convs: int = 2):
        super().__init__()
        units = [ConvInstanceNormAct(spatial_dims, in_channels, out_channels, stride=stride)]
        units += [ConvInstanceNormAct(spatial_dims, out_channels, out_channels) for _ in range(convs - 1)]
        self.body = nn.Sequential(*units)
        self.skip = (nn.Identity() if stride == 1 and in_channels == out_channels else
                     conv_class(spatial_dims)(in_channels, out_channels, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)
