#!/usr/bin/env bash
# GPU figures of the host stages made on the GPU (the GPU-run issue, item 1) and of one GPU shared by 1 and 2 batch
# workers (the cohort issue, item 5), in one call on the device tool's H200:
#   bash experiments/probes/run_gpu_host_stages.sh OUT_FOLDER CT.npz     (CT.npz: engine_host_stages.py --save-npz)
# Each step runs even if one before it failed; the log says which.
set -uo pipefail
out=$1
npz=$2
mkdir -p "$out"
bench="python3 -m MedSegEfficientLib.cli bench --device cuda"
python3 experiments/probes/engine_host_stages.py --npz "$npz" --device cuda --json "$out/host_stages_clinical_ct_gpu.json" \
  || echo "FAILED: engine_host_stages"
$bench --input 1x3x512x512x256 --batch-size 32 --repeat 2 \
  --networks tm_unet:t,tm_unet:b,mlla_unet:t,nnunet_plain:2d --json "$out/host_stages_bench_2d_gpu.json" \
  || echo "FAILED: bench 2d"
$bench --input 1x3x1024x1024x256 --batch-size 16 --repeat 2 --networks hrmedseg:default \
  --json "$out/host_stages_bench_hrmedseg_gpu.json" || echo "FAILED: bench hrmedseg"
$bench --input 1x1x512x512x256 --repeat 2 --networks tokenseg:tokenseg100,xlstm_unet:bot_3d,nnunet_plain:3d_fullres \
  --json "$out/host_stages_bench_3d_gpu.json" || echo "FAILED: bench 3d"
python3 experiments/probes/gpu_worker_sharing.py --json "$out/gpu_worker_sharing.json" || echo "FAILED: worker sharing"
