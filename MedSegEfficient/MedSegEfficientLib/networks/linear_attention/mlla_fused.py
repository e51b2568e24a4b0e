"""MLLA-UNet's blocks and head on the fused Triton kernels: the half-precision CUDA inference path.

Same maths as ``MLLABlock.forward`` and ``MLLAUNet.head`` (tests compare them, in Triton's CPU interpreter and on
the GPU in ``benchmarks/token_network_check.py``); what changes is how often the tokens cross memory. Two paths:

- ``fused_block`` (token widths 64-128 in MLLA-UNet-T): position code, norm + input/gate projection, depthwise
  conv + SiLU, the qk product (cuBLAS), the attention's memory pass, its output pass (one program per token tile
  and head: RoPE, memory, normaliser, LePE, gate), the output projection with bias and residual (cuBLAS), position
  code, norm + MLP + residual. Up to ``PROJECT_IN_KERNEL_MAX_WIDTH`` the output pass projects too, over all heads.
- ``wide_block`` (widths 256-512): the same attention kernels; every product, the MLP's too, is cuBLAS's.

Training and the CPU keep the torch modules.

The kernels take their weights transposed and in the activations' precision; those copies are made once and kept
on the module, remade when a parameter changes (its version counter) or moves.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from MedSegEfficientLib.networks.linear_attention.attention import NORMALISER_EPSILON, LinearAttention
from MedSegEfficientLib.networks.linear_attention.token_layout import triton_inference

_HALF = (torch.float16, torch.bfloat16)
# Token widths from WIDE_BLOCK_MIN_WIDTH up take ``wide_block`` (cuBLAS products around the Triton attention);
# narrower ones up to FUSED_BLOCK_MAX_WIDTH take ``fused_block``, whose kernels keep whole rows in registers.
FUSED_BLOCK_MAX_WIDTH = 256
WIDE_BLOCK_MIN_WIDTH = 256
WIDE_BLOCK_MAX_WIDTH = 2048
# In ``fused_block``, the attention's output pass applies the output projection itself up to this width; wider
# tokens get the gated attention from one program per head and cuBLAS's product (experiments/probes/profile_network.py).
PROJECT_IN_KERNEL_MAX_WIDTH = 32
HEAD_MAX_CLASSES = 256  # the fused head keeps a tile's class scores on chip


def _power_of_two(n: int, low: int, high: int) -> bool:
    return low <= n <= high and n & (n - 1) == 0


def block_path(block: nn.Module, x: torch.Tensor) -> Callable | None:
    """``fused_block`` or ``wide_block`` where one of them may run this block on these tokens, else None."""
    channels, attention = x.shape[-1], block.attn
    applies = (not block.training and x.dtype in _HALF and x.is_contiguous()
               and type(attention) is LinearAttention  # the kernels do exactly its maths; a subclass runs its own
               and not attention.value_bottleneck and _power_of_two(channels, 16, WIDE_BLOCK_MAX_WIDTH)
               and _power_of_two(channels // attention.heads, 16, 128) and triton_inference(x, block.norm1.weight))
    if applies and channels >= WIDE_BLOCK_MIN_WIDTH:
        return wide_block
    if applies and channels <= FUSED_BLOCK_MAX_WIDTH and block.mlp.fc1.out_features == 4 * channels:
        return fused_block
    return None


def head_applies(network: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``fused_head`` may run MLLA-UNet's head on these (B, N, C) tokens."""
    return (not network.training and x.dtype in _HALF and x.is_contiguous() and _power_of_two(x.shape[-1], 16, 128)
            and network.output.out_channels <= HEAD_MAX_CLASSES and triton_inference(x, network.final_expand.weight))


