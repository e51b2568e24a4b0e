#!/usr/bin/env bash
# Trains the shipped TM-UNet demo (2D, slice by slice) on the same data as the 3D demo; ran on this project's
# 2-core CPU (see docs/demo-models.md).
#   bash training/train_tm_unet_demo.sh DATASET_FOLDER OUTPUT.safetensors [extra medseg train options]
set -euo pipefail
data=${1:?dataset folder from training/make_demo_dataset.py}
out=${2:?output model file}
shift 2
medseg train "$data" -o "$out" --dims 2 \
  --name "Abdominal CT demo, TM-UNet t (2D slices, 3 mm)" \
  --description "TM-UNet t trained slice by slice on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use." \
  --network tm_unet --preset t --patch-size 128 128 --spacing 3 3 --batch-size 16 --lr 1e-3 \
  --epochs 60 --iterations-per-epoch 25 --max-minutes 25 --quiet "$@"
