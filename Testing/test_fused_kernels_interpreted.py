"""The fused Triton paths of MLLA-UNet (mlla_fused.py, mlla_samplers_fused.py and their kernels) run in Triton's
CPU interpreter against the torch modules they stand in for. On the GPU the same comparisons run compiled, at
full size, in benchmarks/token_network_check.py; here they cover the kernels' logic: indexing, masks, odd grid
sizes, several token chunks, the RoPE pair swap, the heads' blocks, batch-norm folding, the dispatch rules."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before Triton is first imported: kernels run on the CPU

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytest.importorskip("triton")

from MedSegEfficientLib.networks.linear_attention import mlla_fused, mlla_samplers_fused  # noqa: E402
from MedSegEfficientLib.networks.kernels.depthwise import depthwise3x3_tokens  # noqa: E402
from MedSegEfficientLib.networks.linear_attention.mlla_unet import MLLABlock, MLLAUNet  # noqa: E402


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights and batch-norm statistics far from their initial values, so that no term can hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
        for norm in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator))
            norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
    return module.eval()


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours.float() - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("path, project_in_kernel", [("fused_block", True), ("fused_block", False),
                                                     ("wide_block", False)])
@pytest.mark.parametrize("channels, heads, height, width", [(64, 2, 12, 12), (32, 1, 5, 7)])
def test_fused_block_matches_the_block(path, project_in_kernel, channels, heads, height, width, monkeypatch):
    """Each fast path, and fused_block's attention projected in its kernel or by cuBLAS after a per-head pass."""
    monkeypatch.setattr(mlla_fused, "PROJECT_IN_KERNEL_MAX_WIDTH", 1024 if project_in_kernel else 0)
    block = _randomised(MLLABlock(channels, heads))
    x = torch.randn(2, height * width, channels)
    with torch.no_grad():
        reference = block(x, height, width) - x  # what the block adds: the residual would hide errors
        ours = getattr(mlla_fused, path)(block, x.half(), height, width).float() - x.half().float()
    assert ours.shape == reference.shape
    assert _relative_error(ours, reference) < 1e-2  # float16 operands, float32 accumulation


