#!/usr/bin/env bash
# Configures (Ninja, Release) and builds moe-compiler into build/ (or
# $MOE_BUILD_DIR). Extra arguments go to the CMake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${MOE_BUILD_DIR:-build}
if [[ ! -f "$BUILD_DIR/build.ninja" ]] || (($# > 0)); then
  cmake -G Ninja -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
fi
start=$(date +%s)
cmake --build "$BUILD_DIR"
echo "build: done in $(($(date +%s) - start)) s ($BUILD_DIR)"
