"""Gated linear attention shared by MLLA-UNet and HRMedSeg (networks.md sections 3 and 5), in our own words.

Features phi = ELU + 1 of q and k; a 2D rotary position code (RoPE) on phi(q) and phi(k) in the numerator only;
a mean-key normaliser; and a locally-enhanced positional term (LePE, a depthwise 3x3 conv of v on the grid):

    out_i = RoPE(phi q_i) . [ sum_j RoPE(phi k_j)^T v_j / N ]  /  (phi q_i . mean_j phi k_j + 1e-6)  +  LePE(v)_i

The bracket is a (head_dim x head_dim) matrix per head, so cost is linear in the number of tokens N.
RoPE angles are computed for the grid at hand (any height and width), not stored for one resolution: pair p of
the channels turns by row * theta_p for the first half of the pairs and by column * theta_p for the second,
theta_p = base^(-p / P) with P pairs per axis.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

NORMALISER_EPSILON = 1e-6


@lru_cache(maxsize=32)
def _rope_angles(height: int, width: int, channels: int, base: float, device: torch.device) -> torch.Tensor:
    per_axis = channels // 4  # channel pairs turned by the row, the same number by the column
    theta = base ** (-torch.arange(per_axis, dtype=torch.float64, device=device) / per_axis)
    rows = torch.arange(height, dtype=torch.float64, device=device)[:, None, None] * theta
    cols = torch.arange(width, dtype=torch.float64, device=device)[None, :, None] * theta
    return torch.cat([rows.expand(height, width, per_axis), cols.expand(height, width, per_axis)], dim=-1)


def rope_rotations(height: int, width: int, channels: int, base: float = 10000.0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """(height, width, channels / 2, 2) cosines and sines: the layout of the authors' stored ``rotations``."""
    angles = _rope_angles(height, width, channels, base, torch.device(device))
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def apply_rope(x: torch.Tensor, height: int, width: int, base: float = 10000.0) -> torch.Tensor:
    """Rotate channel pairs of (B, H*W, C) tokens by their grid position; computed in float32."""
    batch, tokens, channels = x.shape
    if channels % 4:
        raise ValueError(f"2D RoPE needs channels divisible by 4, not {channels}")
    angles = _rope_angles(height, width, channels, base, x.device).reshape(tokens, channels // 2).float()
    cos, sin = angles.cos(), angles.sin()
    pairs = x.float().reshape(batch, tokens, channels // 2, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    return torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1).reshape(batch, tokens, channels)


class LinearAttention(nn.Module):
    """Linear attention over (B, H*W, C) tokens. ``value_bottleneck``: v = up(SiLU(down(x))) through that width
    (HRMedSeg); without it v is the input itself (MLLA)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, value_bottleneck: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        self.heads = heads
        self.form = "linear"  # "quadratic": the N x N form, for the scaling benchmark only
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.value_bottleneck = value_bottleneck
        if value_bottleneck:
            self.down_proj = nn.Linear(dim, value_bottleneck)
            self.up_proj = nn.Linear(value_bottleneck, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.form == "quadratic":
            return quadratic_reference(self, x, height, width)
        batch, tokens, channels = x.shape
        q, k = (F.elu(t) + 1.0 for t in self.qk(x).chunk(2, dim=-1))
        v = self.up_proj(F.silu(self.down_proj(x))) if self.value_bottleneck else x
        q_rot, k_rot = apply_rope(q, height, width), apply_rope(k, height, width)
        q, k, v, q_rot, k_rot = (self._heads(t) for t in (q, k, v, q_rot, k_rot))
        normaliser = 1.0 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + NORMALISER_EPSILON)
        memory = (k_rot.transpose(-2, -1) / tokens ** 0.5) @ (v.to(k_rot.dtype) / tokens ** 0.5)  # (B, h, d, d)
        out = (q_rot @ memory) * normaliser
        out = out.transpose(1, 2).reshape(batch, tokens, channels).to(x.dtype)
        grid = v.transpose(1, 2).reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        return out + self.lepe(grid.to(x.dtype)).flatten(2).transpose(1, 2)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, heads, N, C / heads)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)


def quadratic_reference(attention: LinearAttention, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The same maths with the N x N attention matrix written out: the parity reference for tests and the
    "quadratic form" of the scaling benchmark."""
    batch, tokens, channels = x.shape
    q, k = (F.elu(t) + 1.0 for t in attention.qk(x).chunk(2, dim=-1))
    v = attention.up_proj(F.silu(attention.down_proj(x))) if attention.value_bottleneck else x
    q_rot, k_rot = apply_rope(q, height, width), apply_rope(k, height, width)
    q, k, v, q_rot, k_rot = (attention._heads(t) for t in (q, k, v, q_rot, k_rot))
    weights = (q_rot @ k_rot.transpose(-2, -1)) / tokens  # (B, h, N, N)
    normaliser = (q * k.mean(dim=-2, keepdim=True)).sum(-1, keepdim=True) + NORMALISER_EPSILON
    out = ((weights @ v) / normaliser).transpose(1, 2).reshape(batch, tokens, channels)
    grid = v.transpose(1, 2).reshape(batch, height, width, channels).permute(0, 3, 1, 2)
    return out + attention.lepe(grid).flatten(2).transpose(1, 2)
