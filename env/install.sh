#!/usr/bin/env bash
# Installs everything smoe needs on Debian 12 (bookworm), from Debian's packages only.
# Idempotent: a second run changes nothing. Needs root (or sudo).
set -euo pipefail

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev
  libboost-program-options-dev
  nlohmann-json3-dev
  libgtest-dev
  libsentencepiece-dev sentencepiece
  libonig-dev libicu-dev
  libssl-dev
  gnuplot-nox
  clang libclang-rt-14-dev
  python3-torch python3-h5py python3-sklearn python3-numpy python3-scipy python3-pytest
)

# Node.js runs the reference tokenizers of the tests (the npm packages of
# tests/tokenizers/package.json); a machine that has it already keeps its own.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "env/install.sh: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  # env sets the variable for apt-get itself: sudo would drop it from the environment.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# LibTorch links the generic libblas.so.3; point it at OpenBLAS (OpenMP build), else
# fp32 matmul runs on the reference BLAS at a few GFLOP/s.
ob=/usr/lib/x86_64-linux-gnu/openblas-openmp
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  lib=${alt%%-x86_64-linux-gnu}
  target="$ob/$lib"
  if [ -e "$target" ]; then
    current=$(update-alternatives --query "$alt" 2>/dev/null | awk '/^Value:/{print $2}')
    [ "$current" = "$target" ] || "${SUDO[@]}" update-alternatives --set "$alt" "$target" >/dev/null
  fi
done
echo "env/install.sh: dependencies ready"
