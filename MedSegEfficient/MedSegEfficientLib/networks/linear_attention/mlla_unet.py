"""MLLA-UNet (arXiv 2410.23738): a U-Net of Mamba-like linear-attention blocks, 2D, multi-class
(docs/networks.md section 5).

Stem (two stride-2 convolutions, /4), four encoder stages of MLLA blocks with the EDSM downsampler between them,
a symmetric decoder of MLLA blocks with skips (concatenate, then a linear map back to the width) and the EUSM
upsampler, and a final x4 expansion by pixel shuffle. Encoder names follow the MLLA ImageNet backbone so its
weights import (``importers/mlla_imagenet.py``). Tokens are (B, H*W, C); the attention's RoPE is computed for
the grid at hand, so any input size divisible by 32 runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from MedSegEfficientLib.networks.linear_attention.attention import LinearAttention
from MedSegEfficientLib.networks.linear_attention.mlla_fused import block_path, fused_head, head_applies
from MedSegEfficientLib.networks.linear_attention.mlla_samplers_fused import fused_downsample, fused_stem, fused_upsample, inference_half_dtype
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network
from MedSegEfficientLib.networks.linear_attention.token_layout import LayerNorm, depthwise_tokens
from MedSegEfficientLib.networks.linear_attention.token_layout import grid as _grid
from MedSegEfficientLib.networks.linear_attention.token_layout import tokens as _tokens

FINAL_HEAD_CHUNK = 8  # images per pass through the full-resolution head: bounds its largest buffers


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a sample's residual branch with probability ``rate``."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.rate)
        return x * keep / (1 - self.rate)


class ConvBatchNormAct(nn.Module):
    """Convolution, optional batch norm, optional ReLU: the unit of the authors' stem and samplers."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, bias: bool = True,
                 norm: bool = True, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x) if self.norm is not None else x
        return self.act(x) if self.act is not None else x


