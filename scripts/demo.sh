#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the whole path
# on the bundled example: generate a Mixture-of-Experts model as ONNX
# (examples/onnx/make_demo_model.py: RMSNorm + com.microsoft.MoE blocks),
# compile it with moe-compile, run it with moe-run, check the outputs against
# onnxruntime on the same model and inputs, and print both latencies.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD_DIR=${MOE_BUILD_DIR:-build}
OUT_DIR=${MOE_DEMO_OUT:-$BUILD_DIR/demo}
TOKENS=${MOE_DEMO_TOKENS:-128}
PYTHON=.venv/bin/python
mkdir -p "$OUT_DIR"

echo "== 1. the model"
"$PYTHON" examples/onnx/make_demo_model.py "$OUT_DIR/moe_demo.onnx"

echo "== 2. the compiler's view (moe IR after lowering, first lines)"
"$BUILD_DIR/bin/moe-compile" "$OUT_DIR/moe_demo.onnx" --emit=mlir \
  --dim-params=tokens="$TOKENS" -o "$OUT_DIR/moe_demo.mlir"
grep -E "moe\.(router|dispatch|expert_ffn|combine|rms_norm)" \
  "$OUT_DIR/moe_demo.mlir" | head -5 | cut -c1-160

echo "== 3. compile, run on $TOKENS tokens, compare with onnxruntime"
"$PYTHON" test/e2e/run_onnx_model.py "$OUT_DIR/moe_demo.onnx" \
  --bin "$BUILD_DIR/bin" --work "$OUT_DIR" --dim-params=tokens="$TOKENS" \
  --iterations 20
echo "demo: OK"
