#!/usr/bin/env bash
# The GPU-run issue's speed tries for xLSTM-UNet (items 3) and TM-UNet b (item 4) against nnU-Net's topologies, one
# engine, one GPU: channels-last weights, channels-last with an instance norm that keeps that order, CUDA graphs for
# 3D tiles, and torch.compile for TM-UNet b. mlstm_kernels (optional) installed, as the rows record.
#   bash experiments/probes/run_gpu_speed_tries.sh OUT_FOLDER        (experiments/results/speed_tries/, experiments/benchmarks-log.md)
set -euo pipefail
out=${1:?output folder}
mkdir -p "$out"
gate=experiments/probes/kernel_value_gate.py
python3 $gate --networks xlstm_unet:bot_3d --variants triton,channels-last,channels-last-graphs --repeat 2 \
  --caches cold --json "$out/a_xlstm_bot_3d.json"
python3 $gate --networks nnunet_plain:3d_fullres,xlstm_unet:enc_3d --variants triton,channels-last --repeat 2 \
  --caches cold --json "$out/b_3d.json"
python3 $gate --networks xlstm_unet:bot_2d,xlstm_unet:enc_2d,tm_unet:b,nnunet_plain:2d --variants triton,channels-last \
  --repeat 2 --caches cold --json "$out/c_2d.json"
python3 $gate --networks xlstm_unet:bot_3d,nnunet_plain:3d_fullres --variants triton,channels-last-norm --repeat 2 \
  --caches cold --json "$out/e_3d_norm.json"
python3 $gate --networks xlstm_unet:bot_2d --variants channels-last-norm --repeat 2 --caches cold \
  --json "$out/f_2d_norm.json"
python3 $gate --networks tm_unet:b --variants compile-default,channels-last-compile-default --repeat 2 --caches cold \
  --json "$out/d_tm_compile.json"
