"""GPU checks of the CUDA-only paths that issue 5's speed-ups added (CI has no GPU; the CPU tests cover the logic).

    python3 benchmarks/token_network_check.py [--json FILE]

1. The Triton layer norm against ``F.layer_norm`` for the widths the token networks use, float16 and float32;
   the Triton feature map + RoPE against the torch path of ``LinearAttention.features``; the Triton depthwise
   3x3 convolution (bias, SiLU, residual fused) against cuDNN's.
2. Pinned, prefetched axial slice batches on the GPU equal the plain host slices, bit for bit.
3. MLLA blocks (every stage width of MLLA-UNet-T), its stem, samplers and x4 head on the fused paths against
   their torch modules.
4. MLLA-UNet-T and HRMedSeg under fp16 autocast with all Triton kernels against torch alone.
Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.linear_attention import mlla_fused, token_layout
from MedSegEfficientLib.networks.kernels.layer_norm import layer_norm_rows
from MedSegEfficientLib.networks.linear_attention.attention import LinearAttention
from MedSegEfficientLib.networks.linear_attention.mlla_unet import MLLABlock
from MedSegEfficientLib.inference.gpu.slice_staging import slice_batches


def check_layer_norm() -> list[dict]:
    results = []
    for width in (32, 64, 96, 128, 256, 512):
        for dtype in (torch.float16, torch.float32):
            x = (torch.randn(3000, width, device="cuda") * 4 + 2).to(dtype)
            weight, bias = torch.randn(width, device="cuda").to(dtype), torch.randn(width, device="cuda").to(dtype)
            reference = F.layer_norm(x.float(), (width,), weight.float(), bias.float(), 1e-5)
            ours = layer_norm_rows(x, weight, bias, 1e-5)
            error = (ours.float() - reference).abs().max().item()
            limit = 2e-2 if dtype == torch.float16 else 1e-4
            results.append({"width": width, "dtype": str(dtype), "max_error": error, "ok": error < limit
                            and ours.dtype == dtype})
    return results


def check_features() -> list[dict]:
    results = []
    for channels, height, width in ((64, 128, 128), (96, 64, 64), (256, 33, 17)):
        torch.manual_seed(0)
        attention = LinearAttention(channels, heads=4).cuda()
        x = torch.randn(4, height * width, channels, device="cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            fused = attention.features(x, height, width)
            with mock.patch.object(token_layout, "_triton_installed", lambda: False):
                plain = attention.features(x, height, width)
        error = max(((a.float() - b.float()).abs().max() / b.float().abs().max()).item() for a, b in zip(fused, plain))
        results.append({"channels": channels, "grid": [height, width], "max_relative_error": error, "ok": error < 5e-3})
    return results


def check_depthwise() -> list[dict]:
    results = []
    for channels, height, width, silu, residual in ((64, 128, 128, False, True), (96, 64, 64, True, False),
                                                    (256, 17, 33, False, False), (512, 16, 16, True, True)):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels).cuda()
        x = torch.randn(3, height * width, channels, device="cuda", dtype=torch.float16)
        extra = torch.randn_like(x) if residual else None
        with torch.inference_mode():
            fused = token_layout.depthwise_tokens(conv, x, height, width, residual=extra, silu=silu)
            with mock.patch.object(token_layout, "_triton_installed", lambda: False):
                plain = token_layout.depthwise_tokens(conv.half(), x, height, width, residual=extra, silu=silu)
            conv.float()
        error = ((fused.float() - plain.float()).abs().max() / plain.float().abs().max()).item()
        results.append({"channels": channels, "grid": [height, width], "silu": silu, "residual": residual,
                        "max_relative_error": error, "ok": error < 5e-3 and fused.dtype == x.dtype})
    return results


def check_mlla_fused() -> list[dict]:
    """MLLA blocks and the x4 head on the fused kernels (mlla_fused.py) against their torch modules, fp16
    autocast; a block is judged on what it adds to its input (the residual would hide errors)."""
    results = []
    for channels, heads, height, width in ((64, 2, 128, 128), (128, 4, 64, 64), (256, 8, 33, 17), (512, 16, 16, 16)):
        torch.manual_seed(0)
        block = MLLABlock(channels, heads).cuda().eval()
        x = torch.randn(4, height * width, channels, device="cuda", dtype=torch.float16)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            fused = block(x, height, width).float() - x.float()
            with mock.patch.object(token_layout, "_triton_installed", lambda: False):
                plain = block(x, height, width).float() - x.float()
        error = ((fused - plain).abs().max() / plain.abs().max()).item()
        with torch.inference_mode():
            path = mlla_fused.block_path(block, x)
        results.append({"part": "block", "path": path.__name__ if path else "torch", "channels": channels,
                        "heads": heads, "grid": [height, width],
                        "max_relative_error": error, "ok": error < 2e-2})
    torch.manual_seed(0)
    network = build_network("mlla_unet", 2, 3, 14).cuda().eval()
    parts = (("stem", network.patch_embed, torch.randn(4, 3, 512, 512, device="cuda")),
             ("edsm", network.layers[0].downsample, torch.randn(4, 64, 128, 128, device="cuda")),
             ("eusm", network.layers_up[0].upsample, torch.randn(4, 256, 32, 32, device="cuda")),
             ("eusm", network.expand_bottom, torch.randn(4, 512, 15, 17, device="cuda")))
    for part, module, x in parts:
        x = x if part == "stem" else x.half().contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            fused = module(x).float()
            with mock.patch.object(token_layout, "_triton_installed", lambda: False):
                plain = module(x).float()
        error = ((fused - plain).abs().max() / plain.abs().max()).item()
        results.append({"part": part, "input": list(x.shape), "max_relative_error": error,
                        "ok": error < 1e-2 and fused.shape == plain.shape})
    for classes, height, width in ((14, 128, 128), (117, 30, 50)):
        torch.manual_seed(0)
        network = build_network("mlla_unet", 2, 1, classes).cuda().eval()
        grid = torch.randn(2, 64, height, width, device="cuda", dtype=torch.float16)
        grid = grid.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            fused = network.head(grid).float()
            with mock.patch.object(token_layout, "_triton_installed", lambda: False):
                plain = network.head(grid).float()
        error = ((fused - plain).abs().max() / plain.abs().max()).item()
        results.append({"part": "head", "classes": classes, "grid": [height, width], "max_relative_error": error,
                        "ok": error < 1e-2 and fused.shape == plain.shape})
    return results


def check_slice_batches() -> dict:
    array = np.random.default_rng(0).normal(size=(3, 70, 64, 48)).astype(np.float32)
    with torch.inference_mode():  # as the engine runs it: the helper thread must follow
        on_gpu = torch.cat([s.cpu() for _, s in slice_batches(array, 1, 16, torch.device("cuda"))])
    on_host = torch.cat([s for _, s in slice_batches(array, 1, 16, torch.device("cpu"))])
    return {"slices": int(on_gpu.shape[0]), "ok": bool(torch.equal(on_gpu, on_host))}


def check_networks() -> list[dict]:
    """Logits with the Triton norm against torch's: error relative to the logits' spread (random weights leave
    many near-ties between classes, so the argmax agreement is reported but not judged)."""
    results = []
    for name, size, batch in (("mlla_unet", 512, 8), ("hrmedseg", 1024, 4)):
        torch.manual_seed(0)
        network = build_network(name, 2, 3, 14).cuda().eval()
        image = torch.randn(batch, 3, size, size, device="cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            fused = network(image).float()
            with mock.patch.object(token_layout, "_triton_installed", lambda: False):
                plain = network(image).float()
        relative = ((fused - plain).abs().mean() / plain.std()).item()
        agreement = (fused.argmax(1) == plain.argmax(1)).float().mean().item()
        results.append({"network": name, "mean_error_over_std": relative, "class_agreement": agreement,
                        "ok": relative < 1e-2})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "layer_norm": check_layer_norm(), "features": check_features(), "depthwise": check_depthwise(),
              "mlla_fused": check_mlla_fused(),
              "slice_batches": check_slice_batches(), "networks": check_networks()}
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=1)
    passed = all(r["ok"] for r in report["layer_norm"] + report["features"] + report["depthwise"] + report["mlla_fused"]
                 + report["networks"]) and report["slice_batches"]["ok"]
    print("all checks passed" if passed else "A CHECK FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
