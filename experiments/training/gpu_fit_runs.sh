#!/usr/bin/env bash
# Train several prepared runs at once on one GPU machine (medseg fit), as the shipped brain and nuclei models
# were: each run is one line of RUNS below, "OUTPUT_NAME PREPARED_FILE [medseg fit options]". Models and a tar of
# their training logs go to $OUT. Run from the repository root, with monai's wheel (and the prepared files) in
# .gpu/ when the machine lacks them:   OUT=/tmp/out bash experiments/training/gpu_fit_runs.sh RUNS_FILE
set -uo pipefail
runs_file=$1
out=${OUT:-out}
mkdir -p "$out" /tmp/fit_logs
if ls .gpu/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/MedSegEfficient:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
pids=()
while read -r name prepared options; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  # shellcheck disable=SC2086  # the options are words on purpose
  eval python3 -m MedSegEfficientLib.cli fit "$prepared" -o "/tmp/fit_logs/$name.safetensors" --quiet $options \
    > "/tmp/fit_logs/$name.out" 2>&1 &
  pids+=($!)
done < "$runs_file"
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for log in /tmp/fit_logs/*.out; do echo "== $log"; tail -3 "$log"; done
cp /tmp/fit_logs/*.safetensors "$out"/ 2>/dev/null
tar -C /tmp/fit_logs -czf "$out/fit_logs.tar.gz" --exclude="*.safetensors" .
exit $status
