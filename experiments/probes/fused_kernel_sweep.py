"""Times MLLA's fused Triton kernels per launch configuration at the shapes MLLA-UNet-T meets at 512^2, batch 32,
beside the torch ops they replace: median GPU time, effective bandwidth (the fewest bytes each must move) and the
compiler's registers and spills. Picks the defaults in networks/kernels/norm_linear.py, attention.py and
depthwise.py.

    python3 experiments/probes/fused_kernel_sweep.py [--stages 1,3] [--json FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from MedSegEfficientLib.networks.kernels import attention as attention_triton, depthwise as depthwise_triton, norm_linear as norm_linear_triton

STAGES = {1: (64, 2, 128), 2: (128, 4, 64), 3: (256, 8, 32), 4: (512, 16, 16)}  # width, heads, grid side
BATCH = 32


def _compiled(kernel) -> list:
    """Every compiled variant of a Triton kernel so far (the cache layout differs between Triton versions)."""
    found = []
    for caches in getattr(kernel, "device_caches", {}).values():
        found += list(caches[0].values())
    return found or list(getattr(kernel, "cache", {}).get(0, {}).values())


def _time(run, kernel, bytes_moved: float) -> dict:
    before = {id(k) for k in _compiled(kernel)} if kernel is not None else set()
    run()
    new = [k for k in _compiled(kernel) if id(k) not in before] if kernel is not None else []
    ms = do_bench(run, warmup=25, rep=100, return_mode="median")
    row = {"ms": round(ms, 4), "GB_per_s": round(bytes_moved / ms / 1e6, 1)}
    if new:
        row.update(registers=getattr(new[0], "n_regs", None), spills=getattr(new[0], "n_spills", None))
    return row


def sweep_stage(stage: int, kernels: set[str] | None = None) -> list[dict]:
    """Every configuration of the kernels named in ``kernels`` (all when None) at one stage's shapes."""
    channels, heads, side = STAGES[stage]
    tokens = side * side
    half = torch.float16
    x = torch.randn(BATCH, tokens, channels, device="cuda", dtype=half)
    size = x.numel() * 2  # bytes of one token tensor
    norm_weight, norm_bias = torch.randn(channels, device="cuda"), torch.randn(channels, device="cuda")
    w_in = (torch.randn(channels, 2 * channels, device="cuda") / channels ** 0.5).to(half)
    b_in = torch.zeros(2 * channels, device="cuda", dtype=half)
    fc1 = (torch.randn(channels, 4 * channels, device="cuda") / channels ** 0.5).to(half)
    fc2 = (torch.randn(4 * channels, channels, device="cuda") / (4 * channels) ** 0.5).to(half)
    b1, b2 = torch.zeros(4 * channels, device="cuda", dtype=half), torch.zeros(channels, device="cuda", dtype=half)
    qk = torch.randn(BATCH, tokens, 2 * channels, device="cuda", dtype=half)
    lepe, lepe_bias = torch.randn(channels, 9, device="cuda") / 3, torch.zeros(channels, device="cuda")
    out_t, out_bias = (torch.randn(channels, channels, device="cuda") / channels ** 0.5).to(half), b2
    gate = torch.randn(BATCH, tokens, 2 * channels, device="cuda", dtype=half)[..., channels:]
    memory, mean_key = attention_triton.attention_memory(qk, x, side, side, heads)
    rows = []

    def add(name: str, config: dict, run, kernel, bytes_moved: float) -> None:
        if kernels is not None and name not in kernels:
            return
        try:
            row = {"stage": stage, "kernel": name, **config, **_time(run, kernel, bytes_moved)}
        except Exception as error:  # a configuration the chip cannot hold (shared memory, registers)
            row = {"stage": stage, "kernel": name, **config, "error": type(error).__name__}
        rows.append(row)
        print_row(row)  # as it comes: a sweep of three stages compiles for minutes

    def torch_norm_linear():
        return F.linear(F.layer_norm(x, (channels,), norm_weight.half(), norm_bias.half()), w_in.t())

    def torch_mlp():
        normed = F.layer_norm(x, (channels,), norm_weight.half(), norm_bias.half())
        return x + F.linear(F.gelu(F.linear(normed, fc1.t(), b1)), fc2.t(), b2)

    add("torch LN+linear", {}, torch_norm_linear, None, 3 * size)
    add("torch LN+MLP+residual", {}, torch_mlp, None, 2 * size)
    for block_m, block_n, warps in itertools.product((32, 64, 128), (64, 128), (4, 8)):
        config = {"BLOCK_M": block_m, "BLOCK_N": block_n, "num_warps": warps}
        add("norm_linear", config, lambda: norm_linear_triton.norm_linear(
            x, norm_weight, norm_bias, 1e-5, w_in, b_in, channels, launch=config), norm_linear_triton._norm_linear,
            3 * size)
    for block_m, block_h, warps in itertools.product((32, 64, 128), (32, 64), (4, 8)):
        config = {"BLOCK_M": block_m, "BLOCK_H": block_h, "num_warps": warps}
        add("norm_mlp_residual", config, lambda: norm_linear_triton.norm_mlp_residual(
            x, norm_weight, norm_bias, 1e-5, fc1, b1, fc2, b2, launch=config),
            norm_linear_triton._norm_mlp_residual, 2 * size)
    for block_n, programs, warps in itertools.product((32, 64, 128), (512, 2048), (2, 4)):
        config = {"BLOCK_N": block_n, "programs": programs, "num_warps": warps}
        add("attention_memory", config, lambda: attention_triton.attention_memory(
            qk, x, side, side, heads, launch=dict(config)), attention_triton._attention_memory, 2 * size)
    for block_m, warps in itertools.product((32, 64, 128), (2, 4, 8)):
        config = {"BLOCK_M": block_m, "num_warps": warps}
        add("attention_output", config, lambda: attention_triton.attention_output(
            qk, x, gate, x, memory, mean_key, lepe, lepe_bias, out_t, out_bias, side, side, 1e-6,
            launch=config), attention_triton._attention_output, 5 * size)
    for block_m, warps in itertools.product((16, 32, 64, 128), (1, 2, 4)):
        config = {"BLOCK_M": block_m, "num_warps": warps}
        add("attention_gated", config, lambda: attention_triton.attention_gated(
            qk, x, gate, memory, mean_key, lepe, lepe_bias, side, side, 1e-6, launch=config),
            attention_triton._attention_gated, 4 * size)
    dw_weight, dw_bias = torch.randn(channels, 1, 3, 3, device="cuda", dtype=half), b2
    for tile, block_c, warps in itertools.product((512, 1024, 2048, 4096), (32, 64), (2, 4)):
        config = {"TILE": tile, "BLOCK_C": block_c, "num_warps": warps}
        add("depthwise+residual", config, lambda: depthwise_triton.depthwise3x3_tokens(
            x, dw_weight, dw_bias, side, side, residual=x, launch=config), depthwise_triton._depthwise3x3, 2 * size)
    return rows


def print_row(row: dict) -> None:
    """One short line: the device's reply shows only the end of the output."""
    config = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("stage", "kernel", "ms", "GB_per_s",
                                                                       "registers", "spills", "error"))
    figures = row.get("error") or f"{row['ms']:.3f} ms {row['GB_per_s']:.0f} GB/s r{row.get('registers')} s{row.get('spills')}"
    print(f"s{row['stage']} {row['kernel']:<22} {config:<34} {figures}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="1,3")
    parser.add_argument("--kernels", help="comma-separated names as printed (attention_output,depthwise+residual,...); "
                        "every configuration compiles once, so all kernels at three stages take over 8 minutes")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    kernels = set(args.kernels.split(",")) if args.kernels else None
    for stage in (int(s) for s in args.stages.split(",")):
        rows += sweep_stage(stage, kernels)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, stream, indent=1)


if __name__ == "__main__":
    main()
