#!/usr/bin/env bash
# Trains a shipped demo model on the folder made by training/make_demo_dataset.py (one real CT to train, the
# DICOM series to validate). Both shipped demos were trained on the device tool's NVIDIA H100; on a CPU add
# --device cpu and expect it to be much slower.
#   bash training/train_demo.sh abdomen_ct_demo|abdomen_ct_xlstm_unet_3d DATASET_FOLDER OUTPUT.safetensors [options]
set -euo pipefail
model=${1:?which demo: abdomen_ct_demo or abdomen_ct_xlstm_unet_3d}
data=${2:?dataset folder from training/make_demo_dataset.py}
out=${3:?output model file}
shift 3
case "$model" in
  abdomen_ct_demo)
    name="Abdominal CT demo (11 structures, 3 mm)"
    description="Small 3D U-Net trained on one real CT (TotalSegmentator example_ct) to show the pipeline end to end; not for clinical use."
    network=(--network medseg_unet --preset small --lr 2e-3 --epochs 130 --max-minutes 6) ;;
  abdomen_ct_xlstm_unet_3d)
    name="Abdominal CT demo, xLSTM-UNet Bot 3D (3 mm)"
    description="xLSTM-UNet (ViL bottleneck) trained on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use."
    plan='{"plan": {"features": [16, 32, 48, 80, 112], "kernels": [3, 3, 3, 3, 3], "strides": [1, 2, 2, 2, 2], "blocks": [1, 1, 1, 1, 1]}}'
    network=(--network xlstm_unet --preset bot_3d --args "$plan" --lr 2e-3 --epochs 60 --max-minutes 4) ;;
  *) echo "unknown demo '$model'" >&2; exit 2 ;;
esac
medseg train "$data" -o "$out" --name "$name" --description "$description" "${network[@]}" \
  --patch-size 96 96 96 --spacing 3 3 3 --batch-size 4 --iterations-per-epoch 50 --workers 12 --quiet "$@"
