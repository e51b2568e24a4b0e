"""MLLA-UNet's final x4 head as one Triton kernel for half-precision inference.

The head normalises each 1/4-resolution token, expands it to 16 sub-pixel vectors, normalises those and projects
them to the classes (``MLLAUNet.head``). In torch that writes and reads a (B, 16 * N, C) buffer several times,
16x the size of the tokens. Here a program takes a tile of tokens and, sub-pixel by sub-pixel, keeps the expanded
vectors on chip and writes only the class scores, straight into their place in the (B, K, 4H, 4W) output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from MedSegEfficientLib.networks.kernels.norm_linear import _normalised_rows

@triton.jit
def _expand_head(x_ptr, up_weight_ptr, up_bias_ptr, up_eps, expand_t_ptr, final_weight_ptr, final_bias_ptr,
                 final_eps, project_t_ptr, out_ptr, tokens, width, classes,
                 C: tl.constexpr, K_PAD: tl.constexpr, BLOCK_M: tl.constexpr):
    tile, image = tl.program_id(0), tl.program_id(1)
    position = tile * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    token = image * tokens + position
    # Rows below (image + 1) * tokens are exactly this image's valid positions.
    _, normed = _normalised_rows(x_ptr, up_weight_ptr, up_bias_ptr, token, (image + 1) * tokens, up_eps, C)
    half = expand_t_ptr.dtype.element_ty
    normed = normed.to(half)
    channel = tl.arange(0, C)
    final_weight = tl.load(final_weight_ptr + channel)[None, :].to(tl.float32)
    final_bias = tl.load(final_bias_ptr + channel)[None, :].to(tl.float32)
    project_t = tl.load(project_t_ptr + channel[:, None] * K_PAD + tl.arange(0, K_PAD)[None, :])  # (C, K_PAD)
    klass = tl.arange(0, K_PAD)[None, :]
    written = (position < tokens) & (klass < classes)
    plane = 16 * tokens  # pixels per class plane of the output
    first = image.to(tl.int64) * classes * plane + klass.to(tl.int64) * plane
    grid_row, grid_column = position // width, position % width
    for sub_pixel in tl.static_range(16):
        expand_t = tl.load(expand_t_ptr + sub_pixel * C * C + channel[:, None] * C + channel[None, :])  # (C, C)
        expanded = tl.dot(normed, expand_t).to(half).to(tl.float32)  # rounded as the torch path's buffer
        mean = tl.sum(expanded, axis=1)[:, None] / C
        centred = expanded - mean
        variance = tl.sum(centred * centred, axis=1)[:, None] / C
        renormed = centred * tl.rsqrt(variance + final_eps) * final_weight + final_bias
        scores = tl.dot(renormed.to(half), project_t)
        pixel = (4 * grid_row + sub_pixel // 4) * (4 * width) + 4 * grid_column + sub_pixel % 4
        tl.store(out_ptr + first + pixel, scores.to(out_ptr.dtype.element_ty), mask=written)


def expand_head(x: torch.Tensor, up_weight: torch.Tensor, up_bias: torch.Tensor, up_eps: float,
                expand_t: torch.Tensor, final_weight: torch.Tensor, final_bias: torch.Tensor, final_eps: float,
                project_t: torch.Tensor, classes: int, height: int, width: int) -> torch.Tensor:
    """(B, classes, 4H, 4W) scores from contiguous (B, H*W, C) tokens. expand_t (16, C, C): sub-pixel s's
    expansion, transposed; project_t (C, K_PAD) with K_PAD a power of two >= 16 and columns past ``classes``
    zero; both in x's precision."""
    batch, tokens, channels = x.shape
    block_m = max(16, min(64, 4096 // channels))
    out = x.new_empty(batch, classes, 4 * height, 4 * width)
    _expand_head[(triton.cdiv(tokens, block_m), batch)](
        x, up_weight, up_bias, up_eps, expand_t, final_weight, final_bias, final_eps, project_t, out, tokens, width,
        classes, C=channels, K_PAD=project_t.shape[1], BLOCK_M=block_m, num_warps=4)
    return out
