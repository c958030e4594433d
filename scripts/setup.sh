#!/usr/bin/env bash
# Installs everything moe-compiler needs to build and test on Debian 12:
# LLVM/MLIR 22, lit and FileCheck, clang-format-22, GoogleTest, ONNX and
# protobuf, OpenBLAS, Open MPI, Ninja and ccache from Debian, and the Python
# references (onnxruntime, numpy, onnx) into .venv. What is already present
# is not reinstalled, so a second run takes a second.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache git pkg-config time
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools clang-format-22
  libgtest-dev googletest
  libonnx-dev libprotobuf-dev protobuf-compiler
  libopenblas-dev libopenmpi-dev openmpi-bin
  python3 python3-venv python3-pip
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null |
      grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} Debian packages are installed"
else
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
  fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
    --no-install-recommends "${missing[@]}"
fi

# Python references (onnxruntime, numpy) live in .venv, pinned by
# requirements.txt; a stamp skips pip when nothing changed.
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! cmp -s requirements.txt .venv/requirements.installed; then
  echo "setup: installing Python packages (requirements.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    -r requirements.txt
  cp requirements.txt .venv/requirements.installed
fi
echo "setup: done"
