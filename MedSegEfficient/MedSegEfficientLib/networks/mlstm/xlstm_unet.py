"""xLSTM-UNet (arXiv 2407.01530): an nnU-Net-style residual U-Net with Vision-LSTM blocks, 2D and 3D.

``bot`` puts one ViL block at the bottleneck; ``enc`` puts ViL blocks after encoder stages (docs/networks.md section 2).
The topology comes from a plan (widths, kernels, strides, blocks per encoder and decoder stage); ``default_plan``
gives nnU-Net's usual one with the authors' rule that deeper stages get a single block. The module layout
follows the authors' network block for block, so their released weights load by renaming keys alone
(``MedSegEfficientLib.importers.xlstm_unet_nnunet``). Where a stage has no more voxels than channels, its ViL
block reads the channels as the sequence ("channel tokens"), which fixes the input size: such plans need
``patch_size``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from MedSegEfficientLib.networks.blocks import conv_class, instance_norm_class
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network
from MedSegEfficientLib.networks.mlstm.vil import ViLBlock

Size = int | Sequence[int]


def _per_axis(value: Size, dims: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * dims


class ResidualBlock(nn.Module):
    """conv-norm-act-conv-norm plus a shortcut, then act. ``project``: the shortcut is a (strided) 1x1 conv
    even where shapes match, as in the first block of each of the authors' stages."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel: Size = 3, stride: Size = 1,
                 project: bool = False) -> None:
        super().__init__()
        conv, norm = conv_class(dims), instance_norm_class(dims)
        kernel, stride = _per_axis(kernel, dims), _per_axis(stride, dims)
        padding = tuple(k // 2 for k in kernel)
        self.conv1 = conv(in_channels, out_channels, kernel, stride=stride, padding=padding)
        self.norm1 = norm(out_channels, eps=1e-5, affine=True)
        self.conv2 = conv(out_channels, out_channels, kernel, padding=padding)
        self.norm2 = norm(out_channels, eps=1e-5, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        needs_projection = project or in_channels != out_channels or any(s != 1 for s in stride)
        self.shortcut = conv(in_channels, out_channels, 1, stride=stride) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(y + self.shortcut(x))


def residual_stage(dims: int, in_channels: int, out_channels: int, kernel: Size, stride: Size,
                   blocks: int) -> nn.Sequential:
    """A projecting block (carrying the stride) followed by ``blocks - 1`` plain residual blocks."""
    units = [ResidualBlock(dims, in_channels, out_channels, kernel, stride, project=True)]
    units += [ResidualBlock(dims, out_channels, out_channels, kernel) for _ in range(blocks - 1)]
    return nn.Sequential(*units)


class ViLOnGrid(nn.Module):
    """One forward-scan ViL block over a feature map's voxels (or, in channel-token mode, its channels)."""

    def __init__(self, channels: int, voxels: int | None = None) -> None:
        super().__init__()
        self.channel_tokens = voxels is not None and voxels <= channels
        width = voxels if self.channel_tokens else channels
        block = 4 if width % 4 == 0 else 2  # the authors fall back to blocks (and heads) of 2
        self.block = ViLBlock(width, heads=block, qkv_block=block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2)  # (B, C, N)
        if self.channel_tokens:
            return self.block(tokens).reshape(x.shape)
        return self.block(tokens.transpose(1, 2)).transpose(1, 2).reshape(x.shape)


def default_plan(spatial_dims: int) -> dict:
    """nnU-Net's default topology (8 stages up to 512 wide in 2D, 6 up to 320 in 3D, two convolutions per stage)
    after the authors' rule that the deeper half of the encoder and decoder gets one block."""
    stages, widest = (8, 512) if spatial_dims == 2 else (6, 320)
    encoder, decoder = single_blocks_in_deep_half([2] * stages, [2] * (stages - 1))
    return {"features": [min(32 * 2 ** s, widest) for s in range(stages)], "kernels": [3] * stages,
            "strides": [1] + [2] * (stages - 1), "blocks": encoder, "decoder_blocks": decoder}


def single_blocks_in_deep_half(encoder: Sequence[int], decoder: Sequence[int]) -> tuple[list[int], list[int]]:
    """The authors' override of an nnU-Net plan: encoder stages from ceil(n/2) on, and decoder stages (counted
    from the deepest) from ceil(n/2) on, get a single block."""
    stages = len(encoder)
    encoder = [1 if s >= math.ceil(stages / 2) else int(b) for s, b in enumerate(encoder)]
    decoder = [1 if s >= math.ceil((stages - 1) / 2 + 0.5) else int(b) for s, b in enumerate(decoder)]
    return encoder, decoder


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
        if not len(kernels) == len(strides) == len(blocks) == stages:
            raise ValueError("plan lists 'features', 'kernels', 'strides' and 'blocks' must have equal lengths")
        decoder_blocks = plan.get("decoder_blocks", [1] * (stages - 1))
        # The authors' 2D decoder has no skip into its last (full-resolution) stage; their 3D decoder has one.
        self.full_resolution_skip = bool(plan.get("full_resolution_skip", spatial_dims == 3))
        axis_strides = [_per_axis(s, spatial_dims) for s in strides]
        self.size_divisor = max(math.prod(column) for column in zip(*axis_strides))
        self.deep_supervision = deep_supervision
        voxels = _voxels_per_stage(patch_size, axis_strides)
        dims = spatial_dims
        self.stem = residual_stage(dims, in_channels, features[0], kernels[0], 1, blocks[0])
        self.encoder = nn.ModuleList()
        self.mixers = nn.ModuleList()
        previous = features[0]
        for s in range(stages):
            self.encoder.append(residual_stage(dims, previous, features[s], kernels[s], axis_strides[s], blocks[s]))
            self.mixers.append(self._mixer(variant, s, stages, dims, features[s], kernels[s], voxels))
            previous = features[s]
        # The authors' bottleneck block always reads voxels as tokens; channel tokens are the Enc variant's.
        self.bottleneck = ViLOnGrid(features[-1]) if variant == "bot" else nn.Identity()
        conv = conv_class(dims)
        self.upsample, self.decoder, self.heads = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for index, s in enumerate(range(stages - 1, 0, -1)):
            skip_width = features[s - 1]
            concatenates = s > 1 or self.full_resolution_skip
            self.upsample.append(nn.Sequential(
                nn.Upsample(scale_factor=tuple(float(f) for f in axis_strides[s]), mode="nearest"),
                conv(features[s], skip_width, 1)))
            self.decoder.append(residual_stage(dims, 2 * skip_width if concatenates else skip_width, skip_width,
                                               kernels[s - 1], 1, decoder_blocks[index]))
            self.heads.append(conv(skip_width, out_channels, 1))

    @staticmethod
    def _mixer(variant: str, stage: int, stages: int, dims: int, width: int, kernel: Size,
               voxels: list[int] | None) -> nn.Module:
        """What follows an encoder stage in the Enc variant: a ViL block, an extra residual block, or nothing."""
        if variant != "enc":
            return nn.Identity()
        if dims == 3:
            vil = stage >= 3
            extra_block = not vil
        else:
            vil = stage > 1 and ((stage % 2 == 1) != (stages % 2 == 1))  # the last stage always has one
            extra_block = stage == 1
        if vil:
            return ViLOnGrid(width, voxels[stage] if voxels else None)
        return ResidualBlock(dims, width, width, kernel) if extra_block else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for stage, mixer in zip(self.encoder, self.mixers):
            x = mixer(stage(x))
            skips.append(x)
        x = self.bottleneck(x)
        outputs = []
        last = len(self.decoder) - 1
        for index, (upsample, stage, head) in enumerate(zip(self.upsample, self.decoder, self.heads)):
            x = upsample(x)
            if index < last or self.full_resolution_skip:
                x = torch.cat([x, skips[-(index + 2)]], dim=1)
            x = stage(x)
            if self.deep_supervision and self.training or index == last:
                outputs.append(head(x))
        return outputs[::-1] if self.deep_supervision and self.training else outputs[-1]


def _voxels_per_stage(patch_size: Sequence[int] | None, strides: Sequence[Sequence[int]]) -> list[int] | None:
    if patch_size is None:
        return None
    voxels, size = [], list(patch_size)
    for stride in strides:
        size = [s // f for s, f in zip(size, stride)]
        voxels.append(math.prod(size))
    return voxels


register_network(NetworkSpec(
    name="xlstm_unet", builder=XLSTMUNet, spatial_dims=(2, 3), default_preset="bot_3d",
    description="xLSTM-UNet: residual U-Net with Vision-LSTM blocks (bot: bottleneck; enc: encoder), 2D and 3D",
    presets={"bot_2d": {"variant": "bot"}, "enc_2d": {"variant": "enc"},
             "bot_3d": {"variant": "bot"}, "enc_3d": {"variant": "enc"}},
    preset_dims={"bot_2d": 2, "enc_2d": 2, "bot_3d": 3, "enc_3d": 3},
))
