"""The Vision-LSTM (ViL) layer and block around the mLSTM cell (docs/networks.md section 0), in our own words.

A layer reads a token sequence (B, S, D) in one direction: up-projection to 2E, a causal depthwise
convolution, block-diagonal q/k/v, exponential-input / log-sigmoid-forget gates, the mLSTM cell, a per-head
norm, a learnable skip from the convolution and an output gate. "Backward" layers read the sequence
reversed, so that stacked layers alternate scan directions.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from MedSegEfficientLib.networks.mlstm.cell import mlstm


class HeadwiseLinear(nn.Module):
    """A block-diagonal linear map without bias: ``features / block`` independent ``block x block`` matrices."""

    def __init__(self, features: int, block: int = 4) -> None:
        super().__init__()
        if features % block:
            raise ValueError(f"{features} features do not split into blocks of {block}")
        self.block = block
        self.weight = nn.Parameter(torch.empty(features // block, block, block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.unflatten(-1, (-1, self.block))
        return torch.einsum("...nb,nob->...no", blocks, self.weight).flatten(-2)


class OffsetGroupNorm(nn.Module):
    """Per-head layer norm (a group norm with one group per head) whose stored weight is an offset from 1."""

    def __init__(self, heads: int, features: int) -> None:
        super().__init__()
        self.heads = heads
        self.weight = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., features)
        flat = x.reshape(-1, x.shape[-1])
        normed = F.group_norm(flat, self.heads, weight=1 + self.weight, bias=self.bias, eps=1e-5)
        return normed.reshape(x.shape)


class ViLLayer(nn.Module):
    def __init__(self, dim: int, expansion: int = 2, heads: int = 4, conv_kernel: int = 4, qkv_block: int = 4,
                 reverse: bool = False, backend: str = "auto") -> None:
        super().__init__()
        inner = expansion * dim
        if inner % heads:
            raise ValueError(f"inner width {inner} does not split into {heads} heads")
        self.dim, self.inner, self.heads, self.reverse, self.backend = dim, inner, heads, reverse, backend
        self.proj_up = nn.Linear(dim, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, conv_kernel, groups=inner, padding=conv_kernel - 1)
        self.q_proj = HeadwiseLinear(inner, qkv_block)
        self.k_proj = HeadwiseLinear(inner, qkv_block)
        self.v_proj = HeadwiseLinear(inner, qkv_block)
        self.igate = nn.Linear(3 * inner, heads)
        self.fgate = nn.Linear(3 * inner, heads)
        self.outnorm = OffsetGroupNorm(heads, inner)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        small = math.sqrt(2 / (5 * self.dim))  # "small init"
        for weight in (self.proj_up.weight, self.q_proj.weight, self.k_proj.weight, self.v_proj.weight):
            nn.init.normal_(weight, std=small)
        nn.init.normal_(self.proj_down.weight, std=2 / math.sqrt(self.dim))  # "wang init", one block
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, std=0.1)
        nn.init.ones_(self.learnable_skip)
        nn.init.zeros_(self.outnorm.weight)
        nn.init.zeros_(self.outnorm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, D)
        if self.reverse:
            x = x.flip(1)
        length = x.shape[1]
        x_m, z = self.proj_up(x).chunk(2, dim=-1)
        c = F.silu(self.conv1d(x_m.transpose(1, 2))[..., :length].transpose(1, 2))  # causal: left context only
        q, k, v = self.q_proj(c), self.k_proj(c), self.v_proj(x_m)
        gates_in = torch.cat([q, k, v], dim=-1)
        i, f = self.igate(gates_in), self.fgate(gates_in)  # (B, S, NH)
        # The mLSTM stays in float32 under autocast: in bfloat16/float16 it loses 4-24 % (docs/networks.md section 7).
        with torch.autocast(device_type=x.device.type, enabled=False):
            hidden = mlstm(*(self._heads(t).float() for t in (q, k, v)), i.transpose(1, 2).float(),
                           f.transpose(1, 2).float(), backend=self.backend)
        hidden = hidden.transpose(1, 2).reshape(x.shape[0], length, self.inner)
        h = self.outnorm(hidden) + self.learnable_skip * c
        y = self.proj_down(h * F.silu(z))
        return y.flip(1) if self.reverse else y

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, S, E) -> (B, NH, S, E / NH)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class ViLBlock(nn.Module):
    """Pre-norm residual block: x + ViLLayer(LayerNorm(x)), the norm without bias and with an offset weight."""

    def __init__(self, dim: int, reverse: bool = False, **layer_args) -> None:
        super().__init__()
        self.norm_weight = nn.Parameter(torch.zeros(dim))
        self.layer = ViLLayer(dim, reverse=reverse, **layer_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x, (x.shape[-1],), weight=1 + self.norm_weight, eps=1e-5)
        return x + self.layer(normed)