class Stem(nn.Module):
    """/4: conv s2, a residual pair of convs, conv s2 to 4x the width, 1x1 down to the embedding."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.conv1 = ConvBatchNormAct(in_channels, half, 3, 2, bias=False)
        self.conv2 = nn.Sequential(ConvBatchNormAct(half, half, 3, bias=False), ConvBatchNormAct(half, half, 3, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvBatchNormAct(half, 4 * dim, 3, 2, bias=False), ConvBatchNormAct(4 * dim, dim, 1, bias=False, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = inference_half_dtype(self, x)
        if half is not None:  # CUDA inference: batch norms folded, fused epilogues (mlla_samplers_fused.py)
            return fused_stem(self, x, half)
        x = self.conv1(x)
        return self.conv3(self.conv2(x) + x)


class MLLABlock(nn.Module):
    """Conv position code, then x + out(LinAttn(SiLU(dwconv(in(LN x)))) * SiLU(act(LN x))), conv position code,
    then x + MLP(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 value_bottleneck: int | None = None) -> None:
        super().__init__()
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = LayerNorm(dim)
        self.in_proj, self.act_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn = LinearAttention(dim, heads, value_bottleneck=value_bottleneck)
        self.out_proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        fast_path = block_path(self, x)
        if fast_path is not None:  # half-precision CUDA inference: the same maths in fused kernels
            return fast_path(self, x, height, width)
        x = depthwise_tokens(self.cpe1, x, height, width, residual=x)
        normed = self.norm1(x)
        gate = F.silu(self.act_proj(normed))
        y = depthwise_tokens(self.dwc, self.in_proj(normed), height, width, silu=True)
        x = x + self.drop_path(self.out_proj(self.attn(y, height, width) * gate))
        x = depthwise_tokens(self.cpe2, x, height, width, residual=x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Downsample(nn.Module):
    """EDSM: 1x1 to 8C, depthwise 3x3 stride 2, 1x1 to 2C with batch norm."""

    def __init__(self, dim: int, ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(2 * dim * ratio)
        self.conv = nn.Sequential(ConvBatchNormAct(dim, hidden, 1, norm=False), ConvBatchNormAct(hidden, hidden, 3, 2, groups=hidden, norm=False),
                                  ConvBatchNormAct(hidden, 2 * dim, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if inference_half_dtype(self, x) == x.dtype:  # CUDA inference in half precision: fused
            return fused_downsample(self, x)
        return self.conv(x)


class Upsample(nn.Module):
    """EUSM: 1x1 to 4C with ReLU, depthwise transposed 3x3 stride 2 (no activation, as the authors' PatchExpand),
    1x1 to C/2 with batch norm, then layer norm. ``relu_after_up``: a ReLU after the transposed convolution, which
    this project's first MLLA-UNet had (the shipped demo model was trained so; its card asks for it)."""

    def __init__(self, dim: int, relu_after_up: bool = False) -> None:
        super().__init__()
        self.relu_after_up = relu_after_up
        self.expand = ConvBatchNormAct(dim, 4 * dim, 1, norm=False)
        self.up = nn.ConvTranspose2d(4 * dim, 4 * dim, 3, stride=2, padding=1, output_padding=1, groups=4 * dim, bias=False)
        self.reduce = ConvBatchNormAct(4 * dim, dim // 2, 1, act=False)
        self.norm = LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # grid in, grid out
        if inference_half_dtype(self, x) == x.dtype:  # CUDA inference in half precision: fused
            return fused_upsample(self, x)
        x = self.up(self.expand(x))
        x = self.reduce(F.relu(x) if self.relu_after_up else x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, drop_paths: list[float], downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MLLABlock(dim, heads, drop_path=rate) for rate in drop_paths[:depth])
        self.downsample = Downsample(dim) if downsample else None


class MLLAUNet(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, dim: int = 64,
                 depths: tuple[int, ...] = (2, 4, 8, 4), decoder_depths: tuple[int, ...] = (2, 2, 2),
                 heads: tuple[int, ...] = (2, 4, 8, 16), drop_path_rate: float = 0.2,
                 upsample_relu: bool = False) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("MLLA-UNet is 2D")
        stages = len(depths)
        self.size_divisor = 4 * 2 ** (stages - 1)  # the stem quarters, then each stage but the last halves
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        widths = [dim * 2 ** s for s in range(stages)]
        self.patch_embed = Stem(in_channels, dim)
        self.layers = nn.ModuleList(Stage(widths[s], depths[s], heads[s], rates[sum(depths[:s]):], s < stages - 1)
                                    for s in range(stages))
        self.norm = LayerNorm(widths[-1])
        self.expand_bottom = Upsample(widths[-1], upsample_relu)
        self.concat_back_dim = nn.ModuleList(nn.Linear(2 * widths[s], widths[s]) for s in range(stages - 2, -1, -1))
        self.layers_up = nn.ModuleList()
        for index, s in enumerate(range(stages - 2, -1, -1)):
            self.layers_up.append(Stage(widths[s], decoder_depths[index], heads[s], [0.0] * decoder_depths[index], False))
            self.layers_up[-1].upsample = Upsample(widths[s], upsample_relu) if s > 0 else None
        self.norm_up = LayerNorm(dim)
        self.final_expand = nn.Linear(dim, 16 * dim, bias=False)
        self.final_norm = LayerNorm(dim)
        self.output = nn.Conv2d(dim, out_channels, 1, bias=False)

        # Maps stay channels-last throughout, so token <-> map switches are views (token_layout.py); parameters
        # loaded later are copied into these tensors and keep their layout.
        self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        grid, skips = self.encode(image.contiguous(memory_format=torch.channels_last))
        return self.head(self.decode(grid, skips))

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        grid = self.patch_embed(image)
        skips = []
        for stage in self.layers:
            skips.append(grid)
            height, width = grid.shape[2:]
            tokens = _tokens(grid)
            for block in stage.blocks:
                tokens = block(tokens, height, width)
            grid = _grid(tokens, height, width)
            if stage.downsample is not None:
                grid = stage.downsample(grid)
        return _grid(self.norm(_tokens(grid)), *grid.shape[2:]), skips

    def decode(self, grid: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """The bottom map and the encoder's skips to the 1/4-resolution map of width ``dim``."""
        grid = self.expand_bottom(grid)
        for stage, merge, skip in zip(self.layers_up, self.concat_back_dim, reversed(skips[:-1])):
            height, width = skip.shape[2:]
            tokens = merge(torch.cat([_tokens(grid), _tokens(skip)], dim=-1))
            for block in stage.blocks:
                tokens = block(tokens, height, width)
            grid = _grid(tokens, height, width)
            if stage.upsample is not None:
                grid = stage.upsample(grid)
        return grid

    def head(self, grid: torch.Tensor) -> torch.Tensor:
        """x4 expansion: linear to 16 x dim, rows (p1, p2, c) as the authors' FinalPatchExpand_X4 stores them
        (sub-pixel p1 * 4 + p2 first, then the channel), layer norm, 1x1 to the classes.

        The same maths without the full-resolution dim-wide map: each token's 16 sub-pixels come out of the product
        as 16 contiguous dim-vectors, normalised and projected to the classes there; only the class scores are
        shuffled into place. Images pass in chunks to bound the buffers.
        """
        batch, dim, height, width = grid.shape
        if head_applies(self, _tokens(grid)):  # half-precision CUDA inference: one fused kernel
            return fused_head(self, _tokens(grid), height, width)
        classes = self.output.out_channels
        expand = self.final_expand.weight  # row s * dim + c: channel c of sub-pixel s
        project = self.output.weight.flatten(1)  # (classes, dim)
        normed_tokens = self.norm_up(_tokens(grid))
        chunks = []
        for start in range(0, batch, FINAL_HEAD_CHUNK):
            sub_pixels = F.linear(normed_tokens[start:start + FINAL_HEAD_CHUNK], expand).unflatten(-1, (16, dim))
            scores = F.linear(self.final_norm(sub_pixels), project)  # (b, N, 16, classes)
            chunks.append(scores.unflatten(1, (height, width)).unflatten(3, (4, 4))  # (b, H, W, 4, 4, K)
                          .permute(0, 5, 1, 3, 2, 4).reshape(-1, classes, 4 * height, 4 * width))
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


register_network(NetworkSpec(
    name="mlla_unet", builder=MLLAUNet, spatial_dims=(2,), default_preset="t",
    description="MLLA-UNet: U-Net of Mamba-like linear-attention blocks (2D, multi-class)",
    presets={"t": {"dim": 64, "depths": [2, 4, 8, 4], "heads": [2, 4, 8, 16]},
             "s": {"dim": 32, "depths": [2, 2, 4, 1], "heads": [1, 2, 4, 8]}},  # 3.6 M: small enough to ship
    preset_dims={"t": 2, "s": 2},
))
