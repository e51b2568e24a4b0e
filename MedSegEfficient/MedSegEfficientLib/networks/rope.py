"""The 2D rotary position code (RoPE) of the linear-attention family, shared by its torch modules and its Triton
kernels (so that neither imports the other).

Angles are computed for the grid at hand (any height and width), not stored for one resolution: pair p of the
channels turns by row * theta_p for the first half of the pairs and by column * theta_p for the second,
theta_p = base^(-p / P) with P pairs per axis.
"""

from __future__ import annotations

from functools import lru_cache

import torch

ROPE_BASE = 10000.0


def _rope_theta(channels: int, base: float, device: torch.device) -> torch.Tensor:
    """theta_p = base^(-p / P) for the P = C / 4 channel pairs of one grid axis, float64."""
    per_axis = channels // 4
    return base ** (-torch.arange(per_axis, dtype=torch.float64, device=device) / per_axis)


@lru_cache(maxsize=32)
def _rope_angles(height: int, width: int, channels: int, base: float, device: torch.device) -> torch.Tensor:
    per_axis = channels // 4  # channel pairs turned by the row, the same number by the column
    theta = _rope_theta(channels, base, device)
    rows = torch.arange(height, dtype=torch.float64, device=device)[:, None, None] * theta
    cols = torch.arange(width, dtype=torch.float64, device=device)[None, :, None] * theta
    return torch.cat([rows.expand(height, width, per_axis), cols.expand(height, width, per_axis)], dim=-1)


@lru_cache(maxsize=32)
def rope_axis_tables(length: int, channels: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(length, C / 2) float32 cosines and sines of pair p's angle at grid coordinate a: a * theta_(p mod C / 4).
    Pairs below C / 4 take the row as a, the others the column: the per-token tables, factored by axis."""
    with torch.inference_mode(False), torch.no_grad():
        theta = _rope_theta(channels, base, device)
        angles = torch.arange(length, dtype=torch.float64, device=device)[:, None] * theta.repeat(2)
        return angles.cos().float(), angles.sin().float()


def rope_rotations(height: int, width: int, channels: int, base: float = ROPE_BASE,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """(height, width, channels / 2, 2) cosines and sines: the layout of the authors' stored ``rotations``."""
    with torch.inference_mode(False), torch.no_grad():
        angles = _rope_angles(height, width, channels, base, torch.device(device))
        return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


@lru_cache(maxsize=64)
def rope_tables(height: int, width: int, channels: int, base: float, device: torch.device,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) factors of the rotation in ``dtype``: each pair's cosine twice, and (-sine, +sine)."""
    # Normal (not inference) tensors, so that a table made during inference also serves a later training step.
    with torch.inference_mode(False), torch.no_grad():
        angles = _rope_angles(height, width, channels, base, device).reshape(height * width, channels // 2)
        cos = angles.cos().repeat_interleave(2, dim=-1)
        sin = angles.sin()
        signed_sin = torch.stack([-sin, sin], dim=-1).flatten(-2)
        return cos.to(dtype), signed_sin.to(dtype)


def apply_rope(x: torch.Tensor, height: int, width: int, base: float = ROPE_BASE) -> torch.Tensor:
    """Rotate channel pairs of (B, H*W, C) or (B, H*W, G, C) tokens by their grid position, in x's precision:
    (r, i) -> (r cos - i sin, r sin + i cos), written as x * cos + swap(x) * (-sin, sin)."""
    channels = x.shape[-1]
    if channels % 4:
        raise ValueError(f"2D RoPE needs channels divisible by 4, not {channels}")
    cos, signed_sin = rope_tables(height, width, channels, base, x.device, x.dtype)
    if x.ndim == 4:  # a group axis between tokens and channels
        cos, signed_sin = cos[:, None], signed_sin[:, None]
    swapped = x.unflatten(-1, (channels // 2, 2)).flip(-1).flatten(-2)
    return torch.addcmul(x * cos, swapped, signed_sin)


__all__ = ["ROPE_BASE", "apply_rope", "rope_axis_tables", "rope_rotations", "rope_tables"]
