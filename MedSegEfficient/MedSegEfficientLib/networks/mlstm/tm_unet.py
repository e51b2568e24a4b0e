"""TM-UNet (arXiv 2511.12270): a UNeXt-style 2D U-Net whose token stages are multi-scale token-memory blocks.

Three convolutional stages, two tokenised stages with MSTM blocks, a mirrored decoder with additive skips
(docs/networks.md section 1). Decision (section 8): the multi-scale pooling runs over the H x W grid, as the paper
describes (``pooling="grid"``, the default for new training); the authors' code pools over token index x channel
(an AvgPool2d on the (B, N, C) tokens), which ``pooling="tokens_channels"`` reproduces exactly, so that weights
trained with their code (``medseg import tm-unet``) give their outputs.
The mLSTM inside runs in its linear chunkwise form, so the cost stays linear in the number of pixels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from MedSegEfficientLib.networks.registry import NetworkSpec, register_network
from MedSegEfficientLib.networks.mlstm.vil import ViLLayer


class ConvBatchNorm(nn.Module):
    """3x3 convolution then batch norm (the activation and resampling differ per stage, so they stay outside)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthwiseConvBN(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.dwconv(x)))


POOLINGS = ("grid", "tokens_channels")


class MultiScalePooling(nn.Module):
    """PoolFormer-style token mixing at three scales: sum of AvgPool_k(x) - x, over the H x W grid of a
    (B, C, H, W) map, or over the (token, channel) plane of (B, N, C) tokens as the authors' code does."""

    def __init__(self, sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False) for k in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(pool(x) - x for pool in self.pools)


class TokenMemoryLayer(nn.Module):
    """A forward-scan ViL layer, depthwise conv, a backward-scan ViL layer, depthwise conv."""

    def __init__(self, dim: int, backend: str = "auto") -> None:
        super().__init__()
        self.forward_scan = ViLLayer(dim, expansion=1, backend=backend)
        self.backward_scan = ViLLayer(dim, expansion=1, reverse=True, backend=backend)
        self.mix_after_forward = DepthwiseConvBN(dim)
        self.mix_after_backward = DepthwiseConvBN(dim)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        tokens = _grid_op(self.mix_after_forward, self.forward_scan(tokens), height, width)
        return _grid_op(self.mix_after_backward, self.backward_scan(tokens), height, width)


class MSTMBlock(nn.Module):
    """x + pooling(LN(x)) on the grid, then x + token memory(LN(x)); no channel MLP."""

    def __init__(self, dim: int, backend: str = "auto", pooling: str = "grid") -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pooling = MultiScalePooling()
        self.pool_tokens = pooling == "tokens_channels"
        self.layer = TokenMemoryLayer(dim, backend)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        normed = self.norm1(tokens)
        pooled = self.pooling(normed) if self.pool_tokens else _grid_op(self.pooling, normed, height, width)
        tokens = tokens + pooled
        return tokens + self.layer(self.norm2(tokens), height, width)


class TokenStage(nn.Module):
    """An MSTM block on a (B, C, H, W) map, as tokens in row-major order, then a layer norm."""

    def __init__(self, dim: int, backend: str, pooling: str = "grid") -> None:
        super().__init__()
        self.block = MSTMBlock(dim, backend, pooling)
        self.norm = nn.LayerNorm(dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        height, width = grid.shape[2:]
        tokens = grid.flatten(2).transpose(1, 2)
        tokens = self.norm(self.block(tokens, height, width))
        return tokens.transpose(1, 2).reshape(grid.shape)


class PatchEmbedding(nn.Module):
    """Overlapping 3x3 stride-2 patches, then a layer norm over channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TMUNet(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 embed_dims: list[int], backend: str = "auto", pooling: str = "grid") -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("TM-UNet is a 2D network")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        c0, c1, c2, c3, c4 = embed_dims
        self.encoders = nn.ModuleList([ConvBatchNorm(in_channels, c0), ConvBatchNorm(c0, c1), ConvBatchNorm(c1, c2)])
        self.patch_embed3, self.patch_embed4 = PatchEmbedding(c2, c3), PatchEmbedding(c3, c4)
        self.stage3, self.stage4 = TokenStage(c3, backend, pooling), TokenStage(c4, backend, pooling)
        self.decoder1, self.decoder2 = ConvBatchNorm(c4, c3), ConvBatchNorm(c3, c2)
        self.decoder_stage3, self.decoder_stage2 = TokenStage(c3, backend, pooling), TokenStage(c2, backend, pooling)
        self.decoder3, self.decoder4 = ConvBatchNorm(c2, c1), ConvBatchNorm(c1, c0)
        self.decoder5 = nn.Conv2d(c0, c0 // 2, 3, padding=1)
        self.final = nn.Conv2d(c0 // 2, out_channels, 1)
        self.size_divisor = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = F.relu(F.max_pool2d(encoder(x), 2))
            skips.append(x)  # C0 @ H/2, C1 @ H/4, C2 @ H/8
        x = self.stage3(self.patch_embed3(x))
        skips.append(x)  # C3 @ H/16
        x = self.stage4(self.patch_embed4(x))  # bottleneck, C4 @ H/32
        x = self.decoder_stage3(_up(self.decoder1(x)) + skips[3])
        x = self.decoder_stage2(_up(self.decoder2(x)) + skips[2])
        x = _up(self.decoder3(x)) + skips[1]
        x = _up(self.decoder4(x)) + skips[0]
        return self.final(_up(self.decoder5(x)))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.relu(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


def _grid_op(module: nn.Module, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Apply a (B, C, H, W) module to (B, H*W, C) tokens."""
    grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
    return module(grid).flatten(2).transpose(1, 2)


register_network(NetworkSpec(
    name="tm_unet", builder=TMUNet, spatial_dims=(2,), default_preset="t",
    description="TM-UNet: multi-scale token memory (mLSTM) U-Net, 2D (input sides divisible by 32)",
    presets={
        "t": {"embed_dims": [8, 16, 32, 64, 128]},
        "s": {"embed_dims": [16, 32, 64, 128, 256]},
        "b": {"embed_dims": [32, 64, 128, 256, 512]},
    },
))
