"""MLLA-UNet's stem and its EDSM / EUSM samplers for half-precision CUDA inference.

Why: at 512^2 these convolution stacks spent a third of the network's GPU time on passes that are not
arithmetic: batch norms applied as separate kernels, cuDNN's separate bias pass over channels-last maps, ReLU as
its own pass, and a transposed depthwise convolution run as a gradient kernel. Here batch norms are folded into
the convolution before them (inference statistics: exact up to rounding), 1x1 convolutions are matrix products on
the token view with bias and ReLU in cuBLAS's epilogue, 3x3 convolutions with ReLU go through cuDNN's fused
conv+bias+ReLU, and the depthwise stride-2 and transposed convolutions are one Triton kernel each with their bias
and ReLU (``depthwise_triton.py``). Same maths as the modules' forward; tests compare them.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from MedSegEfficientLib.networks.linear_attention.mlla_fused import prepared
from MedSegEfficientLib.networks.linear_attention.token_layout import grid as _grid
from MedSegEfficientLib.networks.linear_attention.token_layout import triton_inference
from MedSegEfficientLib.networks.linear_attention.token_layout import tokens as _tokens


def inference_half_dtype(module: nn.Module, x: torch.Tensor) -> torch.dtype | None:
    """The half precision the fused path runs ``module`` in on ``x`` (x's own, or autocast's on CUDA), or None
    where the module's own forward must run (training, gradients, the CPU, float32, no Triton)."""
    if module.training or not triton_inference(x, *module.parameters()):
        return None
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.dtype
    if torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") in (torch.float16, torch.bfloat16):
        return torch.get_autocast_dtype("cuda")
    return None


def folded(unit: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a ``ConvBatchNormAct``'s convolution with its batch norm (running statistics) folded in."""
    conv, norm = unit.conv, unit.norm
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if norm is None:
        return weight, bias
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return weight * scale.view(-1, 1, 1, 1), (bias - norm.running_mean) * scale + norm.bias


def _pointwise(unit: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = folded(unit)
    return weight.flatten(1).t().contiguous().to(dtype), bias.to(dtype)  # (in, out) for x @ W


def _spatial(unit: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = folded(unit)
    return weight.to(dtype).contiguous(memory_format=torch.channels_last), bias.to(dtype)


def pointwise_tokens(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor, relu: bool) -> torch.Tensor:
    """(..., C_in) tokens @ weight_t + bias (ReLU'd) in one cuBLAS call."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch._addmm_activation(bias, flat, weight_t) if relu else torch.addmm(bias, flat, weight_t)
    return out.view(*x.shape[:-1], weight_t.shape[1])


def _conv(x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor], unit: nn.Module) -> torch.Tensor:
    conv = unit.conv
    arguments = (weights[0], weights[1], conv.stride, conv.padding, conv.dilation, conv.groups)
    if unit.act is None:
        return torch.nn.functional.conv2d(x, *arguments)
    if x.is_cuda:
        return torch.cudnn_convolution_relu(x, *arguments)
    return torch.relu(torch.nn.functional.conv2d(x, *arguments))  # the same, where tests run it on the CPU


def _stem_weights(stem: nn.Module, dtype: torch.dtype) -> SimpleNamespace:
    return SimpleNamespace(conv1=_spatial(stem.conv1, dtype), conv2a=_spatial(stem.conv2[0], dtype),
                           conv2b=_spatial(stem.conv2[1], dtype), conv3a=_spatial(stem.conv3[0], dtype),
                           conv3b=_pointwise(stem.conv3[1], dtype))


def fused_stem(stem: nn.Module, image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``Stem.forward`` in ``dtype``: a channels-last (B, dim, H/4, W/4) map."""
    weights = prepared(stem, dtype, _stem_weights)
    x = _conv(image.to(dtype).contiguous(memory_format=torch.channels_last), weights.conv1, stem.conv1)
    x = _conv(_conv(x, weights.conv2a, stem.conv2[0]), weights.conv2b, stem.conv2[1]) + x
    x = _conv(x, weights.conv3a, stem.conv3[0])
    height, width = x.shape[2:]
    return _grid(pointwise_tokens(_tokens(x), *weights.conv3b, relu=False), height, width)


def _downsample_weights(sampler: nn.Module, dtype: torch.dtype) -> SimpleNamespace:
    expand, depthwise, reduce = sampler.conv
    return SimpleNamespace(expand=_pointwise(expand, dtype), depthwise=folded(depthwise),
                           reduce=_pointwise(reduce, dtype))


def fused_downsample(sampler: nn.Module, grid: torch.Tensor) -> torch.Tensor:
    """``Downsample.forward`` (EDSM) for a channels-last half-precision map."""
    from MedSegEfficientLib.networks.kernels.depthwise import depthwise3x3_tokens

    weights = prepared(sampler, grid.dtype, _downsample_weights)
    height, width = grid.shape[2:]
    hidden = pointwise_tokens(_tokens(grid), *weights.expand, relu=True)
    hidden = depthwise3x3_tokens(hidden, *weights.depthwise, height, width, activation="relu", mode="stride2")
    out = pointwise_tokens(hidden, *weights.reduce, relu=False)
    return _grid(out, (height + 1) // 2, (width + 1) // 2)


def _upsample_weights(sampler: nn.Module, dtype: torch.dtype) -> SimpleNamespace:
    return SimpleNamespace(expand=_pointwise(sampler.expand, dtype), reduce=_pointwise(sampler.reduce, dtype))


def fused_upsample(sampler: nn.Module, grid: torch.Tensor) -> torch.Tensor:
    """``Upsample.forward`` (EUSM) for a channels-last half-precision map."""
    from MedSegEfficientLib.networks.kernels.depthwise import depthwise3x3_tokens

    weights = prepared(sampler, grid.dtype, _upsample_weights)
    height, width = grid.shape[2:]
    hidden = pointwise_tokens(_tokens(grid), *weights.expand, relu=True)
    hidden = depthwise3x3_tokens(hidden, sampler.up.weight, None, height, width,
                                 activation="relu" if sampler.relu_after_up else None, mode="transposed2")
    out = sampler.norm(pointwise_tokens(hidden, *weights.reduce, relu=False))
    return _grid(out, 2 * height, 2 * width)
