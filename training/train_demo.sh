#!/usr/bin/env bash
# Trains a shipped demo model on the folder made by training/make_demo_dataset.py (one real CT to train, the
# DICOM series to validate). The shipped demos were trained on the device tool's NVIDIA H100; on a CPU add
# --device cpu and expect it to be much slower.
#   bash training/train_demo.sh DEMO_NAME DATASET OUTPUT.safetensors [options]   (DEMO_NAME: one of the cases below)
set -euo pipefail
model=${1:?which demo: abdomen_ct_demo, abdomen_ct_xlstm_unet_3d, abdomen_ct_tm_unet, abdomen_ct_mlla_unet, abdomen_ct_hrmedseg or abdomen_ct_tokenseg}
data=${2:?dataset folder from training/make_demo_dataset.py}
out=${3:?output model file}
shift 3
# 3D demos: 96^3 tiles at 3 mm; the 2D demos set their own slice grid.
grid=(--patch-size 96 96 96 --spacing 3 3 3 --batch-size 4 --workers 12)
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
  abdomen_ct_tm_unet)
    name="Abdominal CT demo, TM-UNet s 2D (axial slices, 1.5 mm)"
    description="TM-UNet (mLSTM token memory) run slice by slice, trained on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use."
    network=(--network tm_unet --preset s --dims 2 --lr 3e-3 --epochs 90 --max-minutes 6)
    grid=(--patch-size 224 224 --spacing 1.5 1.5 --batch-size 24 --workers 6) ;;
  abdomen_ct_mlla_unet)
    name="Abdominal CT demo, MLLA-UNet s 2D (axial slices, 1.5 mm)"
    description="MLLA-UNet (Mamba-like linear attention), small preset, run slice by slice, trained on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use."
    network=(--network mlla_unet --preset s --dims 2 --lr 1e-3 --epochs 120 --max-minutes 7.5)
    grid=(--patch-size 224 224 --spacing 1.5 1.5 --batch-size 24 --workers 6) ;;
  abdomen_ct_hrmedseg)
    name="Abdominal CT demo, HRMedSeg 2D (axial slices, 1 mm)"
    description="HRMedSeg (gated linear-attention encoder, cross-multiscale decoder) run slice by slice at high resolution, trained on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use."
    # 12 classes give 12 hypernetwork MLPs (4.9 M parameters): float16 storage keeps the file under 15 MB.
    network=(--network hrmedseg --preset default --dims 2 --lr 1e-3 --epochs 120 --max-minutes 7.5 --half-weights)
    grid=(--patch-size 384 384 --spacing 1 1 --batch-size 16 --workers 8) ;;
  abdomen_ct_tokenseg)
    name="Abdominal CT demo, TokenSeg-100 3D (3 mm)"
    description="TokenSeg (hierarchical sparse tokens, VQ, boundary-aware top-100, sparse-to-dense decoder) trained on one real CT (TotalSegmentator example_ct); a pipeline demo, not for clinical use."
    network=(--network tokenseg --preset tokenseg100 --lr 2e-3 --epochs 120 --max-minutes 4.5)
    grid=(--patch-size 128 128 128 --spacing 3 3 3 --batch-size 2 --workers 12) ;;
  *) echo "unknown demo '$model'" >&2; exit 2 ;;
esac
medseg train "$data" -o "$out" --name "$name" --description "$description" "${network[@]}" "${grid[@]}" \
  --iterations-per-epoch 50 --quiet "$@"
