#!/usr/bin/env bash
# CPU figures recorded in experiments/benchmarks-log.md: the clinical-size CT end to end with the demo model, and the
# networks side by side through the same engine on a CI-sized synthetic volume.
#   bash benchmarks/run_cpu.sh [OUT_FOLDER]     (run from the repository root with the venv's python first in PATH)
set -euo pipefail
out=${1:-experiments/results}
mkdir -p "$out"
python benchmarks/make_clinical_ct.py /tmp/medseg_clinical_ct.nii.gz
python benchmarks/end_to_end.py /tmp/medseg_clinical_ct.nii.gz --device cpu --json "$out/end_to_end_cpu.json"
python benchmarks/end_to_end.py /tmp/medseg_clinical_ct.nii.gz --device cpu --spacing 1.5 --repeat 1 \
  --json "$out/end_to_end_cpu_1.5mm.json"
medseg bench --device cpu --threads 2 --repeat 1 --input 1x1x192x192x64 --patch 64 --batch-size 2 \
  --networks abdomen_ct_demo,monai_unet:small,monai_unet:default,monai_segresnet,nnunet_plain:3d_fullres \
  --json "$out/bench_cpu.json"
