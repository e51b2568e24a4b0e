"""A 3x3 depthwise convolution on (B, H*W, C) tokens with its bias, an optional SiLU and an optional residual
added, as one Triton kernel.

Why: MLLA-UNet runs four depthwise 3x3 convolutions per block (two position codes, the block's convolution and the
attention's LePE). On channels-last maps cuDNN adds their bias in a separate broadcast pass that torch does not
vectorise, and the residual sum and the SiLU are more passes: 20 % of MLLA-UNet-T's GPU time at 512^2
(benchmarks/profile_network.py). Here each output is read once per tap from cache and written once. Inference
only; imported only where Triton is installed (``token_layout.depthwise_tokens`` decides).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _depthwise3x3(x_ptr, weight_ptr, bias_ptr, residual_ptr, out_ptr, height, width, channels,
                  HAS_RESIDUAL: tl.constexpr, SILU: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    image_row = tl.program_id(0)
    image, row = image_row // height, image_row % height
    column = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[:, None]
    channel = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    channel_ok = channel < channels
    first = image.to(tl.int64) * height * width * channels
    total = tl.zeros([BLOCK_W, BLOCK_C], dtype=tl.float32)
    for dy in tl.static_range(3):
        source_row = row + dy - 1
        row_ok = (source_row >= 0) & (source_row < height)
        for dx in tl.static_range(3):
            source_column = column + dx - 1
            inside = row_ok & (source_column >= 0) & (source_column < width) & channel_ok
            position = (source_row * width + source_column).to(tl.int64)
            value = tl.load(x_ptr + first + position * channels + channel, mask=inside, other=0.0)
            tap = tl.load(weight_ptr + channel * 9 + dy * 3 + dx, mask=channel_ok, other=0.0)
            total += value.to(tl.float32) * tap.to(tl.float32)
    total += tl.load(bias_ptr + channel, mask=channel_ok, other=0.0).to(tl.float32)
    if SILU:
        total = total * tl.sigmoid(total)
    offsets = first + (row * width + column).to(tl.int64) * channels + channel
    written = (column < width) & channel_ok
    if HAS_RESIDUAL:
        total += tl.load(residual_ptr + offsets, mask=written, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=written)


def depthwise3x3_tokens(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, height: int, width: int,
                        residual: torch.Tensor | None = None, silu: bool = False) -> torch.Tensor:
    """act(depthwise3x3(x) + bias) (+ residual) for (B, H*W, C) CUDA tokens, zero padding 1, stride 1; weight
    (C, 1, 3, 3). The result is (B, H*W, C) in x's precision."""
    x = x.contiguous()
    channels = x.shape[-1]
    out = torch.empty_like(x)
    residual = residual.contiguous() if residual is not None else out  # not read without HAS_RESIDUAL
    block_c = min(64, triton.next_power_of_2(channels))
    block_w = max(1, min(triton.next_power_of_2(width), 4096 // block_c))
    grid = (x.shape[0] * height, triton.cdiv(width, block_w), triton.cdiv(channels, block_c))
    _depthwise3x3[grid](x, weight.reshape(channels, 9).contiguous(), bias.contiguous(), residual, out,
                        height, width, channels, HAS_RESIDUAL=residual is not out, SILU=silu,
                        BLOCK_W=block_w, BLOCK_C=block_c, num_warps=4)
    return out
