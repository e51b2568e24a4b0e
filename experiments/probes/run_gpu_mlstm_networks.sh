#!/usr/bin/env bash
# Issue 4 GPU figures (device tool's H100): the mLSTM backends side by side, then TM-UNet and xLSTM-UNet against
# the nnU-Net peers through the same engine (2D: 512^2 slices, batch 32; 3D: a 512x512x256 volume).
#   bash experiments/probes/run_gpu_mlstm_networks.sh [OUT_FOLDER]   (mlstm_kernels installed for the Triton backend)
set -euo pipefail
out=${1:-experiments/results}
mkdir -p "$out"
python3 experiments/probes/mlstm_scaling.py --device cuda --lengths 4096,16384,65536 --json "$out/mlstm_scaling_gpu.json"
medseg bench --device cuda --input 1x3x512x512x256 --batch-size 32 --repeat 2 \
  --networks tm_unet:t,tm_unet:s,tm_unet:b,xlstm_unet:bot_2d,xlstm_unet:enc_2d,nnunet_plain:2d \
  --json "$out/bench_gpu_2d_mlstm.json"
medseg bench --device cuda --input 1x1x512x512x256 --repeat 2 \
  --networks xlstm_unet:bot_3d,xlstm_unet:enc_3d,nnunet_plain:3d_fullres --json "$out/bench_gpu_3d_mlstm.json"
