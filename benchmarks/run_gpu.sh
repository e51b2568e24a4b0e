#!/usr/bin/env bash
# GPU figures recorded in experiments/benchmarks-log.md (run on the device tool's NVIDIA H100): a 512x512x256 synthetic CT
# through the same engine for the demo model and the peers, and the clinical-size CT end to end (cold process
# and warm), with the demo model.
#   bash benchmarks/run_gpu.sh [OUT_FOLDER]
set -euo pipefail
out=${1:-experiments/results}
mkdir -p "$out"
python3 benchmarks/startup_profile.py --json "$out/startup_gpu.json"
python3 benchmarks/make_clinical_ct.py /tmp/medseg_clinical_ct.nii.gz ${CLINICAL_SOURCE:+--source "$CLINICAL_SOURCE"}
python3 benchmarks/end_to_end.py /tmp/medseg_clinical_ct.nii.gz --device cuda --json "$out/end_to_end_gpu.json"
# The same network at 1.5 mm (the goal's "full resolution"): speed only, the demo was trained at 3 mm.
python3 benchmarks/end_to_end.py /tmp/medseg_clinical_ct.nii.gz --device cuda --spacing 1.5 \
  --json "$out/end_to_end_gpu_1.5mm.json"
medseg bench --device cuda --input 1x1x512x512x256 \
  --networks abdomen_ct_demo,nnunet_plain:3d_fullres,monai_unet:default,monai_segresnet,nnunet_plain:2d \
  --json "$out/bench_gpu.json"
