#!/usr/bin/env bash
# Run here, before sending bench/gpu/run.sh to the GPU machine, which has no
# LLVM / MLIR to compile with: compiles every model of the import test set
# (test/e2e/models.txt) with `moe-compile --target cuda`, three ways, into
# .gpu-programs/<variant>/<model>-cuda/ (ignored by git), each with its
# inputs, the onnxruntime reference outputs as .npy files, and the moe-run
# flags it runs with (run-flags):
#   one-gpu   unpartitioned, on one GPU
#   nccl1     a grid of one device (--single-device-grid): the collectives
#             of expert parallelism run through NCCL with world size 1
#             (moe-run --gpu-transport nccl); PTX only (--cuda-chip none),
#             so the driver's compile path runs too
#   bf16      the one-gpu programs (named in program-dir, not copied) with
#             bf16 feed-forward GEMMs (--gpu-precision bf16, --rtol /
#             --atol 5e-2: see below)
#   f16       the same with f16 feed-forward GEMMs (--gpu-precision f16,
#             --rtol / --atol 1e-2)
#   graphs    the one-gpu programs of the Hugging Face exports with CUDA
#             graphs (--cuda-graphs); graphs-bf16 the same in bf16
#   capacity  capacity mode (test/e2e/capacity_mode.py), 1 to 4 ranks
#   ep2       partitioned for 2 ranks (--plan ep=2; token counts rounded to
#             even), both on the one GPU: NCCL refuses two ranks per
#             device, so moe-run stages the collectives through the host
#             (--gpu-transport auto picks staged); PTX only, as nccl1
#   pp2-mb2   the Hugging Face exports (but DeepSeek-V3's, of one MoE
#             layer) in two pipeline stages with two micro-batches, both
#             ranks on the one GPU (staged); PTX only
#   overlap-ep2, overlap-nccl1
#             those programs of the Hugging Face exports (named, not
#             copied) with --overlap
# Also .gpu-programs/moe-layer: a Mixtral 8x7B MoE layer for the comparison
# with PyTorch eager (bench/gpu/moe_layer_vs_torch.py).
# The programs read their weights from test/ONNX/models through relative
# paths, which the working tree copied to the GPU machine keeps. Carry
# `.gpu-programs` (a few MB); run.sh runs each program on the GPU against
# its reference.
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
# prepare VARIANT MODEL DIM_PARAMS INT_HIGH RUN_FLAGS [run_onnx_model flags]
prepare() {
  local variant=$1 model=$2 dim_params=$3 int_high=$4 run_flags=$5
  shift 5
  local name
  name=$(basename "$model" .onnx)
  local log=".gpu-programs/$variant/$name.log"
  mkdir -p ".gpu-programs/$variant"
  # run_onnx_model.py writes the inputs, the onnxruntime outputs and the
  # program, then skips the run (no GPU here) with a line saying so.
  if ! .venv/bin/python test/e2e/run_onnx_model.py "test/$model" \
    --bin "$BUILD/bin" --work ".gpu-programs/$variant" --target cuda \
    --dim-params="$dim_params" --int-high "$int_high" "$@" >"$log" 2>&1; then
    echo "prepare-programs.sh: $variant $model failed; see $log" >&2
    exit 1
  fi
  echo "$run_flags" >".gpu-programs/$variant/$name-cuda/run-flags"
  count=$((count + 1))
}
while read -r model dim_params int_high; do
  [[ -z "$model" || "$model" == \#* ]] && continue
  int_high=${int_high:-8}
  prepare one-gpu "$model" "$dim_params" "$int_high" ""
  prepare nccl1 "$model" "$dim_params" "$int_high" "--gpu-transport nccl" \
    --plan "ep=1" --single-device-grid --cuda-chip none
  # Two expert-parallel ranks split the tokens: make their count even.
  even=$(sed -E 's/tokens=7/tokens=8/; s/seq=5/seq=4/' <<<"$dim_params")
  prepare ep2 "$model" "$even" "$int_high" "--ranks 2" --plan "ep=2" \
    --ranks 2 --cuda-chip none
  # Two pipeline stages, each step in two micro-batches (a batch of 2 cut in
  # two): the Hugging Face exports of two MoE layers or more (DeepSeek-V3's
  # has one).
  if [[ "$model" == *batched_mm* && "$model" != *deepseek* ]]; then
    prepare pp2-mb2 "$model" "$dim_params" "$int_high" "--ranks 2" \
      --plan "pp=2 microbatches=2" --ranks 2 --cuda-chip none
  fi
done <test/e2e/models.txt
# rerun VARIANT GLOB FLAGS: cases that run the programs GLOB matches (named
# in program-dir, not copied) with their own run flags and FLAGS.
rerun() {
  local variant=$1 glob=$2 flags=$3 program case_dir
  for program in $glob; do
    case_dir=".gpu-programs/$variant/$(basename "$program")"
    mkdir -p "$case_dir"
    echo "$program" >"$case_dir/program-dir"
    echo "$(<"$program/run-flags") $flags" >"$case_dir/run-flags"
    count=$((count + 1))
  done
}
# The one-GPU programs again with bf16 feed-forward GEMMs (moe-run
# --gpu-precision bf16). Tolerance: bf16 keeps 8 significant bits, so each
# rounding (input rows, weights, the gate / up products, the down output)
# moves a value by up to 2^-9 relative; with f32 accumulation and a few
# such roundings per layer the outputs of these small models stay within a
# few 1e-3 of f32, and 5e-2 (elementwise, relative plus the same absolute
# floor for values near zero) leaves room for the layers' errors adding up
# while still failing on any layout or indexing error (errors of order 1).
# A token whose next-layer router sees two experts within that error of
# each other may route differently in bf16; that would show as a failure
# of the model here, named in gpu-e2e.json.
rerun bf16 ".gpu-programs/one-gpu/*-cuda" \
  "--gpu-precision bf16 --rtol 5e-2 --atol 5e-2"
# And with f16 feed-forward GEMMs (--gpu-precision f16): 11 significant
# bits, each rounding within 2^-12 relative, so 1e-2 keeps the same margin
# over the accumulated error as bf16's 5e-2; the small models' activations
# stay far below f16's limit of 65504.
rerun f16 ".gpu-programs/one-gpu/*-cuda" \
  "--gpu-precision f16 --rtol 1e-2 --atol 1e-2"
# The Hugging Face exports (attention between MoE layers) once more with
# CUDA graphs (moe-run --cuda-graphs), against the same references.
rerun graphs ".gpu-programs/one-gpu/*batched_mm*-cuda" "--cuda-graphs"
# And in bf16 (the shared experts' dense FFNs are captured too).
rerun graphs-bf16 ".gpu-programs/one-gpu/*batched_mm*-cuda" \
  "--cuda-graphs --gpu-precision bf16 --rtol 5e-2 --atol 5e-2"
# Their expert-parallel programs (ep2, nccl1) once more with the shared
# experts and gates overlapped with the exchanges (moe-run --overlap).
rerun overlap-ep2 ".gpu-programs/ep2/*batched_mm*-cuda" "--overlap"
rerun overlap-nccl1 ".gpu-programs/nccl1/*batched_mm*-cuda" "--overlap"
# Capacity mode (test/e2e/capacity_mode.py): 3 models x {1, ep=2, ep=2 x
# tp=2} ranks x {nothing dropped, half dropped}, against onnxruntime or the
# numpy reference of the drop policy.
.venv/bin/python test/e2e/capacity_mode.py --bin "$BUILD/bin" \
  --work .gpu-programs/capacity-work --target cuda \
  --prepare .gpu-programs/capacity >.gpu-programs/capacity.log 2>&1 || {
  echo "prepare-programs.sh: capacity mode failed; see" \
    ".gpu-programs/capacity.log" >&2
  exit 1
}
rm -rf .gpu-programs/capacity-work
count=$((count + $(ls -d .gpu-programs/capacity/*-cuda | wc -l)))

# The whole MoE layer at Mixtral 8x7B sizes against PyTorch eager
# (bench/gpu/moe_layer_vs_torch.py): its 5.6 GB of weights are generated on
# the GPU machine, so only the graph and the program travel.
layer=.gpu-programs/moe-layer
.venv/bin/python bench/gpu/moe_layer_vs_torch.py model "$layer" --sparse-data
"$BUILD/bin/moe-compile" "$layer/layer.onnx" --dim-params=tokens=4096 \
  --target=cuda -o "$layer/model.moe" >"$layer/compile.log" 2>&1 || {
  echo "prepare-programs.sh: the MoE layer did not compile; see" \
    "$layer/compile.log" >&2
  exit 1
}
rm "$layer/layer.onnx.data"
du -sh .gpu-programs
echo "prepare-programs.sh: $count programs in .gpu-programs"
