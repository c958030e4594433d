#!/usr/bin/env python3
"""moe-run on bad input: every case must fail with exit code 1 or 2, print a
message that names the problem, and write no output file. A last case checks
the --trace and --expert-load files of a good run.

    moe_run_errors.py --bin BUILD/bin --work DIR --model MODEL.onnx
                      [--dim-params name=N,...]

The model is compiled once; each case then breaks one thing (an input's
shape, dtype or count, a missing or truncated file, a corrupted program, a
weight file that is gone). Prints one line per case and 'N passed, N failed'.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dim-params", default="")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    program = os.path.join(work, "model.moe")
    compile_command = [os.path.join(args.bin, "moe-compile"), args.model,
                       "-o", program]
    if args.dim_params:
        compile_command.append("--dim-params=" + args.dim_params)
    subprocess.run(compile_command, check=True, capture_output=True)
    with open(program) as f:
        text = f.read()
    input_line = next(l for l in text.splitlines() if l.startswith("input "))
    _, _, name, dtype, shape = input_line.split()
    shape = [int(d) for d in shape.split("x")]

    good = os.path.join(work, "good.npy")
    np.save(good, np.zeros(shape, np.float32))
    wrong_shape = os.path.join(work, "wrong_shape.npy")
    np.save(wrong_shape, np.zeros([d + 1 for d in shape], np.float32))
    wrong_dtype = os.path.join(work, "wrong_dtype.npy")
    np.save(wrong_dtype, np.zeros(shape, np.float64))
    truncated = os.path.join(work, "truncated.npy")
    with open(good, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[:len(data) - 7])

    def variant(name, transform):
        path = os.path.join(work, name + ".moe")
        with open(path, "w") as f:
            f.write(transform(text))
        return path

    truncated_program = variant("truncated", lambda t: t[:len(t) // 2])
    garbage_program = variant("garbage", lambda t: "\x00\x01 not a program\n")
    future_program = variant("future", lambda t: t.replace(
        "moe-program 1", "moe-program 99", 1))
    unknown_op = variant("unknown_op", lambda t: t.replace(
        "op router ", "op frobnicate ", 1))
    bad_weight = variant("bad_weight", lambda t: "\n".join(
        (" ".join(l.split()[:6] + ["999999999"] + l.split()[7:])
         if l.startswith("weight ") else l) for l in t.splitlines()) + "\n")
    moved = os.path.join(work, "moved")
    os.makedirs(moved, exist_ok=True)
    shutil.copy(program, os.path.join(moved, "model.moe"))
    moved_program = os.path.join(moved, "model.moe")
    with open(moved_program) as f:
        moved_text = f.read()
    with open(moved_program, "w") as f:
        f.write(moved_text.replace("weights-dir ", "weights-dir gone/", 1))

    # Corrupted programs a security review built: sizes that overflow,
    # slices past their weight, buffers larger than the machine.
    def raw_program(name, body):
        path = os.path.join(work, name + ".moe")
        with open(path, "w") as f:
            f.write("moe-program 1\nweights-dir .\n" + body)
        return path

    overflowing = raw_program(
        "overflowing", "input 0 x f32 4294967296x4294967296\n"
        "op neg 1:f32:4294967296x4294967296 = 0\noutput 1 y\n")
    with open(os.path.join(work, "w.bin"), "wb") as f:
        f.write(bytes(64))
    slice_overflow = raw_program(
        "slice_overflow", "weight 0 w f32 4x4 w.bin 0 64 slice "
        "9223372036854775807x0 1x4\noutput 0 y\n")
    huge_buffers = raw_program(
        "huge_buffers", "input 0 x f32 1099511627776\n"
        "op neg 1:f32:1099511627776 = 0\noutput 1 y\n")
    huge_constant = raw_program(
        "huge_constant", "const 0 f32 1099511627776 1\noutput 0 y\n")

    run = os.path.join(args.bin, "moe-run")
    output = os.path.join(work, "out.npy")
    cases = [
        ("wrong input shape", [program, "--inputs", wrong_shape], "needs"),
        ("wrong input dtype", [program, "--inputs", wrong_dtype], "needs f32"),
        ("wrong input count", [program, "--inputs", f"{good},{good}"],
         "has 2 files but the program has 1 inputs"),
        ("missing input file", [program, "--inputs",
                                os.path.join(work, "absent.npy")],
         "cannot read"),
        ("truncated input file", [program, "--inputs", truncated],
         "truncated"),
        ("missing program", [os.path.join(work, "absent.moe")],
         "cannot read program"),
        ("truncated program", [truncated_program], "truncated.moe"),
        ("garbage program", [garbage_program], "not a moe program"),
        ("future program version", [future_program],
         "version 99 is not supported"),
        ("unknown operation", [unknown_op], "no kernel for operation"),
        ("weight outside its file", [bad_weight], "lie outside"),
        ("weight file gone", [moved_program], "cannot open weight file"),
        ("bad flag value", [program, "--iterations", "many"],
         "needs a non-negative integer"),
        ("unknown flag", [program, "--fast"], "unknown option"),
        ("GPU flag on a CPU program", [program, "--gpu-precision", "bf16",
                                       "--overlap"],
         "--gpu-precision, --overlap apply to programs compiled with "
         "moe-compile --target cuda"),
        ("overflowing shape", [overflowing], "is too large"),
        ("slice offset overflow", [slice_overflow], "slice exceeds"),
        ("buffers larger than memory", [huge_buffers], "more than this"),
        ("huge constant", [huge_constant], "is too large"),
        ("mismatching reference", [program, "--inputs", good, "--compare",
                                   wrong_shape], "FAIL"),
    ]
    passed = failed = 0
    for label, arguments, expected in cases:
        if os.path.exists(output):
            os.remove(output)
        result = subprocess.run([run] + arguments + ["--outputs", output,
                                                     "--iterations", "1",
                                                     "--warmup", "0"]
                                if arguments[0].endswith(".moe") and
                                "--iterations" not in arguments
                                else [run] + arguments + ["--outputs", output],
                                capture_output=True, text=True)
        text_out = result.stdout + result.stderr
        problems = []
        if result.returncode not in (1, 2):
            problems.append(f"exit code {result.returncode}")
        if expected not in text_out:
            problems.append(f"output lacks '{expected}'")
        if os.path.exists(output):
            problems.append("wrote the output file")
        first = (result.stderr or result.stdout).strip().splitlines()
        print(f"{'FAIL' if problems else 'PASS'} {label}: "
              f"{first[-1] if first else ''}"
              + (f" [{'; '.join(problems)}]" if problems else ""))
        passed += not problems
        failed += bool(problems)
    # The diagnostics files of a good run: a Chrome trace with one complete
    # event per operation, and one expert-load line per MoE layer whose
    # counts add up to tokens * top_k.
    trace, load = os.path.join(work, "trace.json"), os.path.join(work,
                                                                 "load.jsonl")
    result = subprocess.run([run, program, "--inputs", good, "--iterations",
                             "1", "--trace", trace, "--expert-load", load],
                            capture_output=True, text=True)
    problems = []
    if result.returncode != 0:
        problems.append(f"exit code {result.returncode}: {result.stderr}")
    else:
        with open(trace) as f:
            events = json.load(f)["traceEvents"]
        operations = sum(1 for l in text.splitlines() if l.startswith("op "))
        complete = [e for e in events if e["ph"] == "X"]
        if not complete or len(complete) > operations or any(
                e["dur"] < 0 or e["pid"] != 0 for e in complete):
            problems.append(f"trace has {len(complete)} events for "
                            f"{operations} operations")
        with open(load) as f:
            layers = [json.loads(line) for line in f]
        top_k = int(re.search(r"top_k=i:(\d+)", text).group(1))
        if len(layers) != text.count("op dispatch ") or any(
                sum(l["tokens_per_expert"]) != shape[0] * top_k or
                l["max"] != max(l["tokens_per_expert"]) for l in layers):
            problems.append(f"expert load is inconsistent: {layers}")
    print(f"{'FAIL' if problems else 'PASS'} trace and expert load"
          + (f" [{'; '.join(problems)}]" if problems else ""))
    passed += not problems
    failed += bool(problems)
    # An ONNX test data set (input_K.pb / output_K.pb) gives the same run as
    # the .npy files.
    from onnx import numpy_helper
    data_set = os.path.join(work, "test_data_set_0")
    os.makedirs(data_set, exist_ok=True)
    reference = os.path.join(work, "reference.npy")
    subprocess.run([run, program, "--inputs", good, "--outputs", reference,
                    "--iterations", "1"], check=True, capture_output=True)
    with open(os.path.join(data_set, "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(np.load(good)).SerializeToString())
    with open(os.path.join(data_set, "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(np.load(reference)).SerializeToString())
    result = subprocess.run([run, program, "--inputs", data_set, "--compare",
                             data_set, "--iterations", "1"],
                            capture_output=True, text=True)
    ok = result.returncode == 0 and "compare" in result.stdout
    print(f"{'PASS' if ok else 'FAIL'} ONNX test data set inputs"
          + ("" if ok else f" [{result.stdout}{result.stderr}]"))
    passed += ok
    failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