def prepared(module: nn.Module, dtype: torch.dtype, make: Callable[[nn.Module, torch.dtype], SimpleNamespace],
              sources: list[nn.Module] | None = None) -> SimpleNamespace:
    """``make(module, dtype)``, kept on the module until a parameter or buffer (batch-norm statistics) of
    ``sources`` (default: the module) changes."""
    tensors = [t for source in sources or [module] for t in (*source.parameters(), *source.buffers())]
    stamp = (dtype,) + tuple((t.data_ptr(), t._version) for t in tensors)
    kept = module.__dict__.get("_fused_weights")
    if kept is None or kept[0] != stamp:
        with torch.no_grad():
            kept = (stamp, make(module, dtype))
        module.__dict__["_fused_weights"] = kept
    return kept[1]


def _block_weights(block: nn.Module, dtype: torch.dtype) -> SimpleNamespace:
    mlp, attention = block.mlp, block.attn
    channels = block.norm1.normalized_shape[0]
    return SimpleNamespace(
        in_gate_t=torch.cat([block.in_proj.weight, block.act_proj.weight]).t().contiguous().to(dtype),
        in_gate_bias=torch.cat([block.in_proj.bias, block.act_proj.bias]).to(dtype),
        qk=attention.qk.weight.to(dtype), qk_bias=None if attention.qk.bias is None else attention.qk.bias.to(dtype),
        lepe=attention.lepe.weight.reshape(channels, 9).contiguous(), lepe_bias=attention.lepe.bias.contiguous(),
        out_t=block.out_proj.weight.t().contiguous().to(dtype), out_bias=block.out_proj.bias.to(dtype),
        fc1_t=mlp.fc1.weight.t().contiguous().to(dtype), fc1_bias=mlp.fc1.bias.to(dtype),
        fc2_t=mlp.fc2.weight.t().contiguous().to(dtype), fc2_bias=mlp.fc2.bias.to(dtype),
        norm1_weight=block.norm1.weight.to(dtype), norm1_bias=block.norm1.bias.to(dtype),
        norm2_weight=block.norm2.weight.to(dtype), norm2_bias=block.norm2.bias.to(dtype))


