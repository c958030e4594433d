#!/usr/bin/env bash
# Run here, before sending bench/gpu/run.sh to the GPU machine: downloads the
# Debian packages the runtime needs that the GPU machine lacks (it has CUDA,
# cmake and ninja, no apt access): OpenBLAS, its libgfortran and
# libquadmath, GoogleTest.
# They land in .gpu-deps/ (ignored by git, ~13 MB); pass that path in the
# device tool's `carry` list and run.sh unpacks them there with dpkg -x.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu-deps
cd .gpu-deps
apt-get download libopenblas0-pthread libopenblas-pthread-dev libgfortran5 \
  libquadmath0 libgtest-dev
ls -l
