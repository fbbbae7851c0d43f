#!/usr/bin/env bash
# Builds and runs the GPU check on a machine with an NVIDIA GPU, a CUDA LibTorch
# in python3's torch, MPI and NCCL. Not part of tests/run (Debian 12 has no CUDA
# LibTorch). Usage: bash tests/gpu/run.sh [ranks]   (one GPU per rank)
set -euo pipefail
cd "$(dirname "$0")/../.."
ranks=${1:-1}
build=${SMOE_GPU_BUILD_DIR:-$PWD/build-gpu}
prefix=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)")
json=""
[ ! -f "$PWD/.gpu-deps/include/nlohmann/json.hpp" ] || json=$PWD/.gpu-deps/include  # where it is not installed
# The main project, its model library and the check alone (SMOE_GPU_CHECK).
cmake -S . -B "$build" -G Ninja -DSMOE_GPU_CHECK=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DSMOE_JSON_INCLUDE="$json"
cmake --build "$build" --target smoe-gpu-check -j "$(nproc)"
model=$build/model
python3 - "$model" <<'PY'
import sys
sys.path.insert(0, "tests/reference")
import hf_reference as ref
cfg = ref.tiny_config("qwen2_moe")
ref.save_checkpoint(sys.argv[1], cfg, ref.random_weights(cfg, seed=21), shards=2)
PY
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe -n "$ranks" "$build/smoe-gpu-check" "$model"
