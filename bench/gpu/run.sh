#!/usr/bin/env bash
# The one prepared script for the GPU machine (issue 6): builds runtime/
# (no LLVM or MLIR needed) with the CUDA backend, runs the ctest label `gpu`
# and the GPU benchmarks, and writes everything under $OUT:
#   gpu-tests.txt        ctest output of the gpu label (a failure fails run.sh)
#   gpu-e2e.json         every model of the import test set, compiled here
#                        with --target cuda (bench/gpu/prepare-programs.sh)
#                        and run on the GPU five ways (one GPU, f32, bf16
#                        and f16; a one-device grid through NCCL; ep=2 on
#                        two ranks sharing the GPU, staged), the last two
#                        also with --overlap, two pipeline stages with
#                        micro-batches, and the
#                        capacity mode cases, against onnxruntime's outputs
#                        (rtol 1e-4, atol 1e-5; bf16 5e-2, f16 1e-2), with
#                        the median latency of 5 runs (MOE_GPU_JOBS cases
#                        at a time, default 4, so indicative only)
#   permute_bench.json   permute / unpermute bandwidth against the HBM copy
#                        (4096 tokens; permute_bench_decode.json: 64 tokens)
#   moe_layer_vs_torch.json  the whole MoE layer (Mixtral 8x7B sizes, 4096
#                        tokens; f32, bf16 and f16 each against PyTorch
#                        eager in the same precision) against a Hugging
#                        Face-style block on the same weights
#   expert_gemm_bench.json  grouped expert GEMMs: prefill TFLOP/s against
#                        dense cuBLAS, decode weight bandwidth against the
#                        HBM copy
#   nvidia-smi.txt       the device it ran on
#   cmake.txt, build.txt the configure and build logs
# Commit the JSON under bench/results/gpu/.
#
# Prepare here first: bench/gpu/fetch-deps.sh and
# bench/gpu/prepare-programs.sh, then call the device tool with
#   command: bash bench/gpu/run.sh   carry: [".gpu-deps", ".gpu-programs"]
#
# Stages: `bash bench/gpu/run.sh [tests] [models] [layer] [kernels]` runs
# only those (default: all four); the build comes first every time and is
# incremental, so a device session whose calls are limited in time can run
# the stages in separate calls on the same warm machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
stages=" ${*:-tests models layer kernels} "
for stage in $stages; do
  case $stage in
  tests | models | layer | kernels) ;;
  *)
    echo "run.sh: unknown stage '$stage' (tests, models, layer, kernels)" >&2
    exit 2
    ;;
  esac
done
wants() { [[ "$stages" == *" $1 "* ]]; }
OUT=${OUT:-build-gpu/out}
BUILD=${MOE_GPU_BUILD_DIR:-build-gpu}
mkdir -p "$OUT" "$BUILD"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "run.sh: nvidia-smi failed" >&2

cmake_args=(-G Ninja -S runtime -B "$BUILD" -DCMAKE_BUILD_TYPE=Release)
if [[ ! -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ||
      ! -d /usr/lib/x86_64-linux-gnu/cmake/GTest ]]; then
  if ! compgen -G ".gpu-deps/*.deb" >/dev/null; then
    echo "run.sh: OpenBLAS or GoogleTest is missing and .gpu-deps/ has no" \
      "packages; run bench/gpu/fetch-deps.sh and carry .gpu-deps" >&2
    exit 1
  fi
  deps=$(realpath -m "$BUILD/deps")
  rm -rf "$deps"
  for deb in .gpu-deps/*.deb; do dpkg -x "$deb" "$deps"; done
  cmake_args+=(-DMOE_DEPS_PREFIX="$deps" -DCMAKE_PREFIX_PATH="$deps/usr")
  # libgfortran is a dependency of OpenBLAS, not of our binaries, so their
  # RUNPATH does not reach it.
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# NCCL: the CUDA toolkit's where it has one, else the one PyTorch brings
# (the nvidia-nccl wheel: nvidia/nccl/{include,lib} in site-packages).
nvcc_root=$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")
if [[ ! -f "$nvcc_root/include/nccl.h" && ! -f /usr/include/nccl.h ]]; then
  nccl_root=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
  nccl_library=$(ls "$nccl_root"/lib/libnccl.so* 2>/dev/null | head -1 || true)
  if [[ -n "$nccl_root" && -f "$nccl_root/include/nccl.h" && -n "$nccl_library" ]]; then
    echo "run.sh: NCCL from $nccl_root"
    cmake_args+=(-DNCCL_INCLUDE_DIR="$nccl_root/include"
      -DNCCL_LIBRARY="$nccl_library")
    export LD_LIBRARY_PATH="$nccl_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "run.sh: no NCCL in the CUDA toolkit or Python; the nccl cases" \
      "will fail naming it" >&2
  fi
fi

echo "== build"
start=$(date +%s)
if ! cmake "${cmake_args[@]}" >"$OUT/cmake.txt" 2>&1; then
  tail -40 "$OUT/cmake.txt"
  exit 1
fi
if ! ninja -C "$BUILD" >"$OUT/build.txt" 2>&1; then
  tail -60 "$OUT/build.txt"
  exit 1
fi
echo "build took $(($(date +%s) - start)) s"

status=0
if wants tests; then
  echo "== gpu tests"
  ctest --test-dir "$BUILD" -L gpu --no-tests=error --output-on-failure 2>&1 |
    tee "$OUT/gpu-tests.txt" || status=1
  if grep -q "(Skipped)" "$OUT/gpu-tests.txt"; then
    echo "run.sh: GPU tests skipped on the GPU machine" >&2
    status=1
  fi
fi

# One case of the models stage: runs its program against its references
# and writes its JSON object to $2 (a line on stderr too).
run_case() {
  local flags_file=$1 json=$2
  local case_dir name variant dir program inputs references log result
  case_dir=$(dirname "$flags_file")
  name=$(basename "$case_dir")
  variant=$(basename "$(dirname "$case_dir")")
  # A case may run another case's program (bf16 runs one-gpu's).
  dir=$case_dir
  [[ -f "$case_dir/program-dir" ]] && dir=$(<"$case_dir/program-dir")
  program=$dir/model.moe
  inputs=$(ls "$dir"/input.*.npy | sort -V | paste -sd, -)
  references=$(ls "$dir"/reference.*.npy | sort -V | paste -sd, -)
  local -a flags
  read -r -a flags <"$flags_file" || flags=()
  log="$OUT/gpu-e2e-$variant-$name.txt"
  if timeout 300 "$BUILD/bin/moe-run" "$program" --inputs "$inputs" \
    --compare "$references" --rtol 1e-4 --atol 1e-5 --warmup 1 \
    --iterations 5 "${flags[@]}" >"$log" 2>&1; then
    result=pass
  else
    result=fail
  fi
  local p50 transport graphs overlapped reason
  p50=$(sed -n 's/^latency: p50 \([0-9.]*\) ms.*/\1/p' "$log")
  transport=$(sed -n 's/^ranks: [0-9]* (\(.*\) transport).*/\1/p' "$log")
  graphs=$(sed -n 's/^cuda graphs: \([0-9]*\) .*/\1/p' "$log")
  overlapped=$(sed -n 's/^overlap: \([0-9]*\) .*/\1/p' "$log")
  reason=$(grep -m1 "moe-run:.*\(line\|needs\|cannot\|rank\)" "$log" |
    sed 's/"/\\"/g' || true)
  printf '  {"variant": "%s", "model": "%s", "flags": "%s", "transport": "%s", "graphs": %s, "overlapped": %s, "result": "%s", "p50_ms": %s, "note": "%s"}' \
    "$variant" "$name" "${flags[*]}" "$transport" "${graphs:-null}" \
    "${overlapped:-null}" "$result" "${p50:-null}" "$reason" >"$json"
  echo "$variant/$name: $result ${p50:+(p50 $p50 ms)} $reason" >&2
}

