"""Layer norm fused into the matrix product that follows it, as Triton kernels for half-precision inference.

Why: in an MLLA block each layer norm, linear map, activation and residual sum was a pass of its own over
(B, H*W, C) tokens; at 512^2 these passes, not arithmetic, set the GPU time. Here:

- ``norm_linear``: LN(x) @ W^T + b, with SiLU on the output columns from ``silu_from`` on (the block's input and
  gate projections in one product): reads x once, writes the outputs once.
- ``norm_mlp_residual``: x + fc2(GELU(fc1(LN(x)))): the 4C-wide hidden layer never leaves the chip, so the
  MLP reads x once and writes once instead of some 23 tensor passes.

Rows are normalised in float32; products take half-precision operands with float32 accumulation, as cuBLAS
under autocast. Row width C must be a power of two (16 to 512); ``mlla_fused.py`` decides where they apply.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

@triton.jit
def _normalised_rows(x_ptr, norm_weight_ptr, norm_bias_ptr, rows, row_count, eps, C: tl.constexpr):
    """(x, LN(x)) in float32 for a (BLOCK, 1) column of row indices; rows past the end read as zeros."""
    columns = tl.arange(0, C)[None, :]
    x = tl.load(x_ptr + rows.to(tl.int64) * C + columns, mask=rows < row_count, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1)[:, None] / C
    centred = x - mean
    variance = tl.sum(centred * centred, axis=1)[:, None] / C
    weight = tl.load(norm_weight_ptr + columns).to(tl.float32)
    bias = tl.load(norm_bias_ptr + columns).to(tl.float32)
    return x, centred * tl.rsqrt(variance + eps) * weight + bias


@triton.jit
def _norm_linear(x_ptr, norm_weight_ptr, norm_bias_ptr, weight_t_ptr, bias_ptr, out_ptr, row_count, out_features,
                 silu_from, eps, C: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    outputs = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    _, normed = _normalised_rows(x_ptr, norm_weight_ptr, norm_bias_ptr, rows, row_count, eps, C)
    column_ok = outputs < out_features
    weight_t = tl.load(weight_t_ptr + tl.arange(0, C)[:, None] * out_features + outputs, mask=column_ok, other=0.0)
    y = tl.dot(normed.to(weight_t.dtype), weight_t)
    y += tl.load(bias_ptr + outputs, mask=column_ok, other=0.0).to(tl.float32)
    y = tl.where(outputs >= silu_from, y * tl.sigmoid(y), y)
    tl.store(out_ptr + rows.to(tl.int64) * out_features + outputs, y.to(out_ptr.dtype.element_ty),
             mask=(rows < row_count) & column_ok)


@triton.jit
def _norm_mlp_residual(x_ptr, norm_weight_ptr, norm_bias_ptr, fc1_t_ptr, fc1_bias_ptr, fc2_t_ptr, fc2_bias_ptr,
                       out_ptr, row_count, eps, C: tl.constexpr, HIDDEN: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_H: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    columns = tl.arange(0, C)
    x, normed = _normalised_rows(x_ptr, norm_weight_ptr, norm_bias_ptr, rows, row_count, eps, C)
    normed = normed.to(fc1_t_ptr.dtype.element_ty)
    total = tl.zeros([BLOCK_M, C], dtype=tl.float32)
    for start in range(0, HIDDEN, BLOCK_H):
        hidden_units = start + tl.arange(0, BLOCK_H)
        fc1_t = tl.load(fc1_t_ptr + columns[:, None] * HIDDEN + hidden_units[None, :])  # (C, BLOCK_H)
        hidden = tl.dot(normed, fc1_t) + tl.load(fc1_bias_ptr + hidden_units)[None, :].to(tl.float32)
        hidden = 0.5 * hidden * (1.0 + tl.erf(hidden * 0.7071067811865476))  # exact GELU, as nn.GELU()
        fc2_t = tl.load(fc2_t_ptr + hidden_units[:, None] * C + columns[None, :])  # (BLOCK_H, C)
        total += tl.dot(hidden.to(fc2_t.dtype), fc2_t)
    total += tl.load(fc2_bias_ptr + columns)[None, :].to(tl.float32) + x
    tl.store(out_ptr + rows.to(tl.int64) * C + columns[None, :], total.to(out_ptr.dtype.element_ty),
             mask=rows < row_count)


def norm_linear(x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor, eps: float,
                weight_t: torch.Tensor, bias: torch.Tensor, silu_from: int | None = None,
                launch: dict | None = None) -> torch.Tensor:
    """LN(x) @ weight_t + bias for contiguous (..., C) x; weight_t (C, out) in x's precision; SiLU applied to
    output columns ``silu_from`` onwards (none when None). ``launch``: tile sizes and warps to try instead of
    the defaults (experiments/probes/fused_kernel_sweep.py)."""
    channels, out_features = weight_t.shape
    rows = x.numel() // channels
    out = x.new_empty(*x.shape[:-1], out_features)
    narrow = channels <= 128  # tiles measured best on the H100 (experiments/probes/fused_kernel_sweep.py)
    config = {"BLOCK_M": 64 if narrow else 128, "BLOCK_N": min(128, triton.next_power_of_2(out_features)),
              "num_warps": 4 if narrow else 8, **(launch or {})}
    grid = (triton.cdiv(rows, config["BLOCK_M"]), triton.cdiv(out_features, config["BLOCK_N"]))
    _norm_linear[grid](x, norm_weight, norm_bias, weight_t, bias, out, rows, out_features,
                       out_features if silu_from is None else silu_from, eps, C=channels, **config)
    return out


def norm_mlp_residual(x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor, eps: float,
                      fc1_t: torch.Tensor, fc1_bias: torch.Tensor, fc2_t: torch.Tensor,
                      fc2_bias: torch.Tensor, launch: dict | None = None) -> torch.Tensor:
    """x + GELU(LN(x) @ fc1_t + fc1_bias) @ fc2_t + fc2_bias for contiguous (..., C) x; fc1_t (C, hidden) and
    fc2_t (hidden, C) in x's precision. ``launch`` as for ``norm_linear``."""
    channels, hidden = fc1_t.shape
    rows = x.numel() // channels
    out = torch.empty_like(x)
    narrow = channels <= 128  # tiles measured best on the H100 (experiments/probes/fused_kernel_sweep.py)
    config = {"BLOCK_M": 64 if narrow else max(16, 32768 // channels), "BLOCK_H": 32,
              "num_warps": 4 if narrow else 8, **(launch or {})}
    _norm_mlp_residual[(triton.cdiv(rows, config["BLOCK_M"]),)](
        x, norm_weight, norm_bias, fc1_t, fc1_bias, fc2_t, fc2_bias, out, rows, eps, C=channels, HIDDEN=hidden,
        **config)
    return out
