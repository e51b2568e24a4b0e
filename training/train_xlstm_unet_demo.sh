#!/usr/bin/env bash
# Trains the shipped xLSTM-UNet 3D demo (Bot variant, a 5-stage plan small enough for a <= 10 MB file) on the same
# data as the other demos; ran on the device tool's NVIDIA H100 (see docs/benchmarks.md and the card).
#   bash training/train_xlstm_unet_demo.sh DATASET_FOLDER OUTPUT.safetensors [extra medseg train options]
set -euo pipefail
data=${1:?dataset folder from training/make_demo_dataset.py}
out=${2:?output model file}
shift 2
medseg train "$data" -o "$out" \
  --name "Abdominal CT demo, xLSTM-UNet Bot 3D (3 mm)" \
  --description "xLSTM-UNet (ViL bottleneck) trained on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use." \
  --network xlstm_unet --preset bot_3d \
  --args '{"plan": {"features": [16, 32, 48, 80, 112], "kernels": [3, 3, 3, 3, 3], "strides": [1, 2, 2, 2, 2], "blocks": [1, 1, 1, 1, 1]}}' \
  --patch-size 96 96 96 --spacing 3 3 3 --batch-size 4 --lr 2e-3 \
  --epochs 60 --iterations-per-epoch 50 --workers 12 --max-minutes 4 --quiet "$@"
