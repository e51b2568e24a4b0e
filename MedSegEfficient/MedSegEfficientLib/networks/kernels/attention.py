"""MLLA's gated linear attention (``linear_attention/attention.py``) as two Triton passes for half-precision inference.

Why: in torch the attention is some 30 passes over the (B, H*W, C) tokens (features, RoPE, the products, the
division, LePE, gate, output projection, residual). Here, given qk = y @ W_qk^T + b (one cuBLAS product):

- ``attention_memory``: per image and head, sum_j RoPE(phi k_j)^T v_j and sum_j phi(k_j), summed over token
  chunks in parallel (partial sums per chunk, then added in torch: deterministic, no atomics). Reads k and v.
- ``attention_output``: per token tile, for each head RoPE(phi q) @ memory / (phi q . mean phi k + eps) + LePE(v),
  times the gate, through the output projection (accumulated over heads), plus bias and residual. Reads q, v with
  its 3x3 neighbourhood, the gate and the residual; writes the block's new tokens once.

RoPE rotates channel pairs split in registers, with angles from small per-axis tables; no rotated copy is made.
Head width D must be a power of two of at least 16 and C = heads * D; ``mlla_fused.py`` decides where these apply.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from MedSegEfficientLib.networks.rope import ROPE_BASE, rope_axis_tables

_PROGRAMS_WANTED = 512  # memory pass: token chunks per (image, head) chosen to give about this many programs
_MEMORY_TILE = 64  # tokens per step of the memory pass


@triton.jit
def _phi(t):
    return tl.where(t > 0, t + 1.0, tl.exp(t))  # ELU + 1


@triton.jit
def _rotated_features(qk_ptr, cos_ptr, sin_ptr, token, position, width, head, valid, qk_offset,
                      C: tl.constexpr, D: tl.constexpr):
    """phi(t) and RoPE(phi t), (rows, D) in float32, for t = qk[token, qk_offset + head * D + 0 .. D - 1].

    t is loaded once, whole rows at a time; its channel pairs are split in registers and rotated by angles read
    from (length, C / 2) tables per grid axis (pairs below C / 4 turn with the row, the others with the column):
    a few kilobytes that stay in cache, where per-token tables were read from L2 at twice the bytes of t."""
    row = qk_ptr + token.to(tl.int64) * (2 * C) + qk_offset
    t = tl.load(row + head * D + tl.arange(0, D)[None, :], mask=valid, other=0.0).to(tl.float32)
    phi = tl.where(valid, _phi(t), 0.0)
    pair = head * (D // 2) + tl.arange(0, D // 2)[None, :]
    axis_position = tl.where(pair < C // 4, position // width, position % width)
    table = axis_position * (C // 2) + pair
    cos = tl.load(cos_ptr + table, mask=valid, other=0.0)
    sin = tl.load(sin_ptr + table, mask=valid, other=0.0)
    even, odd = tl.split(tl.reshape(phi, (phi.shape[0], D // 2, 2)))
    rotated = tl.join(even * cos - odd * sin, odd * cos + even * sin)
    return phi, tl.reshape(rotated, (phi.shape[0], D))


@triton.jit
def _attention_memory(qk_ptr, v_ptr, cos_ptr, sin_ptr, memory_ptr, key_sum_ptr, tokens, width, chunk_tokens,
                      C: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr):
    chunk, head, image = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    chunks = tl.num_programs(0)
    channel = head * D + tl.arange(0, D)[None, :]
    memory = tl.zeros([D, D], dtype=tl.float32)
    key_sum = tl.zeros([D], dtype=tl.float32)
    for offset in range(0, chunk_tokens, BLOCK_N):
        position = chunk * chunk_tokens + offset + tl.arange(0, BLOCK_N)[:, None]
        valid = position < tokens
        token = image * tokens + position
        phi, rotated = _rotated_features(qk_ptr, cos_ptr, sin_ptr, token, position, width, head, valid, C, C, D)
        v = tl.load(v_ptr + token.to(tl.int64) * C + channel, mask=valid, other=0.0)
        memory += tl.dot(tl.trans(rotated.to(v.dtype)), v)
        key_sum += tl.sum(phi, axis=0)
    part = (image * (C // D) + head) * chunks + chunk  # (B, heads, chunks, D, D) partial sums
    rows = tl.arange(0, D)[:, None]
    tl.store(memory_ptr + part.to(tl.int64) * D * D + rows * D + tl.arange(0, D)[None, :], memory)
    tl.store(key_sum_ptr + (image * chunks + chunk).to(tl.int64) * C + head * D + tl.arange(0, D), key_sum)


@triton.jit
def _gated_head(qk_ptr, v_ptr, gate_ptr, cos_ptr, sin_ptr, memory_ptr, mean_key_ptr, lepe_weight_ptr,
                lepe_bias_ptr, token, position, image, valid, head, tokens, height, width, gate_stride, eps,
                C: tl.constexpr, D: tl.constexpr, GATE_SILU: tl.constexpr):
    """gate * (RoPE(phi q) @ memory / (phi q . mean phi k + eps) + LePE(v)) for one head of a token tile:
    (rows, D) in v's precision."""
    grid_row, grid_column = position // width, position % width
    channel = head * D + tl.arange(0, D)[None, :]
    phi, rotated = _rotated_features(qk_ptr, cos_ptr, sin_ptr, token, position, width, head, valid, 0, C, D)
    memory = tl.load(memory_ptr + (image * (C // D) + head).to(tl.int64) * D * D
                     + tl.arange(0, D)[:, None] * D + tl.arange(0, D)[None, :])
    value_type = v_ptr.dtype.element_ty
    numerator = tl.dot(rotated.to(value_type), memory.to(value_type))
    mean_key = tl.load(mean_key_ptr + image.to(tl.int64) * C + channel)
    attended = numerator / (tl.sum(phi * mean_key, axis=1)[:, None] + eps)
    attended += tl.load(lepe_bias_ptr + channel).to(tl.float32)
    for dy in tl.static_range(3):  # LePE: depthwise 3x3 of v, zero padded
        source_row = grid_row + dy - 1
        for dx in tl.static_range(3):
            source_column = grid_column + dx - 1
            inside = valid & (source_row >= 0) & (source_row < height) & (source_column >= 0) \
                & (source_column < width)
            source = image * tokens + source_row * width + source_column
            v = tl.load(v_ptr + source.to(tl.int64) * C + channel, mask=inside, other=0.0)
            tap = tl.load(lepe_weight_ptr + channel * 9 + dy * 3 + dx).to(tl.float32)
            attended += v.to(tl.float32) * tap
    gate = tl.load(gate_ptr + token.to(tl.int64) * gate_stride + channel, mask=valid, other=0.0)
    if GATE_SILU:  # the raw gate projection: SiLU here, rounded as a stored activation would be
        gate = gate.to(tl.float32)
        gate = (gate * tl.sigmoid(gate)).to(value_type)
    return (attended.to(value_type) * gate).to(value_type)


@triton.jit
def _attention_output(qk_ptr, v_ptr, gate_ptr, residual_ptr, cos_ptr, sin_ptr, memory_ptr, mean_key_ptr,
                      lepe_weight_ptr, lepe_bias_ptr, out_weight_t_ptr, out_bias_ptr, out_ptr,
                      tokens, height, width, gate_stride, eps,
                      C: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr):
    tile, image = tl.program_id(0), tl.program_id(1)
    position = tile * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    valid = position < tokens
    token = image * tokens + position
    total = tl.zeros([BLOCK_M, C], dtype=tl.float32)
    for head in tl.static_range(C // D):
        gated = _gated_head(qk_ptr, v_ptr, gate_ptr, cos_ptr, sin_ptr, memory_ptr, mean_key_ptr, lepe_weight_ptr,
                            lepe_bias_ptr, token, position, image, valid, head, tokens, height, width, gate_stride,
                            eps, C, D, False)
        out_weight_t = tl.load(out_weight_t_ptr + (head * D + tl.arange(0, D))[:, None] * C
                               + tl.arange(0, C)[None, :])  # rows of this head: (D, C)
        total += tl.dot(gated, out_weight_t)
    columns = tl.arange(0, C)[None, :]
    offsets = token.to(tl.int64) * C + columns
    total += tl.load(out_bias_ptr + columns).to(tl.float32)
    total += tl.load(residual_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _attention_gated(qk_ptr, v_ptr, gate_ptr, cos_ptr, sin_ptr, memory_ptr, mean_key_ptr, lepe_weight_ptr,
                     lepe_bias_ptr, out_ptr, tokens, height, width, gate_stride, eps,
                     C: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, GATE_SILU: tl.constexpr):
    # One head per program: with no projection to accumulate over heads, they need not share a program, and
    # wide tokens (few tiles, many heads) fill the GPU.
    tile, head, image = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    position = tile * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    valid = position < tokens
    token = image * tokens + position
    gated = _gated_head(qk_ptr, v_ptr, gate_ptr, cos_ptr, sin_ptr, memory_ptr, mean_key_ptr, lepe_weight_ptr,
                        lepe_bias_ptr, token, position, image, valid, head, tokens, height, width, gate_stride,
                        eps, C, D, GATE_SILU)
    tl.store(out_ptr + token.to(tl.int64) * C + head * D + tl.arange(0, D)[None, :], gated, mask=valid)


def attention_memory(qk: torch.Tensor, v: torch.Tensor, height: int, width: int, heads: int,
                     launch: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, heads, D, D) mean over tokens of RoPE(phi k)^T v per head, and (B, C) mean of phi(k), float32.
    qk (B, N, 2C) contiguous, q then k; v (B, N, C) contiguous; N = height * width. ``launch``:
    tile size, program count and warps to try instead of the defaults (experiments/probes/fused_kernel_sweep.py)."""
    batch, tokens, channels = v.shape
    head_dim = channels // heads
    config = {"BLOCK_N": _MEMORY_TILE, "num_warps": 2, **(launch or {})}  # best on the H100: fused_kernel_sweep.py
    tile = config["BLOCK_N"]
    wanted = config.pop("programs", _PROGRAMS_WANTED)
    chunks = max(1, min(triton.cdiv(tokens, tile), triton.cdiv(wanted, batch * heads)))
    chunk_tokens = triton.cdiv(triton.cdiv(tokens, chunks), tile) * tile
    chunks = triton.cdiv(tokens, chunk_tokens)
    partial_memory = v.new_empty(batch, heads, chunks, head_dim, head_dim, dtype=torch.float32)
    partial_key_sum = v.new_empty(batch, chunks, channels, dtype=torch.float32)
    cos, sin = rope_axis_tables(max(height, width), channels, ROPE_BASE, v.device)
    _attention_memory[(chunks, heads, batch)](qk, v, cos, sin, partial_memory, partial_key_sum, tokens, width,
                                              chunk_tokens, C=channels, D=head_dim, **config)
    return partial_memory.sum(dim=2) / tokens, partial_key_sum.sum(dim=1) / tokens


def attention_output(qk: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, residual: torch.Tensor,
                     memory: torch.Tensor, mean_key: torch.Tensor,
                     lepe_weight: torch.Tensor, lepe_bias: torch.Tensor, out_weight_t: torch.Tensor,
                     out_bias: torch.Tensor, height: int, width: int, eps: float,
                     launch: dict | None = None) -> torch.Tensor:
    """residual + (gate * attention(...)) @ out_weight_t + out_bias as (B, N, C). The gate may be a view with
    rows ``gate.stride(1)`` apart; every other token tensor is contiguous; lepe_weight (C, 9). ``launch`` as for
    ``attention_memory``."""
    batch, tokens, channels = v.shape
    head_dim = memory.shape[-1]
    config = {"BLOCK_M": {64: 128, 128: 64, 256: 64}.get(channels, 32), "num_warps": 4 if channels <= 256 else 8,
              **(launch or {})}  # measured best on the H100: experiments/probes/fused_kernel_sweep.py
    out = torch.empty_like(residual)
    cos, sin = rope_axis_tables(max(height, width), channels, ROPE_BASE, v.device)
    _attention_output[(triton.cdiv(tokens, config["BLOCK_M"]), batch)](
        qk, v, gate, residual, cos, sin, memory, mean_key, lepe_weight, lepe_bias, out_weight_t, out_bias,
        out, tokens, height, width, gate.stride(1), eps, C=channels, D=head_dim, **config)
    return out


def attention_gated(qk: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, memory: torch.Tensor,
                    mean_key: torch.Tensor, lepe_weight: torch.Tensor, lepe_bias: torch.Tensor, height: int,
                    width: int, eps: float, gate_silu: bool = True, launch: dict | None = None) -> torch.Tensor:
    """gate * attention(...) as (B, N, C), for tokens whose output projection cuBLAS does better
    (``mlla_fused``): ``gate`` a view with rows ``gate.stride(1)`` apart, before its SiLU when ``gate_silu``;
    other arguments as for ``attention_output``."""
    batch, tokens, channels = v.shape
    heads = memory.shape[1]
    # 64 tokens on 4 warps: best at widths 128 and 256 on the H200 (experiments/probes/fused_kernel_sweep.py); 32 on 2
    # warps ran faster alone at width 512 but slower inside the network (block_kernel_times.py).
    config = {"BLOCK_M": 64, "num_warps": 4, **(launch or {})}
    out = torch.empty_like(v)
    cos, sin = rope_axis_tables(max(height, width), channels, ROPE_BASE, v.device)
    _attention_gated[(triton.cdiv(tokens, config["BLOCK_M"]), heads, batch)](
        qk, v, gate, cos, sin, memory, mean_key, lepe_weight, lepe_bias, out, tokens, height, width, gate.stride(1),
        eps, C=channels, D=memory.shape[-1], GATE_SILU=gate_silu, **config)
    return out
