"""The speed-ups of MLLA-UNet and HRMedSeg change no result: views instead of layout copies, the class head
without the full-resolution map, separable pooling, half-precision layer norms (issue 5, deliverable 8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.linear_attention.hrmedseg import MULTISCALE_POOLS, multiscale_keys
from MedSegEfficientLib.networks.linear_attention.mlla_unet import FINAL_HEAD_CHUNK
from MedSegEfficientLib.networks.linear_attention.token_layout import LayerNorm, _fused_kernel_applies, grid, tokens

TINY_MLLA = {"dim": 16, "depths": [1, 1, 1, 1], "heads": [1, 1, 2, 2], "decoder_depths": [1, 1, 1]}


def test_tokens_and_channels_last_maps_are_views_of_each_other():
    x = torch.randn(2, 6 * 5, 8)
    as_map = grid(x, 6, 5)
    assert as_map.shape == (2, 8, 6, 5) and as_map.data_ptr() == x.data_ptr()
    assert as_map.is_contiguous(memory_format=torch.channels_last)
    back = tokens(as_map)
    assert back.data_ptr() == x.data_ptr() and torch.equal(back, x)
    assert torch.equal(as_map[1, 3, 4, 2], x[1, 4 * 5 + 2, 3])  # channel 3 of the token at row 4, column 2


def _pixel_shuffle_head(network, decoded):
    """MLLA-UNet's head as the authors' FinalPatchExpand_X4 computes it: expand, rearrange
    'b h w (p1 p2 c) -> b (h p1) (w p2) c', layer norm, 1x1 convolution."""
    batch, dim, height, width = decoded.shape
    expanded = network.final_expand(network.norm_up(tokens(decoded)))  # (B, N, 16 dim)
    full = (expanded.reshape(batch, height, width, 4, 4, dim).permute(0, 1, 3, 2, 4, 5)
            .reshape(batch, 4 * height, 4 * width, dim).permute(0, 3, 1, 2))
    normed = F.layer_norm(full.permute(0, 2, 3, 1), (dim,), network.final_norm.weight, network.final_norm.bias,
                          network.final_norm.eps).permute(0, 3, 1, 2)
    return network.output(normed)


def test_mlla_head_equals_expand_then_pixel_shuffle_over_several_chunks():
    torch.manual_seed(0)
    network = build_network("mlla_unet", 2, 1, 4, args=TINY_MLLA).eval()
    decoded = torch.randn(FINAL_HEAD_CHUNK + 3, 16, 5, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ours = network.head(decoded)
        reference = _pixel_shuffle_head(network, decoded)
    assert ours.shape == (FINAL_HEAD_CHUNK + 3, 4, 20, 28)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)


def test_multiscale_keys_equal_the_two_dimensional_pools():
    torch.manual_seed(0)
    keys = torch.randn(2, 9 * 11, 6)
    as_map = keys.transpose(1, 2).reshape(2, 6, 9, 11)
    expected = as_map.clone()
    for size in MULTISCALE_POOLS:
        expected = expected + F.avg_pool2d(as_map, size, stride=1, padding=size // 2, count_include_pad=False) - as_map
    torch.testing.assert_close(multiscale_keys(keys, 9, 11), expected.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_layer_norm_keeps_half_precision_under_autocast_and_matches_float32():
    torch.manual_seed(0)
    norm = LayerNorm(32)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(4, 10, 32) * 3 + 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x.bfloat16())  # on CUDA, autocast alone would return float32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), F.layer_norm(x, (32,), norm.weight, norm.bias), atol=0.05, rtol=0.02)
    assert norm(x).dtype == torch.float32  # outside autocast: nn.LayerNorm itself


def test_fused_layer_norm_is_for_cuda_inference_only():
    norm = LayerNorm(8)
    cpu = torch.randn(3, 8)
    assert not _fused_kernel_applies(cpu, norm)  # the CPU keeps torch's kernel
    if torch.cuda.is_available():
        x = cpu.cuda()
        norm = norm.cuda()
        with torch.no_grad():
            assert _fused_kernel_applies(x, norm) == _triton_installed()
        assert not _fused_kernel_applies(x, norm)  # training: autograd needs torch's kernel


def _triton_installed():
    import importlib.util
    return importlib.util.find_spec("triton") is not None


@pytest.mark.parametrize("name, args", [("mlla_unet", TINY_MLLA), ("hrmedseg", {})])
def test_networks_keep_training_gradients(name, args):
    torch.manual_seed(0)
    network = build_network(name, 2, 1, 3, args=args).train()
    network(torch.randn(2, 1, 64, 64)).square().mean().backward()
    missing = [n for n, p in network.named_parameters() if p.grad is None]
    assert not missing or name == "hrmedseg" and all("iou" in n or "hypernetworks" in n or "output_tokens" in n for n in missing), missing


def test_token_networks_run_on_the_cpu_where_triton_is_not_installed(monkeypatch):
    """A Slicer without Triton (macOS, Windows, CPU builds): deciding against the fused paths imports no kernel."""
    import sys

    from MedSegEfficientLib.networks import triton_switch

    monkeypatch.setitem(sys.modules, "triton", None)  # "import triton" now raises ImportError
    for kernel_module in [name for name in sys.modules if ".networks.kernels." in name]:
        monkeypatch.delitem(sys.modules, kernel_module)
    monkeypatch.setattr(triton_switch, "_installed", lambda: False)
    for name, args in (("mlla_unet", TINY_MLLA), ("hrmedseg", {})):
        network = build_network(name, 2, 3, 2, args=args).eval()
        size = 64 if name == "mlla_unet" else 128
        with torch.inference_mode():
            out = network(torch.randn(1, 3, size, size))
        assert out.shape == (1, 2, size, size) and torch.isfinite(out).all()
