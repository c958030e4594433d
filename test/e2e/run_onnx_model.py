#!/usr/bin/env python3
"""Runs one ONNX model with onnxruntime and with moe-compile + moe-run, and
checks that the outputs agree.

    run_onnx_model.py --bin BUILD/bin --work DIR MODEL.onnx
        [--dim-params name=N,...] [--rtol R] [--atol A] [--int-high N]

Inputs are random and seeded by the model's file name: floats ~ N(0, 1),
integers uniform in [0, int-high). onnxruntime (CPU, one thread) is the
reference; moe-run compares its outputs against it with numpy.allclose
semantics and exits non-zero on any mismatch, which this script passes on.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import zlib

import numpy as np
import onnx
import onnxruntime as ort

NUMPY_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
}


def parse_dim_params(text):
    values = {}
    for item in filter(None, (text or "").split(",")):
        name, value = item.split("=")
        values[name] = int(value)
    return values


def input_arrays(model, dim_params, int_high, seed):
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    arrays = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            elif dim.dim_param in dim_params:
                shape.append(dim_params[dim.dim_param])
            else:
                sys.exit(f"input '{value.name}' has symbolic dimension "
                         f"'{dim.dim_param}'; pass --dim-params")
        dtype = NUMPY_TYPES[tensor_type.elem_type]
        if np.issubdtype(dtype, np.floating):
            arrays[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            arrays[value.name] = rng.integers(0, int_high, shape).astype(dtype)
    return arrays


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--dim-params", default="")
    parser.add_argument("--rtol", default="1e-4")
    parser.add_argument("--atol", default="1e-5")
    parser.add_argument("--int-high", type=int, default=8)
    parser.add_argument("--ranks", type=int, default=1,
                        help="run moe-run with this many ranks as threads")
    parser.add_argument("--mpirun", type=int, default=0,
                        help="launch moe-run under mpirun with this many "
                             "processes (skipped, visibly, without mpirun)")
    parser.add_argument("--inputs", default="",
                        help="comma-separated .npy files, one per graph "
                             "input, instead of random inputs (for graphs "
                             "that run only on some inputs, such as the "
                             "eager expert loop, which onnxruntime runs "
                             "only when every traced expert gets tokens)")
    parser.add_argument("--reference-model", default="",
                        help="run this model with onnxruntime for the "
                             "reference instead of MODEL (same inputs and "
                             "outputs), e.g. the export a damaged one came "
                             "from")
    parser.add_argument("--plan", default="",
                        help="partition with this plan (moe-compile "
                             "--machine=cpu:N --plan=PLAN, N the ranks of "
                             "--ranks or --mpirun) and check that moe-run "
                             "ran a partitioned program")
    parser.add_argument("--single-device-grid", action="store_true",
                        help="with --plan on one rank: keep the collectives "
                             "(moe-compile --single-device-grid)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="moe-run --cuda-graphs")
    parser.add_argument("--overlap", action="store_true",
                        help="moe-run --overlap")
    parser.add_argument("--cuda-chip", default="",
                        help="moe-compile --cuda-chip (none: PTX only)")
    parser.add_argument("--gpu-transport", default="",
                        help="moe-run --gpu-transport (auto, nccl, staged)")
    parser.add_argument("--target", choices=["cpu", "cuda"], default="cpu",
                        help="compile for this target; cuda runs on the "
                             "GPU and prints a SKIP line when there is none")
    parser.add_argument("--iterations", type=int, default=1,
                        help="timed runs of both engines (one thread each); "
                             "above 1, median latencies are printed")
    args = parser.parse_args()

    name = os.path.splitext(os.path.basename(args.model))[0]
    work = os.path.join(args.work, name + ("-cuda" if args.target == "cuda"
                                           else ""))
    os.makedirs(work, exist_ok=True)
    model = onnx.load(args.model, load_external_data=False)
    if args.inputs:
        files = args.inputs.split(",")
        names = [value.name for value in model.graph.input]
        if len(files) != len(names):
            sys.exit(f"--inputs gives {len(files)} files for the "
                     f"{len(names)} inputs {names}")
        arrays = {n: np.load(f) for n, f in zip(names, files)}
    else:
        arrays = input_arrays(model, parse_dim_params(args.dim_params),
                              args.int_high, zlib.crc32(name.encode()))

    # Some onnxruntime kernels need settings to compute in float32 (see the
    # model's JSON sidecar, e.g. QMoE block-wise 8-bit); they must be in the
    # environment before the session is created.
    sidecar = os.path.splitext(args.model)[0] + ".json"
    if os.path.exists(sidecar):
        with open(sidecar) as f:
            os.environ.update(json.load(f).get("ort_env", {}))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(args.reference_model or args.model,
                                   options,
                                   providers=["CPUExecutionProvider"])
    references = session.run(None, arrays)
    ort_latencies = []
    for _ in range(args.iterations if args.iterations > 1 else 0):
        start = time.perf_counter()
        session.run(None, arrays)
        ort_latencies.append(time.perf_counter() - start)

    input_files, reference_files = [], []
    for input_name, array in arrays.items():
        path = os.path.join(work, f"input.{len(input_files)}.npy")
        np.save(path, array)
        input_files.append(path)
    for index, array in enumerate(references):
        path = os.path.join(work, f"reference.{index}.npy")
        np.save(path, np.ascontiguousarray(array))
        reference_files.append(path)

    program = os.path.join(work, "model.moe")
    compile_command = [os.path.join(args.bin, "moe-compile"), args.model,
                       "-o", program]
    if args.dim_params:
        compile_command.append("--dim-params=" + args.dim_params)
    if args.target == "cuda":
        compile_command.append("--target=cuda")
    if args.cuda_chip:
        compile_command.append("--cuda-chip=" + args.cuda_chip)
    ranks = args.mpirun or args.ranks
    if args.plan:
        compile_command += [f"--machine=cpu:{ranks}", "--plan=" + args.plan]
    if args.single_device_grid:
        compile_command.append("--single-device-grid")
    run_command = [os.path.join(args.bin, "moe-run"), program,
                   "--inputs", ",".join(input_files),
                   "--compare", ",".join(reference_files),
                   "--rtol", args.rtol, "--atol", args.atol,
                   "--warmup", "1" if args.iterations > 1 else "0",
                   "--iterations", str(args.iterations)]
    if args.ranks > 1:
        run_command += ["--ranks", str(args.ranks)]
    if args.gpu_transport:
        run_command += ["--gpu-transport", args.gpu_transport]
    if args.cuda_graphs:
        run_command.append("--cuda-graphs")
    if args.overlap:
        run_command.append("--overlap")
    if args.mpirun:
        mpirun = shutil.which("mpirun")
        if not mpirun:
            print(f"SKIP {name}: mpirun not found (install openmpi-bin) -- "
                  f"the MPI launch was not tested")
            return 0
        # Open MPI refuses root without these; CI runs as root.
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        run_command = [mpirun, "--oversubscribe", "-np",
                       str(args.mpirun)] + run_command
    for command in (compile_command, run_command):
        print("+", " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if args.target == "cuda" and "needs a GPU" in result.stderr:
            print(f"SKIP {name}: no GPU here, so the CUDA program (compiled "
                  f"above) did not run")
            return 0
        unsupported = re.search(r"moe-run: .*?: (line \d+ \(\w+\): .*"
                                r"(?:not supported by the CUDA backend yet|"
                                r"has no CUDA implementation).*)",
                                result.stderr)
        if args.target == "cuda" and unsupported:
            # Named, not hidden: the CUDA backend's known gaps (issue 6).
            print(f"SKIP {name}: the CUDA backend cannot run this model "
                  f"yet: {unsupported.group(1)}")
            return 0
        if result.returncode != 0:
            print(f"FAIL {name}: {os.path.basename(command[0])} exited with "
                  f"{result.returncode}")
            return 1
    if ort_latencies:
        match = re.search(r"p50 ([0-9.]+) ms", result.stdout)
        ort_ms = statistics.median(ort_latencies) * 1e3
        moe_ms = float(match.group(1))
        print(f"median latency over {args.iterations} runs, 1 thread: "
              f"onnxruntime {ort_ms:.3f} ms, moe-run {moe_ms:.3f} ms "
              f"(moe-run is {ort_ms / moe_ms:.2f}x onnxruntime's speed)")
    if args.plan and "partitioned program" not in result.stdout:
        print(f"FAIL {name}: moe-run did not run a partitioned program for "
              f"plan '{args.plan}'")
        return 1
    if ranks > 1 and "identical outputs" not in result.stdout:
        print(f"FAIL {name}: moe-run did not confirm identical outputs on "
              f"{ranks} ranks")
        return 1
    print(f"PASS {name}: moe-run " +
          ("on the GPU " if args.target == "cuda" else "") +
          f"matches onnxruntime (rtol {args.rtol}, "
          f"atol {args.atol})" + (f" on {ranks} ranks" if ranks > 1 else "")
          + (f", partitioned by '{args.plan}'" if args.plan else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
