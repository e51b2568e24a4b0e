#!/usr/bin/env bash
# Issue 4 linear-cost figures on the GPU (device tool's H100): time and peak memory against image size for
# TM-UNet t (2D, 256^2..1024^2, batch 1) and xLSTM-UNet Enc 3D (64^3..192^3), with the Triton and chunkwise
# mLSTM backends beside the quadratic parallel form (up to where it fits).
#   bash experiments/probes/run_gpu_scaling.sh [OUT_FOLDER]   (mlstm_kernels installed for the Triton backend)
set -euo pipefail
out=${1:-experiments/results}
mkdir -p "$out"
python3 benchmarks/scaling.py --network tm_unet:t --sizes 256,512,1024 --device cuda --repeat 5 \
  --backends triton,chunkwise,parallel --parallel-limit 1024 --json "$out/scaling_tm_unet_t_gpu.json"
python3 benchmarks/scaling.py --network xlstm_unet:enc_3d --dims 3 --sizes 64,128,192 --device cuda --repeat 3 \
  --backends triton,chunkwise,parallel --parallel-limit 128 --json "$out/scaling_xlstm_unet_enc_3d_gpu.json"
