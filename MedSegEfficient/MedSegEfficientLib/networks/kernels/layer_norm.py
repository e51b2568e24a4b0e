"""Layer norm over the last axis as one Triton kernel that normalises many short rows per program.

Why: the token networks normalise millions of rows of 32-512 channels (MLLA-UNet-T at 512^2, batch 32: 57 norms,
up to 8.4 M rows of 64 in its head). PyTorch's CUDA kernel spends a thread block on each row, which left those
norms at 29 % of the network's GPU time on the H100 (experiments/probes/profile_network.py). Here a program takes a
tile of rows: statistics in float32, output in the input's precision. Inference only (no backward); imported
only where Triton is installed (``networks/linear_attention/token_layout.py`` decides).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_TILE_ELEMENTS = 8192  # rows per program = this / the padded row length


@triton.jit
def _layer_norm_rows(x_ptr, weight_ptr, bias_ptr, out_ptr, rows, columns, eps,
                     BLOCK_ROWS: tl.constexpr, BLOCK_COLUMNS: tl.constexpr):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]
    column = tl.arange(0, BLOCK_COLUMNS)[None, :]
    inside = (row < rows) & (column < columns)
    offsets = row.to(tl.int64) * columns + column
    x = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1)[:, None] / columns
    centred = tl.where(inside, x - mean, 0.0)
    variance = tl.sum(centred * centred, axis=1)[:, None] / columns
    weight = tl.load(weight_ptr + column, mask=column < columns, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + column, mask=column < columns, other=0.0).to(tl.float32)
    y = centred * tl.rsqrt(variance + eps) * weight + bias
    tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=inside)


def layer_norm_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm of a contiguous CUDA tensor over its last axis; weight and bias of that length."""
    columns = x.shape[-1]
    rows = x.numel() // columns
    out = torch.empty_like(x)
    block_columns = triton.next_power_of_2(columns)
    block_rows = max(1, _TILE_ELEMENTS // block_columns)
    grid = (triton.cdiv(rows, block_rows),)
    _layer_norm_rows[grid](x, weight.contiguous(), bias.contiguous(), out, rows, columns, eps,
                           BLOCK_ROWS=block_rows, BLOCK_COLUMNS=block_columns, num_warps=8)
    return out
