#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the whole path
# on the bundled example: generate a Mixture-of-Experts model as ONNX
# (examples/onnx/make_demo_model.py: RMSNorm + com.microsoft.MoE blocks),
# compile it with moe-compile, run it with moe-run, check the outputs against
# onnxruntime on the same model and inputs, and print both latencies; then
# plan it for four CPU ranks, partition it by the plan, and run it on four
# ranks (threads, then MPI processes) against the same reference.
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

# An automatic plan for four CPU ranks under a skewed (Zipf) expert load:
# the planner prices pipeline stages, expert and tensor parallelism (and a
# load-balanced expert placement), moe-compile partitions the model by the
# cheapest plan (one SPMD program; the collectives it holds are counted
# below), and moe-run runs it on four ranks, checked against onnxruntime's
# output from step 3.
echo "== 4. plan for 4 ranks, partition, run on 4 ranks, compare with onnxruntime"
"$BUILD_DIR/bin/moe-compile" "$OUT_DIR/moe_demo.onnx" \
  --dim-params=tokens="$TOKENS" --machine=cpu:4 --expert-load=zipf:1.0 \
  --report="$OUT_DIR/plan.txt" -o "$OUT_DIR/moe_demo_4ranks.moe"
sed -n '/^Chosen/,/^Search/p' "$OUT_DIR/plan.txt"
grep -E "^op (all_slice|ragged_all_to_all|all_gather|all_reduce|stage_transfer)" \
  "$OUT_DIR/moe_demo_4ranks.moe" | cut -d' ' -f2 | sort | uniq -c
"$BUILD_DIR/bin/moe-run" "$OUT_DIR/moe_demo_4ranks.moe" --ranks 4 \
  --inputs "$OUT_DIR/moe_demo/input.0.npy" \
  --compare "$OUT_DIR/moe_demo/reference.0.npy" --rtol 1e-4 --atol 1e-5 \
  --iterations 5
if command -v mpirun >/dev/null; then
  echo "== 5. the same program as 4 MPI processes"
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun --oversubscribe -np 4 "$BUILD_DIR/bin/moe-run" \
    "$OUT_DIR/moe_demo_4ranks.moe" --inputs "$OUT_DIR/moe_demo/input.0.npy" \
    --compare "$OUT_DIR/moe_demo/reference.0.npy" --rtol 1e-4 --atol 1e-5 \
    --iterations 5
else
  echo "== 5. skipped: mpirun not found (scripts/setup.sh installs openmpi-bin)"
fi
echo "demo: OK"