def test_attention_kernels_match_linear_attention():
    """The two attention passes alone (gate 1, identity output projection, no residual) against LinearAttention:
    RoPE's pair swap, the per-head memory over several token chunks, the normaliser and LePE."""
    from MedSegEfficientLib.networks.kernels.attention import attention_memory, attention_output
    from MedSegEfficientLib.networks.linear_attention.attention import LinearAttention

    channels, heads, height, width = 64, 2, 12, 13
    attention = _randomised(LinearAttention(channels, heads))
    y = torch.randn(2, height * width, channels)
    with torch.no_grad():
        reference = attention(y, height, width)
        half = y.half()
        qk = F.linear(half, attention.qk.weight.half(), attention.qk.bias.half())
        memory, mean_key = attention_memory(qk, half, height, width, heads)
        identity = torch.eye(channels, dtype=torch.float16)
        ours = attention_output(qk, half, torch.ones_like(half), torch.zeros_like(half), memory, mean_key,
                                attention.lepe.weight.reshape(channels, 9), attention.lepe.bias, identity,
                                torch.zeros(channels, dtype=torch.float16), height, width, 1e-6)
    assert memory.shape == (2, heads, channels // heads, channels // heads)
    assert _relative_error(ours, reference) < 1e-2


def test_fused_head_matches_the_head():
    network = _randomised(MLLAUNet(2, 1, 5, dim=32, depths=(1, 1), decoder_depths=(1,), heads=(1, 2)))
    grid = torch.randn(2, 32, 6, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = network.head(grid)
        ours = mlla_fused.fused_head(network, grid.permute(0, 2, 3, 1).flatten(1, 2).half().contiguous(), 6, 7)
    assert ours.shape == reference.shape == (2, 5, 24, 28)
    assert _relative_error(ours, reference) < 1e-2


def test_fused_stem_and_samplers_match_their_modules():
    network = _randomised(MLLAUNet(2, 3, 4, dim=32, depths=(1, 1), decoder_depths=(1,), heads=(1, 2)))
    image = torch.randn(2, 3, 36, 20)
    down_input = torch.randn(2, 32, 7, 6).contiguous(memory_format=torch.channels_last)
    up_input = torch.randn(2, 64, 5, 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # float32 throughout: the folding itself must be exact up to rounding
        pairs = [(mlla_samplers_fused.fused_stem(network.patch_embed, image, torch.float32), network.patch_embed(image)),
                 (mlla_samplers_fused.fused_downsample(network.layers[0].downsample, down_input),
                  network.layers[0].downsample(down_input)),
                 (mlla_samplers_fused.fused_upsample(network.expand_bottom, up_input), network.expand_bottom(up_input))]
    for ours, reference in pairs:
        assert ours.shape == reference.shape
        assert _relative_error(ours, reference) < 1e-5


@pytest.mark.parametrize("mode", ["same", "stride2", "transposed2"])
def test_depthwise_kernel_modes_match_torch(mode):
    channels, height, width = 24, 5, 6
    weight, bias = torch.randn(channels, 1, 3, 3), torch.randn(channels)
    grid = torch.randn(2, channels, height, width)
    wide = torch.randn(2, height * width, 2 * channels)
    wide[..., :channels] = grid.permute(0, 2, 3, 1).flatten(1, 2)  # a strided view, as the block passes it
    if mode == "transposed2":
        reference = F.relu(F.conv_transpose2d(grid, weight, bias, stride=2, padding=1, output_padding=1,
                                              groups=channels))
    else:
        reference = F.relu(F.conv2d(grid, weight, bias, stride=1 if mode == "same" else 2, padding=1,
                                    groups=channels))
    ours = depthwise3x3_tokens(wide[..., :channels], weight, bias, height, width, activation="relu", mode=mode)
    out_height, out_width = reference.shape[2:]
    assert ours.shape == (2, out_height * out_width, channels)
    torch.testing.assert_close(ours.unflatten(1, (out_height, out_width)).permute(0, 3, 1, 2), reference,
                               atol=1e-5, rtol=1e-5)


def test_fused_paths_are_for_half_precision_cuda_inference_only():
    block = MLLABlock(64, 2).eval()
    half_cpu = torch.randn(1, 16, 64).half()
    assert mlla_fused.block_path(block, half_cpu) is None  # CPU: torch's modules
    assert mlla_samplers_fused.inference_half_dtype(block, half_cpu) is None
    if torch.cuda.is_available():
        cuda_block = MLLABlock(64, 2).cuda().eval()
        with torch.no_grad():
            assert mlla_fused.block_path(cuda_block, half_cpu.cuda()) is mlla_fused.fused_block
            assert mlla_fused.block_path(cuda_block, half_cpu.cuda().float()) is None  # float32 stays in torch
            assert mlla_fused.block_path(cuda_block.train(), half_cpu.cuda()) is None  # training: autograd
            wide = mlla_fused.WIDE_BLOCK_MIN_WIDTH
            wide_block = MLLABlock(wide, wide // 32).cuda().eval()
            assert mlla_fused.block_path(wide_block, torch.randn(1, 16, wide).half().cuda()) is mlla_fused.wide_block


def test_prepared_weights_are_kept_until_a_parameter_changes():
    block = _randomised(MLLABlock(32, 1))
    first = mlla_fused.prepared(block, torch.float16, mlla_fused._block_weights)
    assert mlla_fused.prepared(block, torch.float16, mlla_fused._block_weights) is first
    with torch.no_grad():
        block.mlp.fc1.weight.mul_(2)  # as an optimiser step or a loaded state dict would
    second = mlla_fused.prepared(block, torch.float16, mlla_fused._block_weights)
    assert second is not first
    torch.testing.assert_close(second.fc1_t.float(), (block.mlp.fc1.weight.t()).half().float())
    assert mlla_fused.prepared(block, torch.bfloat16, mlla_fused._block_weights).fc1_t.dtype == torch.bfloat16
