"""The attention kernels of an earlier attention_triton.py beside today's, at MLLA-UNet-T's stage widths (512^2,
batch 32): median GPU time of each pass and the largest difference of the outputs.

    git show 2d6fccc:MedSegEfficient/MedSegEfficientLib/networks/attention_triton.py > /tmp/old_attention.py
    python3 experiments/probes/attention_kernels_ab.py /tmp/old_attention.py

The old file is the session-5 kernel (per-token RoPE tables, the pair swap as a second load at column c ^ 1).
"""

from __future__ import annotations

import importlib.util
import sys

import torch
from triton.testing import do_bench

from MedSegEfficientLib.networks.kernels import attention as new
from MedSegEfficientLib.networks.rope import ROPE_BASE, rope_tables


def main() -> None:
    spec = importlib.util.spec_from_file_location("old_attention", sys.argv[1])
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    half = torch.float16
    for channels, heads, side in ((64, 2, 128), (128, 4, 64), (256, 8, 32)):
        batch, tokens = 32, side * side
        qk = torch.randn(batch, tokens, 2 * channels, device="cuda", dtype=half)
        v = torch.randn(batch, tokens, channels, device="cuda", dtype=half)
        gate = torch.randn(batch, tokens, 2 * channels, device="cuda", dtype=half)[..., channels:]
        cos, signed_sin = rope_tables(side, side, channels, ROPE_BASE, v.device, torch.float32)
        lepe, lepe_bias = torch.randn(channels, 9, device="cuda") / 3, torch.zeros(channels, device="cuda")
        out_t = (torch.randn(channels, channels, device="cuda") / channels ** 0.5).half()
        out_bias = torch.zeros(channels, device="cuda", dtype=half)
        tail = (lepe, lepe_bias, out_t, out_bias, side, side, 1e-6)
        memory_old = old.attention_memory(qk, v, cos, signed_sin, heads)
        memory_new = new.attention_memory(qk, v, side, side, heads)
        runs = {
            "memory, old": lambda: old.attention_memory(qk, v, cos, signed_sin, heads),
            "memory, new": lambda: new.attention_memory(qk, v, side, side, heads),
            "output, old": lambda: old.attention_output(qk, v, gate, v, cos, signed_sin, *memory_old, *tail),
            "output, new": lambda: new.attention_output(qk, v, gate, v, *memory_new, *tail),
        }
        reference, ours = runs["output, old"]().float(), runs["output, new"]().float()
        difference = float((reference - ours).abs().max() / reference.abs().max())
        times = {name: 1000 * do_bench(run, warmup=25, rep=100, return_mode="median") for name, run in runs.items()}
        print(f"width {channels}: memory pass {times['memory, old']:.0f} -> {times['memory, new']:.0f} us, output "
              f"pass {times['output, old']:.0f} -> {times['output, new']:.0f} us, largest difference "
              f"{difference:.1e} of the output's range")


if __name__ == "__main__":
    main()
