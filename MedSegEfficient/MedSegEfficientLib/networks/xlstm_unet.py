"""xLSTM-UNet (arXiv 2407.01530): an nnU-Net-style residual U-Net with Vision-LSTM blocks, 2D and 3D.

``bot`` puts one ViL block at the bottleneck; ``enc`` puts ViL blocks after encoder stages (networks.md section 2).
The topology comes from a plan (widths, kernels, strides, blocks per stage); ``default_plan`` gives nnU-Net's
usual one. Where a stage has no more voxels than channels, its ViL block reads the channels as the sequence
("channel tokens"), which fixes the input size: such plans need ``patch_size``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .blocks import conv_class, instance_norm_class
from .registry import NetworkSpec, register_network
from .vil import ViLBlock


class ResidualBlock(nn.Module):
    """conv-norm-act-conv-norm plus a (projected) shortcut, then act: nnU-Net's residual encoder block."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        conv, norm = conv_class(dims), instance_norm_class(dims)
        self.conv1 = conv(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)
        self.norm1 = norm(out_channels, eps=1e-5, affine=True)
        self.conv2 = conv(out_channels, out_channels, kernel, padding=kernel // 2)
        self.norm2 = norm(out_channels, eps=1e-5, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else conv(in_channels, out_channels, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(y + self.shortcut(x))


class ViLOnGrid(nn.Module):
    """One forward-scan ViL block over a feature map's voxels (or, in channel-token mode, its channels)."""

    def __init__(self, channels: int, voxels: int | None = None) -> None:
        super().__init__()
        self.channel_tokens = voxels is not None and voxels <= channels
        self.block = ViLBlock(voxels if self.channel_tokens else channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2)  # (B, C, N)
        if self.channel_tokens:
            return self.block(tokens).reshape(x.shape)
        return self.block(tokens.transpose(1, 2)).transpose(1, 2).reshape(x.shape)


def default_plan(spatial_dims: int) -> dict:
    """nnU-Net's default topology: 8 stages up to 512 wide in 2D, 6 stages up to 320 in 3D."""
    stages, widest = (8, 512) if spatial_dims == 2 else (6, 320)
    return {
        "features": [min(32 * 2 ** s, widest) for s in range(stages)],
        "kernels": [3] * stages,
        "strides": [1] + [2] * (stages - 1),
        # Deeper stages get one block, as in the authors' plans.
        "blocks": [2 if s < stages // 2 else 1 for s in range(stages)],
    }


class XLSTMUNet(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, variant: str = "bot",
                 plan: dict | None = None, patch_size: Sequence[int] | None = None,
                 deep_supervision: bool = False) -> None:
        super().__init__()
        if variant not in ("bot", "enc"):
            raise ValueError(f"variant must be 'bot' or 'enc', not {variant!r}")
        plan = plan or default_plan(spatial_dims)
        features, kernels, strides, blocks = plan["features"], plan["kernels"], plan["strides"], plan["blocks"]
        stages = len(features)
        self.size_divisor = math.prod(strides)
        self.deep_supervision = deep_supervision
        voxels = _voxels_per_stage(patch_size, strides)
        self.stem = ResidualBlock(spatial_dims, in_channels, features[0], kernels[0])
        self.encoder = nn.ModuleList()
        previous = features[0]
        for s in range(stages):
            units = [ResidualBlock(spatial_dims, previous, features[s], kernels[s], strides[s])]
            units += [ResidualBlock(spatial_dims, features[s], features[s], kernels[s]) for _ in range(blocks[s] - 1)]
            if variant == "enc" and _has_vil(s, stages, spatial_dims):
                units.append(ViLOnGrid(features[s], voxels[s] if voxels else None))
            self.encoder.append(nn.Sequential(*units))
            previous = features[s]
        self.bottleneck = ViLOnGrid(features[-1], voxels[-1] if voxels else None) if variant == "bot" else nn.Identity()
        conv = conv_class(spatial_dims)
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        for s in range(stages - 1, 0, -1):
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=strides[s], mode="nearest"),
                                               conv(features[s], features[s - 1], 1)))
            self.decoder.append(ResidualBlock(spatial_dims, 2 * features[s - 1], features[s - 1], kernels[s - 1]))
            self.heads.append(conv(features[s - 1], out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.bottleneck(x)
        outputs = []
        for upsample, stage, head, skip in zip(self.upsample, self.decoder, self.heads, reversed(skips[:-1])):
            x = stage(torch.cat([upsample(x), skip], dim=1))
            outputs.append(head(x))
        return outputs[::-1] if self.deep_supervision and self.training else outputs[-1]


def _has_vil(stage: int, stages: int, dims: int) -> bool:
    if dims == 3:
        return stage >= 3
    return stage > 1 and ((stage % 2 == 1) != (stages % 2 == 1))


def _voxels_per_stage(patch_size: Sequence[int] | None, strides: Sequence[int]) -> list[int] | None:
    if patch_size is None:
        return None
    voxels, size = [], list(patch_size)
    for stride in strides:
        size = [max(1, s // stride) for s in size]
        voxels.append(math.prod(size))
    return voxels


register_network(NetworkSpec(
    name="xlstm_unet", builder=XLSTMUNet, spatial_dims=(2, 3), default_preset="bot_3d",
    description="xLSTM-UNet: residual U-Net with Vision-LSTM blocks (bot: bottleneck; enc: encoder), 2D and 3D",
    presets={"bot_2d": {"variant": "bot"}, "enc_2d": {"variant": "enc"},
             "bot_3d": {"variant": "bot"}, "enc_3d": {"variant": "enc"}},
    preset_dims={"bot_2d": 2, "enc_2d": 2, "bot_3d": 3, "enc_3d": 3},
))
