"""The linear attention's feature map and RoPE in one Triton pass: phi = ELU + 1 of q and k, and RoPE(phi).

Why: in torch these are eight passes over (B, N, 2C) per block (ELU, +1, a pair flip, two broadcast products
that torch does not vectorise, ...), 13 % of MLLA-UNet-T's GPU time at 512^2 (experiments/probes/profile_network.py).
Here each program reads a tile of the q|k projection (and each value's pair partner, from the same cache lines)
and writes phi and its rotation, all contiguous. Inference only;
imported only where Triton is installed (``linear_attention.py`` decides). The angles are the cached tables of
``linear_attention.py``, so both paths turn by the same angles.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_TILE_ELEMENTS = 8192  # channels per program (rows x 2C)


@triton.jit
def _phi_and_rope(qk_ptr, cos_ptr, signed_sin_ptr, phi_ptr, rotated_ptr, rows, tokens,
                  CHANNELS: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLUMNS: tl.constexpr):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]
    column = tl.arange(0, BLOCK_COLUMNS)[None, :]  # q's C channels, then k's
    inside = (row < rows) & (column < 2 * CHANNELS)
    start = row.to(tl.int64) * (2 * CHANNELS)
    # Every access is contiguous along the row; the pair partner (channel ^ 1) lies in the same cache lines.
    x = tl.load(qk_ptr + start + column, mask=inside, other=0.0).to(tl.float32)
    partner = tl.load(qk_ptr + start + (column ^ 1), mask=inside, other=0.0).to(tl.float32)
    x = tl.where(x > 0, x + 1.0, tl.exp(x))  # ELU + 1
    partner = tl.where(partner > 0, partner + 1.0, tl.exp(partner))
    angle = (row % tokens).to(tl.int64) * CHANNELS + column % CHANNELS  # q and k turn by the same angles
    cos = tl.load(cos_ptr + angle, mask=inside, other=1.0)
    signed_sin = tl.load(signed_sin_ptr + angle, mask=inside, other=0.0)
    out_type = phi_ptr.dtype.element_ty
    tl.store(phi_ptr + start + column, x.to(out_type), mask=inside)
    tl.store(rotated_ptr + start + column, (x * cos + partner * signed_sin).to(out_type), mask=inside)


def phi_and_rope(qk: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``qk`` (B, N, 2C) CUDA; ``cos``/``signed_sin`` (N, C) float32, as ``apply_rope`` uses them. Returns phi
    and RoPE(phi), each (B, N, 2C) in qk's precision."""
    qk = qk.contiguous()
    tokens, channels = cos.shape
    rows = qk.numel() // qk.shape[-1]
    phi, rotated = torch.empty_like(qk), torch.empty_like(qk)
    block_columns = triton.next_power_of_2(2 * channels)
    block_rows = max(1, _TILE_ELEMENTS // block_columns)
    grid = (triton.cdiv(rows, block_rows),)
    _phi_and_rope[grid](qk, cos, signed_sin, phi, rotated, rows, tokens, CHANNELS=channels,
                        BLOCK_ROWS=block_rows, BLOCK_COLUMNS=block_columns, num_warps=8)
    return phi, rotated
