#!/usr/bin/env bash
# MLLA-UNet-T's GPU throughput goal of issue 5 (at least 2x the nnU-Net 2d topology's slices/s at 512^2, batch 32,
# through the same engine, in the same call), with what backs it: the GPU kernels checked against torch, CUDA graph
# replay against the eager engine, the shipped token models' GPU paths with their trained weights, the raw
# network, per-kernel block times, and the eager engine.
#   bash benchmarks/run_gpu_mlla_throughput.sh [OUT_FOLDER] [SUFFIX]
# SUFFIX ends the figure files' names (default _gpu; the 2026-11-30 H200 run used _h200).
set -euo pipefail
out=${1:-experiments/results}
suffix=${2:-_gpu}
mkdir -p "$out"
rm -f "$out/profile_mlla_unet_t$suffix.json"  # appended to below
python3 benchmarks/token_network_check.py --json "$out/token_network_check.json" | tail -1
python3 experiments/probes/shipped_token_models_check.py --json "$out/shipped_token_models_check$suffix.json" | tail -3
medseg bench --device cuda --input 1x3x512x512x256 --batch-size 32 --repeat 3 \
  --networks mlla_unet:t,nnunet_plain:2d --json "$out/bench_2d_mlla$suffix.json"
python3 experiments/probes/profile_network.py --network mlla_unet:t --size 512 --batch 32 --repeat 10 --graphs \
  --json "$out/profile_mlla_unet_t$suffix.json"
python3 benchmarks/cuda_graph_check.py --networks mlla_unet:t --input 1x1x512x512x64 --batch 8 \
  --json "$out/cuda_graph_check_2d_mlla$suffix.json"
python3 experiments/probes/block_kernel_times.py --json "$out/block_kernel_times$suffix.json" | grep "^stage"
medseg bench --device cuda --input 1x3x512x512x256 --batch-size 32 --repeat 3 --no-cuda-graphs \
  --networks mlla_unet:t,nnunet_plain:2d --json "$out/bench_2d_mlla_eager$suffix.json"
