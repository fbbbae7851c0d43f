#!/usr/bin/env bash
# Installs what smoe needs (env/install.sh), then configures and builds it in
# build/ (or $SMOE_BUILD_DIR): every target, or only the targets named as
# arguments (slurm/demo: smoe). Used by tests/run and slurm/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash env/install.sh
# ccache works across precompiled headers only with these.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
build=${SMOE_BUILD_DIR:-build}
# -O2 without debug information: the tests and the demo need no debugger, and
# debug information costs a quarter of the compile time of each file.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG"
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
