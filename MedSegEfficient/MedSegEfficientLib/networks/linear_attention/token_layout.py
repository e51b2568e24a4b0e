"""Tokens and maps sharing one memory layout, and a layer norm that keeps half precision.

Token networks (MLLA-UNet, HRMedSeg) switch between (B, H*W, C) tokens and (B, C, H, W) maps around every
depthwise convolution. Row-major tokens *are* a channels-last map, so the switch is a view, never a copy, as long
as maps stay channels-last: ``grid`` and ``tokens`` below keep it so, and convolutions on channels-last input give
channels-last output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from MedSegEfficientLib.networks.triton_switch import triton_usable


def grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) tokens as a (B, C, H, W) map in channels-last memory: a view."""
    return tokens.unflatten(1, (height, width)).permute(0, 3, 1, 2)


def tokens(grid_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map as (B, H*W, C) tokens: a view for channels-last maps, a copy otherwise."""
    return grid_map.permute(0, 2, 3, 1).flatten(1, 2)


def depthwise_tokens(conv: nn.Conv2d, x: torch.Tensor, height: int, width: int,
                     residual: torch.Tensor | None = None, silu: bool = False) -> torch.Tensor:
    """Tokens of ``act(conv(map of x)) (+ residual)`` for a depthwise convolution; on CUDA inference a 3x3 one
    runs as a single Triton kernel with bias, activation and residual fused (``networks/kernels/depthwise.py``)."""
    fusable = (conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
               and conv.dilation == (1, 1) and conv.groups == conv.in_channels == conv.out_channels
               and conv.bias is not None and conv.padding_mode == "zeros")
    if fusable and triton_inference(x, conv.weight):
        from MedSegEfficientLib.networks.kernels.depthwise import depthwise3x3_tokens

        return depthwise3x3_tokens(x, conv.weight, conv.bias, height, width, residual, "silu" if silu else None)
    out = tokens(conv(grid(x, height, width)))
    out = F.silu(out) if silu else out
    return out if residual is None else residual + out


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that leaves float16/bfloat16 input in its precision under autocast, and runs on CUDA
    inference as one Triton kernel (``layer_norm_triton.py``) where Triton is installed.

    Autocast runs layer norms in float32 and returns float32, which doubles the memory traffic of every norm
    and of the cast back before the next matrix product. Both kernels accumulate the statistics in float32 for
    half-precision input anyway, so the result differs only by the final rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = _fused_kernel_applies(x, self)
        keep_precision = x.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(x.device.type)
        if not (fused or keep_precision) or self.weight is None or self.bias is None:
            return super().forward(x)
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if fused:
            from MedSegEfficientLib.networks.kernels.layer_norm import layer_norm_rows

            return layer_norm_rows(x.contiguous(), weight, bias, self.eps)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


def _fused_kernel_applies(x: torch.Tensor, norm: nn.LayerNorm) -> bool:
    """An affine norm over one axis, in CUDA inference with Triton installed."""
    return len(norm.normalized_shape) == 1 and norm.weight is not None and norm.bias is not None \
        and triton_inference(x, norm.weight)


def triton_inference(x: torch.Tensor, *parameters: torch.Tensor) -> bool:
    """Whether an inference-only Triton kernel may replace torch's ops on ``x``: CUDA, Triton installed, and no
    gradient wanted (training keeps torch's kernels and their backward)."""
    wants_gradient = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in parameters))
    return x.is_cuda and not wants_gradient and triton_usable()

