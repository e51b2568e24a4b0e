"""Gated linear attention shared by MLLA-UNet and HRMedSeg (docs/networks.md sections 3 and 5), in our own words.

Features phi = ELU + 1 of q and k; a 2D rotary position code (RoPE) on phi(q) and phi(k) in the numerator only;
a mean-key normaliser; and a locally-enhanced positional term (LePE, a depthwise 3x3 conv of v on the grid):

    out_i = RoPE(phi q_i) . [ sum_j RoPE(phi k_j)^T v_j / N ]  /  (phi q_i . mean_j phi k_j + 1e-6)  +  LePE(v)_i

The bracket is a (head_dim x head_dim) matrix per head, so cost is linear in the number of tokens N.
RoPE itself is in ``networks/rope.py``, shared with the Triton kernels.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from MedSegEfficientLib.networks.linear_attention.token_layout import depthwise_tokens, triton_inference
from MedSegEfficientLib.networks.rope import ROPE_BASE, apply_rope, rope_tables

NORMALISER_EPSILON = 1e-6


@lru_cache(maxsize=32)
def _head_mask(channels: int, heads: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(C, C) block-diagonal ones: channel pairs of the same head."""
    with torch.inference_mode(False), torch.no_grad():
        head = torch.arange(channels, device=device) // (channels // heads)
        return (head[:, None] == head[None, :]).to(dtype)


class LinearAttention(nn.Module):
    """Linear attention over (B, H*W, C) tokens. ``value_bottleneck``: v = down_proj(SiLU(up_proj(x))) through that
    width (HRMedSeg; ``up_proj`` narrows, as the authors name it); without it v is the input itself (MLLA)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, value_bottleneck: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        self.heads = heads
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.value_bottleneck = value_bottleneck
        if value_bottleneck:
            # The authors' names (HRMedSeg's LGViT): ``up_proj`` narrows to the bottleneck, ``down_proj`` widens back,
            # so that their state dicts load as published.
            self.up_proj = nn.Linear(dim, value_bottleneck)
            self.down_proj = nn.Linear(value_bottleneck, dim)

    def features(self, x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """phi(q), phi(k), RoPE(phi q), RoPE(phi k) and v, each (B, N, C) in the token layout (views)."""
        channels = x.shape[-1]
        qk = self.qk(x)  # (B, N, 2C): q then k
        if triton_inference(qk, self.qk.weight) and channels % 4 == 0:
            from MedSegEfficientLib.networks.kernels.rope import phi_and_rope

            phi, rotated = phi_and_rope(qk, *rope_tables(height, width, channels, ROPE_BASE, qk.device, torch.float32))
            rotated = rotated.unflatten(-1, (2, channels))
        else:
            phi = F.elu(qk) + 1.0
            rotated = apply_rope(phi.unflatten(-1, (2, channels)), height, width)  # both at once
        v = self.down_proj(F.silu(self.up_proj(x))) if self.value_bottleneck else x
        return phi[..., :channels], phi[..., channels:], rotated[:, :, 0], rotated[:, :, 1], v

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, count, channels = x.shape
        q, k, q_rot, k_rot, v = self.features(x, height, width)
        v = v.to(k_rot.dtype)
        # All heads in one (C x C) product masked to the heads' diagonal blocks: batched matrix products in the
        # token layout need no (B, heads, N, d) copies, and the extra products are cheap beside the copies.
        # The 1/N is applied inside the product (float32 accumulation), so float16 sums over N never overflow.
        mask = _head_mask(channels, self.heads, x.device, k_rot.dtype)
        memory = torch.baddbmm(k_rot.new_empty(1, 1, 1), k_rot.transpose(1, 2), v, beta=0.0,
                               alpha=1.0 / count) * mask  # (B, C, C)
        mean_key = k.mean(dim=1)  # (B, C)
        normaliser = torch.bmm(q, mean_key[:, :, None] * mask)  # (B, N, C): q . mean(k) of the channel's head
        out = torch.bmm(q_rot, memory) / (normaliser + NORMALISER_EPSILON)
        return depthwise_tokens(self.lepe, v, height, width, residual=out.to(v.dtype)).to(x.dtype)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, heads, N, C / heads)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)


def quadratic_reference(attention: LinearAttention, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The same maths with the N x N attention matrix of every head written out: the parity reference for tests
    and for the scaling benchmark's quadratic form (which swaps it in for ``forward`` itself)."""
    batch, count, channels = x.shape
    q, k, q_rot, k_rot, v = attention.features(x, height, width)
    heads = attention._heads
    weights = (heads(q_rot) @ heads(k_rot).transpose(-2, -1)) / count  # (B, h, N, N)
    normaliser = (heads(q) * heads(k).mean(dim=-2, keepdim=True)).sum(-1, keepdim=True) + NORMALISER_EPSILON
    out = ((weights @ heads(v).to(weights.dtype)) / normaliser).transpose(1, 2).reshape(batch, count, channels)
    return depthwise_tokens(attention.lepe, v, height, width, residual=out.to(v.dtype)).to(x.dtype)
