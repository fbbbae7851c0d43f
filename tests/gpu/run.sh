#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU and python3's torch built with
# CUDA (docs/gpu.md). Not part of tests/run: Debian 12 has no CUDA LibTorch.
#   bash tests/gpu/run.sh            # build, then the checks (about 10 minutes on one GPU)
#   SMOE_GPU_BENCH=1 bash tests/gpu/run.sh   # and the GPU benchmark (tests/bench/bench_gpu.py)
# 1. Builds smoe, every job, against python3's CUDA LibTorch in build-gpu/ (MPI,
#    parallel HDF5, Boost and the text libraries from the machine: a cluster's
#    modules, or SMOE_GPU_PREFIX). Where they are missing it builds the model
#    library and smoe-gpu-check alone (-DSMOE_GPU_CHECK=ON) and says which checks
#    it cannot run.
# 2. smoe-gpu-check on 1 rank (NCCL) and 2 ranks sharing the GPU (MPI staged
#    through pinned memory): collectives, the decoder f32/bf16 on the GPU against
#    the CPU with per-source and grouped expert GEMMs, generation with a cache.
# 3. tests/gpu/compare_devices.py: score, collect (1 and 2 ranks), eval, train and
#    NAEE on the GPU against the CPU.
# 4. The reduced study on the GPU (slurm/submit --local with gpus_per_rank 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${SMOE_GPU_BUILD_DIR:-$PWD/build-gpu}
python=${SMOE_GPU_PYTHON:-python3}
"$python" - <<'PY'
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no GPU (built with CUDA {torch.version.cuda})"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
prefix=$("$python" -c "import torch; print(torch.utils.cmake_prefix_path)")
[ -z "${SMOE_GPU_PREFIX:-}" ] || prefix="$prefix;$SMOE_GPU_PREFIX"
args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF "-DCMAKE_PREFIX_PATH=$prefix")
# nlohmann/json.hpp where the machine lacks it (a copy of Debian's in .gpu-deps/include).
[ ! -f "$PWD/.gpu-deps/include/nlohmann/json.hpp" ] || args+=("-DSMOE_JSON_INCLUDE=$PWD/.gpu-deps/include")
# NCCL: the CUDA toolkit's, else the one pip's torch brings (nvidia-nccl-cu*).
if [ ! -f /usr/local/cuda/include/nccl.h ]; then
  nccl=$("$python" -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))" 2>/dev/null || true)
  if [ -n "$nccl" ] && [ -f "$nccl/include/nccl.h" ]; then
    for lib in "$nccl"/lib/libnccl.so*; do
      args+=("-DNCCL_INCLUDE_DIR=$nccl/include" "-DNCCL_LIBRARY=$lib")
      break
    done
  fi
fi
jobs_built=1
mkdir -p "$build"
if ! cmake -S . -B "$build" "${args[@]}" > "$build/configure.log" 2>&1; then
  echo "tests/gpu/run.sh: the whole project does not configure here (see $build/configure.log):"
  grep -m 3 -i "error\|not found" "$build/configure.log" || true
  echo "tests/gpu/run.sh: building the model library and smoe-gpu-check alone (in $build/check-only);" \
    "the job checks are skipped"
  jobs_built=0
  build=$build/check-only  # a folder of its own: nothing the script did not make is removed
  cmake -S . -B "$build" "${args[@]}" -DSMOE_GPU_CHECK=ON
fi
targets=(--target smoe-gpu-check)
[ "$jobs_built" = 0 ] || targets+=(--target smoe)
cmake --build "$build" -j "$(nproc)" "${targets[@]}"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
status=0
model=$build/check-model
"$python" - "$model" <<'PY'
import sys
sys.path.insert(0, "tests/reference")
import hf_reference as ref
cfg = ref.tiny_config("qwen3_moe")
ref.save_checkpoint(sys.argv[1], cfg, ref.random_weights(cfg, seed=21), shards=2)
PY
for ranks in 1 2; do
  echo "tests/gpu/run.sh: smoe-gpu-check on $ranks rank(s)"
  mpirun --oversubscribe --bind-to none -n "$ranks" "$build/smoe-gpu-check" "$model" cuda || status=1
done
if [ "$jobs_built" = 1 ]; then
  echo "tests/gpu/run.sh: the jobs on the GPU against the CPU"
  "$python" tests/gpu/compare_devices.py --smoe "$build/smoe" --device cuda --workdir "$build/compare" || status=1
  echo "tests/gpu/run.sh: the reduced study on the GPU"
  study=$build/study.ini
  sed -e 's/^gpus_per_rank = .*/gpus_per_rank = 1/' -e 's/^steps = .*/steps = 300/' -e 's/^train = .*/train = 4000/' \
    jobs/demo.ini > "$study"
  SMOE="$build/smoe" bash slurm/submit "$study" --local --workdir "$build/study" || status=1
fi
if [ "${SMOE_GPU_BENCH:-0}" = 1 ] && [ "$jobs_built" = 1 ]; then
  "$python" tests/bench/bench_gpu.py --smoe "$build/smoe" --workdir "$build/bench" || status=1
fi
echo "tests/gpu/run.sh: $([ "$status" = 0 ] && echo passed || echo FAILED)"
exit "$status"
