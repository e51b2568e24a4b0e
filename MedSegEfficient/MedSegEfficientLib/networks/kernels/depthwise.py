"""A 3x3 depthwise convolution on (B, H*W, C) tokens (stride 1, stride 2, or transposed with stride 2) with its
bias, an optional SiLU or ReLU and an optional residual added, as one Triton kernel.

Why: MLLA-UNet runs four depthwise 3x3 convolutions per block (two position codes, the block's convolution and the
attention's LePE). On channels-last maps cuDNN adds their bias in a separate broadcast pass that torch does not
vectorise, and the residual sum and the SiLU are more passes: 20 % of MLLA-UNet-T's GPU time at 512^2
(experiments/probes/profile_network.py); MLLA-UNet's samplers ran the transposed one as cuDNN's gradient kernel with
ReLU as one more pass. Here each output is read once per tap from cache and written once. Inference
only; imported only where Triton is installed (``token_layout.depthwise_tokens`` decides).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


_MODES = {"same": 0, "stride2": 1, "transposed2": 2}
_ACTIVATIONS = {None: 0, "silu": 1, "relu": 2}
# Outputs per program and warps. 4096 outputs on 4 warps run at 12.5 % occupancy (registers) and 27-36 % of the
# H100's memory bandwidth under Nsight Compute, yet 1024-output tiles ran 1.7x slower: a row's neighbouring columns
# are reused from L1 only within a program (experiments/probes/block_kernel_times.py, experiments/benchmarks-log.md).
_TILE, _WARPS = 4096, 4


@triton.jit
def _depthwise3x3(x_ptr, weight_ptr, bias_ptr, residual_ptr, out_ptr, in_height, in_width, out_height, out_width,
                  channels, x_stride, MODE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                  ACTIVATION: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    image_row = tl.program_id(0)
    image = image_row // out_height
    row = image_row % out_height + tl.zeros([BLOCK_W, 1], dtype=tl.int32)  # a tensor: masks are tensor & tensor
    column = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[:, None]
    channel = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    channel_ok = channel < channels
    first = image.to(tl.int64) * out_height * out_width * channels
    x_first = image.to(tl.int64) * in_height * in_width * x_stride
    total = tl.zeros([BLOCK_W, BLOCK_C], dtype=tl.float32)
    for dy in tl.static_range(3):
        if MODE == 0:  # zero padding 1, stride 1
            source_row = row + dy - 1
            row_ok = (source_row >= 0) & (source_row < in_height)
        elif MODE == 1:  # zero padding 1, stride 2
            source_row = 2 * row + dy - 1
            row_ok = (source_row >= 0) & (source_row < in_height)
        else:  # transposed, stride 2, padding 1: output row = 2 * source row - 1 + dy
            shifted_row = row + 1 - dy
            source_row = shifted_row // 2
            row_ok = (shifted_row >= 0) & (shifted_row % 2 == 0) & (source_row < in_height)
        for dx in tl.static_range(3):
            if MODE == 0:
                source_column = column + dx - 1
                column_ok = (source_column >= 0) & (source_column < in_width)
            elif MODE == 1:
                source_column = 2 * column + dx - 1
                column_ok = (source_column >= 0) & (source_column < in_width)
            else:
                shifted_column = column + 1 - dx
                source_column = shifted_column // 2
                column_ok = (shifted_column >= 0) & (shifted_column % 2 == 0) & (source_column < in_width)
            inside = row_ok & column_ok & channel_ok
            position = (source_row * in_width + source_column).to(tl.int64)
            value = tl.load(x_ptr + x_first + position * x_stride + channel, mask=inside, other=0.0)
            tap = tl.load(weight_ptr + channel * 9 + dy * 3 + dx, mask=channel_ok, other=0.0)
            total += value.to(tl.float32) * tap.to(tl.float32)
    if HAS_BIAS:
        total += tl.load(bias_ptr + channel, mask=channel_ok, other=0.0).to(tl.float32)
    if ACTIVATION == 1:
        total = total * tl.sigmoid(total)
    elif ACTIVATION == 2:
        total = tl.maximum(total, 0.0)
    offsets = first + (row * out_width + column).to(tl.int64) * channels + channel
    written = (column < out_width) & channel_ok
    if HAS_RESIDUAL:
        total += tl.load(residual_ptr + offsets, mask=written, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=written)


def depthwise3x3_tokens(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, height: int, width: int,
                        residual: torch.Tensor | None = None, activation: str | None = None,
                        mode: str = "same", launch: dict | None = None) -> torch.Tensor:
    """act(depthwise3x3(x) + bias) (+ residual) for (B, H*W, C) CUDA tokens on an H x W grid; weight (C, 1, 3, 3).
    mode "same": zero padding 1, stride 1; "stride2": padding 1, stride 2 (output ceil(H/2) x ceil(W/2));
    "transposed2": ``ConvTranspose2d(stride=2, padding=1, output_padding=1)`` (output 2H x 2W). activation:
    None, "silu" or "relu". x may be a view of wider rows (channels contiguous, tokens ``x.stride(1)`` apart);
    the result is contiguous (B, out_H * out_W, C) in x's precision. ``launch``: ``TILE`` (outputs per program),
    ``BLOCK_C`` and ``num_warps`` to try instead of the defaults (experiments/probes/fused_kernel_sweep.py)."""
    batch, tokens, channels = x.shape
    if x.stride(2) != 1 or x.stride(0) != tokens * x.stride(1):
        x = x.contiguous()
    out_height, out_width = {"same": (height, width), "stride2": ((height + 1) // 2, (width + 1) // 2),
                             "transposed2": (2 * height, 2 * width)}[mode]
    out = x.new_empty(batch, out_height * out_width, channels)
    residual = residual.contiguous() if residual is not None else out  # not read without HAS_RESIDUAL
    config = {"TILE": _TILE, "BLOCK_C": min(64, triton.next_power_of_2(channels)), "num_warps": _WARPS, **(launch or {})}
    block_c = config["BLOCK_C"]
    block_w = max(1, min(triton.next_power_of_2(out_width), config["TILE"] // block_c))
    grid = (batch * out_height, triton.cdiv(out_width, block_w), triton.cdiv(channels, block_c))
    has_bias = bias is not None
    bias = bias if has_bias else weight  # not read without HAS_BIAS
    _depthwise3x3[grid](x, weight.reshape(channels, 9).contiguous(), bias, residual,
                        out, height, width, out_height, out_width, channels, x.stride(1), MODE=_MODES[mode],
                        HAS_BIAS=has_bias, HAS_RESIDUAL=residual is not out,
                        ACTIVATION=_ACTIVATIONS[activation], BLOCK_W=block_w, BLOCK_C=block_c,
                        num_warps=config["num_warps"])
    return out
