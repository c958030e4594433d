#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the compiler
# on the bundled example as far as the pipeline goes today: parse and verify
# the MoE model, decompose its MoE layers into router / dispatch / experts /
# combine, and print the result with pass timings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD_DIR=${MOE_BUILD_DIR:-build}
MODEL=${1:-examples/tiny-moe/tiny_moe.mlir}
OUT_DIR=${MOE_DEMO_OUT:-$BUILD_DIR/demo}
mkdir -p "$OUT_DIR"

echo "demo: model $MODEL"
layers=$(grep -c "moe.layer " "$MODEL" || true)
weights=$(grep -c "^moe.weight " "$MODEL" || true)
echo "demo: $layers MoE layers, $weights weights referenced (no bytes inline)"

echo "demo: moe-opt -moe-decompose-layers"
"$BUILD_DIR/bin/moe-opt" "$MODEL" -moe-decompose-layers -mlir-timing \
  -o "$OUT_DIR/decomposed.mlir"

# The decomposed program must parse and verify again, and hold one router,
# dispatch, expert computation and combine per layer.
"$BUILD_DIR/bin/moe-opt" "$OUT_DIR/decomposed.mlir" > /dev/null
for op in router dispatch expert_ffn combine; do
  count=$(grep -c "moe.$op " "$OUT_DIR/decomposed.mlir" || true)
  if [[ "$count" != "$layers" ]]; then
    echo "demo: FAILED: expected $layers moe.$op, found $count" >&2
    exit 1
  fi
done
echo "demo: decomposed program ($OUT_DIR/decomposed.mlir):"
cat "$OUT_DIR/decomposed.mlir"
echo "demo: OK: $layers layers decomposed and re-verified"