if wants models; then
  echo "== models of the import test set on the GPU (one-gpu, bf16, f16, graphs, nccl1, ep2, pp2-mb2, overlap, capacity)"
  if compgen -G ".gpu-programs/*/*/run-flags" >/dev/null; then
    # Several cases at once (MOE_GPU_JOBS, default 4): most of a case's
    # time is process start, CUDA context and JIT, not GPU work, and the
    # device time of a session is short. Their p50s are indicative only.
    jobs_max=${MOE_GPU_JOBS:-4}
    cases=$(realpath -m "$BUILD/e2e-cases")
    rm -rf "$cases"
    mkdir -p "$cases"
    index=0
    for flags_file in .gpu-programs/*/*/run-flags; do
      run_case "$flags_file" "$cases/$(printf %04d $index).json" &
      index=$((index + 1))
      while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
    done
    wait
    {
      echo "["
      first=1
      for json in "$cases"/*.json; do
        ((first)) || echo ","
        first=0
        cat "$json"
      done
      echo
      echo "]"
    } >"$OUT/gpu-e2e.json"
    if [[ $(ls "$cases"/*.json | wc -l) -ne $index ]] ||
      grep -q '"result": "fail"' "$cases"/*.json; then
      status=1
    fi
    echo "$(grep -l '"result": "pass"' "$cases"/*.json | wc -l) of $index" \
      "cases pass"
  else
    echo "run.sh: no .gpu-programs; run bench/gpu/prepare-programs.sh here" \
      "and carry .gpu-programs" >&2
    status=1
  fi
fi

if wants layer; then
  echo "== the MoE layer against PyTorch eager (Mixtral 8x7B sizes, 4096 tokens)"
  layer=.gpu-programs/moe-layer
  if [[ -f "$layer/model.moe" ]]; then
    if ! python3 bench/gpu/moe_layer_vs_torch.py data "$layer"; then
      status=1
    else
      for precision in f32 bf16 f16; do
        "$BUILD/bin/moe-run" "$layer/model.moe" --inputs "$layer/x.npy" \
          --outputs "$layer/y-$precision.npy" --gpu-precision $precision \
          --warmup 2 --iterations 10 >"$layer/moe-run-$precision.txt" 2>&1 ||
          status=1
        cp "$layer/moe-run-$precision.txt" "$OUT/moe-layer-moe-run-$precision.txt"
      done
      python3 bench/gpu/moe_layer_vs_torch.py compare "$layer" \
        --json "$OUT/moe_layer_vs_torch.json" || status=1
    fi
    rm -f "$layer/layer.onnx.data" "$layer"/*.npy "$layer"/moe-run-*.txt
  else
    echo "run.sh: no .gpu-programs/moe-layer; run" \
      "bench/gpu/prepare-programs.sh here" >&2
    status=1
  fi
fi

if wants kernels; then
  echo "== permute / unpermute bandwidth"
  "$BUILD/bin/moe-permute-bench" "$OUT/permute_bench.json" || status=1
  # Decode size: 64 tokens fit in L2, so this one measures launch and L2
  # behaviour, not HBM bandwidth.
  "$BUILD/bin/moe-permute-bench" "$OUT/permute_bench_decode.json" 64 4096 2 8 ||
    status=1

  echo "== expert GEMMs (Mixtral 8x7B layer, bf16)"
  "$BUILD/bin/moe-expert-gemm-bench" "$OUT/expert_gemm_bench.json" || status=1
fi
exit $status