def fused_block(block: nn.Module, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``MLLABlock.forward`` for contiguous (B, H*W, C) half-precision tokens, in inference."""
    from MedSegEfficientLib.networks.kernels.attention import attention_gated, attention_memory, attention_output
    from MedSegEfficientLib.networks.kernels.depthwise import depthwise3x3_tokens
    from MedSegEfficientLib.networks.kernels.norm_linear import norm_linear, norm_mlp_residual

    weights = prepared(block, x.dtype, _block_weights)
    channels = x.shape[-1]
    x = depthwise3x3_tokens(x, block.cpe1.weight, block.cpe1.bias, height, width, residual=x)
    projected = norm_linear(x, block.norm1.weight, block.norm1.bias, block.norm1.eps, weights.in_gate_t,
                            weights.in_gate_bias, silu_from=channels)  # (B, N, 2C): input, then SiLU(gate)
    y = depthwise3x3_tokens(projected[..., :channels], block.dwc.weight, block.dwc.bias, height, width,
                            activation="silu")
    qk = F.linear(y, weights.qk, weights.qk_bias)
    memory, mean_key = attention_memory(qk, y, height, width, block.attn.heads)
    if channels <= PROJECT_IN_KERNEL_MAX_WIDTH:
        x = attention_output(qk, y, projected[..., channels:], x, memory, mean_key, weights.lepe,
                             weights.lepe_bias, weights.out_t, weights.out_bias, height, width, NORMALISER_EPSILON)
    else:
        gated = attention_gated(qk, y, projected[..., channels:], memory, mean_key, weights.lepe, weights.lepe_bias,
                                height, width, NORMALISER_EPSILON, gate_silu=False)
        x = _plus_product(x, gated, weights.out_t, weights.out_bias)
    x = depthwise3x3_tokens(x, block.cpe2.weight, block.cpe2.bias, height, width, residual=x)
    return norm_mlp_residual(x, block.norm2.weight, block.norm2.bias, block.norm2.eps, weights.fc1_t,
                             weights.fc1_bias, weights.fc2_t, weights.fc2_bias)


def wide_block(block: nn.Module, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``MLLABlock.forward`` for wide contiguous (B, H*W, C) half-precision tokens, in inference.

    Past width 128 the fused kernels' products run far below cuBLAS (a block at width 256 spent 315 of its 533 us
    in the attention's output pass and the MLP kernel on the H100): here every product is cuBLAS's, bias in its
    epilogue, and Triton keeps what cuBLAS cannot fuse: the position codes, the depthwise conv, the layer norms and
    the attention with LePE, normaliser and gate, one program per token tile and head."""
    from MedSegEfficientLib.networks.kernels.attention import attention_gated, attention_memory
    from MedSegEfficientLib.networks.kernels.depthwise import depthwise3x3_tokens
    from MedSegEfficientLib.networks.kernels.layer_norm import layer_norm_rows

    weights = prepared(block, x.dtype, _block_weights)
    channels = x.shape[-1]
    x = depthwise3x3_tokens(x, block.cpe1.weight, block.cpe1.bias, height, width, residual=x)
    normed = layer_norm_rows(x, weights.norm1_weight, weights.norm1_bias, block.norm1.eps)
    projected = torch.addmm(weights.in_gate_bias, normed.flatten(0, 1), weights.in_gate_t).view(*x.shape[:2], -1)
    y = depthwise3x3_tokens(projected[..., :channels], block.dwc.weight, block.dwc.bias, height, width,
                            activation="silu")
    qk = F.linear(y, weights.qk, weights.qk_bias)
    memory, mean_key = attention_memory(qk, y, height, width, block.attn.heads)
    gated = attention_gated(qk, y, projected[..., channels:], memory, mean_key, weights.lepe, weights.lepe_bias,
                            height, width, NORMALISER_EPSILON)
    x = _plus_product(x, gated, weights.out_t, weights.out_bias)
    x = depthwise3x3_tokens(x, block.cpe2.weight, block.cpe2.bias, height, width, residual=x)
    normed = layer_norm_rows(x, weights.norm2_weight, weights.norm2_bias, block.norm2.eps)
    hidden = torch.addmm(weights.fc1_bias, normed.flatten(0, 1), weights.fc1_t)
    return _plus_product(x, F.gelu(hidden), weights.fc2_t, weights.fc2_bias)


def _plus_product(residual: torch.Tensor, a: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """residual + a @ weight_t + bias: the bias in cuBLAS's epilogue, the residual in one vectorised pass (adding a
    broadcast bias to the residual instead would take torch's slower strided kernel)."""
    product = torch.addmm(bias, a.reshape(-1, a.shape[-1]), weight_t)
    return product.view(residual.shape).add_(residual)


def _head_weights(network: nn.Module, dtype: torch.dtype) -> SimpleNamespace:
    from triton import next_power_of_2

    dim = network.final_expand.in_features
    classes = network.output.out_channels
    # final_expand row s * dim + c is channel c of sub-pixel s (the authors' order): (16, C_in, C_out) per sub-pixel.
    expand_t = network.final_expand.weight.unflatten(0, (16, dim)).permute(0, 2, 1).contiguous().to(dtype)
    project_t = torch.zeros(dim, max(16, next_power_of_2(classes)), dtype=dtype, device=expand_t.device)
    project_t[:, :classes] = network.output.weight.flatten(1).t()
    return SimpleNamespace(expand_t=expand_t, project_t=project_t)


def fused_head(network: nn.Module, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``MLLAUNet.head`` for contiguous (B, H*W, C) half-precision tokens, in inference: (B, K, 4H, 4W)."""
    from MedSegEfficientLib.networks.kernels.expand_head import expand_head

    weights = prepared(network, tokens.dtype, _head_weights, [network.final_expand, network.output])
    up, final = network.norm_up, network.final_norm
    return expand_head(tokens, up.weight, up.bias, up.eps, weights.expand_t, final.weight, final.bias, final.eps,
                       weights.project_t, network.output.out_channels, height, width)
