#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test
# (GoogleTest, lit, verifier-message coverage, formatting, generated docs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD_DIR=${MOE_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
