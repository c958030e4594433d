#!/usr/bin/env bash
# Run here, before sending bench/gpu/run.sh to the GPU machine, which has no
# LLVM / MLIR to compile with: compiles every model of the import test set
# (test/e2e/models.txt) with `moe-compile --target cuda` into
# .gpu-programs/<model>/ (ignored by git), with its inputs and the
# onnxruntime reference outputs as .npy files. The programs read their
# weights from test/ONNX/models through relative paths, which the working
# tree copied to the GPU machine keeps. Carry `.gpu-programs` (a few MB);
# run.sh runs each program on the GPU against its reference.
#
#   bench/gpu/prepare-programs.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
if [[ ! -x "$BUILD/bin/moe-compile" || ! -x .venv/bin/python ]]; then
  echo "prepare-programs.sh: build first (scripts/build.sh) so that" \
    "$BUILD/bin/moe-compile and .venv exist" >&2
  exit 1
fi
rm -rf .gpu-programs
mkdir -p .gpu-programs
count=0
while read -r model dim_params int_high; do
  [[ -z "$model" || "$model" == \#* ]] && continue
  # run_onnx_model.py writes the inputs, the onnxruntime outputs and the
  # program, then skips the run (no GPU here) with a line saying so.
  .venv/bin/python test/e2e/run_onnx_model.py "test/$model" \
    --bin "$BUILD/bin" --work .gpu-programs --target cuda \
    --dim-params="$dim_params" --int-high "${int_high:-8}" \
    >".gpu-programs/$(basename "$model" .onnx).log" 2>&1 || {
    echo "prepare-programs.sh: $model failed; see" \
      ".gpu-programs/$(basename "$model" .onnx).log" >&2
    exit 1
  }
  count=$((count + 1))
done <test/e2e/models.txt
du -sh .gpu-programs
echo "prepare-programs.sh: $count programs in .gpu-programs"
