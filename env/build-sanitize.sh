#!/usr/bin/env bash
# The sanitizer builds, beside the normal one (env/build.sh); tests/run runs both.
#   build-san/   clang: the torch-free parsers (safetensors, index, config.json),
#                their unit tests and their libFuzzer targets, under AddressSanitizer
#                + UndefinedBehaviorSanitizer; `ctest --test-dir build-san` runs them.
#   build-asan/  g++: every unit test (test-parse, test-model: LibTorch parts
#                included) and the smoe binary (for the malformed-input corpus)
#                under the same two sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
# Line tables only (-g1): all a sanitizer report needs to name file and line; -O1,
# as the sanitizers advise: a quarter less compile time than -O2.
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
san=${SMOE_SAN_DIR:-build-san}
CC=clang CXX=clang++ cmake -S . -B "$san" -G Ninja "${flags[@]}" -DSMOE_PARSE_ONLY=ON -DSMOE_SANITIZE=ON
cmake --build "$san" -j "$(nproc)"
asan=${SMOE_ASAN_DIR:-build-asan}
cmake -S . -B "$asan" -G Ninja "${flags[@]}" -DSMOE_SANITIZE=ON
cmake --build "$asan" -j "$(nproc)" --target test-parse test-model smoe
