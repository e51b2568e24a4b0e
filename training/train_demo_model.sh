#!/usr/bin/env bash
# Trains the shipped abdominal CT demo model. Ran on the device tool's NVIDIA H100 (see docs/demo-model.md);
# on a CPU it also works, only slower (pass --device cpu and fewer epochs).
#   bash training/train_demo_model.sh DATASET_FOLDER OUTPUT.safetensors [extra medseg train options]
set -euo pipefail
data=${1:?dataset folder from training/make_demo_dataset.py}
out=${2:?output model file}
shift 2
medseg train "$data" -o "$out" \
  --name "Abdominal CT demo (11 structures, 3 mm)" \
  --description "Small 3D U-Net trained on one real CT (TotalSegmentator example_ct) to show the pipeline end to end; not for clinical use." \
  --network medseg_unet --preset small \
  --patch-size 96 96 96 --spacing 3 3 3 --batch-size 4 --lr 2e-3 \
  --epochs 130 --iterations-per-epoch 50 --workers 12 --max-minutes 6 --quiet "$@"
