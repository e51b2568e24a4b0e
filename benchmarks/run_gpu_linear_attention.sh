#!/usr/bin/env bash
# Issue 5 GPU figures (device tool: H100 until 2026-11-23, H200 since): HRMedSeg fine-tuning memory at 1024^2
# (batch 4 and 16, with and without activation checkpointing, fp32 and bf16); the GPU-only kernels and paths
# checked against torch; CUDA graph replay of 2D slice batches against the eager engine; inference throughput
# of MLLA-UNet-T (512^2, batch 32) and HRMedSeg (1024^2, batch 16) against nnU-Net 2d through the same engine
# (CUDA graphs: the engine's default for 2D batches, and off); time/memory against image size.
#   bash benchmarks/run_gpu_linear_attention.sh [OUT_FOLDER]
set -euo pipefail
out=${1:-experiments/results}
mkdir -p "$out"
# MLLA-UNet-T against nnU-Net 2d, graphs and eager, with the kernel checks, raw network and block times:
bash benchmarks/run_gpu_mlla_throughput.sh "$out" _gpu
python3 benchmarks/cuda_graph_check.py --networks mlla_unet:t,hrmedseg:default,nnunet_plain:2d \
  --input 1x1x512x512x64 --batch 8 --json "$out/cuda_graph_check_2d.json"
python3 experiments/probes/fused_kernel_sweep.py --stages 1,3 --json "$out/fused_kernel_sweep_gpu.json" | tail -4
python3 experiments/probes/profile_network.py --network mlla_unet:t --size 512 --batch 32 --repeat 10 \
  --json "$out/profile_mlla_unet_t_gpu.json"  # the raw network, eager (beside the graphs' line above)
python3 benchmarks/engine_overhead.py --json "$out/engine_overhead_gpu.json"
medseg bench --device cuda --input 1x3x1024x1024x256 --batch-size 16 --repeat 3 \
  --networks hrmedseg:default --json "$out/bench_gpu_2d_hrmedseg.json"
medseg bench --device cuda --input 1x3x1024x1024x256 --batch-size 16 --repeat 3 --no-cuda-graphs \
  --networks hrmedseg:default --json "$out/bench_gpu_2d_hrmedseg_eager.json"
python3 benchmarks/training_memory.py --network hrmedseg --presets default,checkpointed --size 1024 \
  --batches 4,16 --precisions fp32,bf16 --json "$out/training_memory_hrmedseg.json"
python3 benchmarks/scaling.py --network mlla_unet:t --sizes 256,512,1024 --device cuda --repeat 5 \
  --backends linear,quadratic --parallel-limit 1024 --json "$out/scaling_mlla_unet_t_gpu.json"
python3 benchmarks/scaling.py --network hrmedseg:default --sizes 256,512,1024,2048 --device cuda --repeat 5 \
  --backends linear,quadratic --parallel-limit 2048 --json "$out/scaling_hrmedseg_gpu.json"
