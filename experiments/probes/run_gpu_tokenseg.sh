#!/usr/bin/env bash
# Issue 6 GPU figures (device tool's H100): TokenSeg-100 against its dense variant on single tiles; TokenSeg and the
# nnU-Net 3d_fullres peer through the same engine on a 512x512x256 volume (eager, then with CUDA graphs); then the TokenSeg demo model is trained
# and the share of its kept tokens on label boundaries is measured on the validation CT.
#   bash experiments/probes/run_gpu_tokenseg.sh DATASET [OUT_FOLDER]   (DATASET from training/make_demo_dataset.py)
set -euo pipefail
data=${1:?dataset folder from training/make_demo_dataset.py}
out=${2:-experiments/results}
mkdir -p "$out"
python3 experiments/probes/tokenseg_efficiency.py tiles --device cuda --sizes 128 192 --batches 1 4 \
  --json "$out/tokenseg_tiles_gpu.json"
medseg bench --device cuda --input 1x1x512x512x256 --repeat 3 \
  --networks tokenseg:tokenseg100,nnunet_plain:3d_fullres --json "$out/bench_gpu_3d_tokenseg.json"
medseg bench --cuda-graphs --device cuda --input 1x1x512x512x256 --repeat 3 \
  --networks tokenseg:tokenseg100,nnunet_plain:3d_fullres,tokenseg:dense --json "$out/bench_gpu_3d_tokenseg_graphs.json"
python3 benchmarks/cuda_graph_check.py --json "$out/cuda_graph_check.json" \
  --networks tokenseg:tokenseg100,tokenseg:dense,nnunet_plain:3d_fullres,medseg_unet:small,xlstm_unet:bot_3d
bash training/train_demo.sh abdomen_ct_tokenseg "$data" "$out/abdomen_ct_tokenseg.safetensors"
python3 experiments/probes/tokenseg_efficiency.py boundaries "$out/abdomen_ct_tokenseg.safetensors" "$data" --device cuda \
  --json "$out/tokenseg_boundaries_real_ct.json"
