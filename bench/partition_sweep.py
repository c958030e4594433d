#!/usr/bin/env python3
"""The partition sweep: every model of the import test set under every plan
of the sweep, on CPU ranks as threads and as MPI processes, against
onnxruntime.

    bench/partition_sweep.py [--bin build/bin] [--work build/sweep]
        [--out bench/results/partition_sweep.json] [--models REGEX]

Models: test/e2e/models.txt, plus the models onnxruntime cannot run on
random inputs, against a model it can run with the same weights (REFERENCED
below). Plans: ep in {1, 2, 4, 8} x tp in {1, 2} x pp in {1, 2}, up to 8
ranks. Each
case runs test/e2e/run_onnx_model.py (moe-compile --machine=cpu:N
--plan=PLAN, then moe-run --ranks N or mpirun -np N, compared with
onnxruntime within rtol 1e-4 / atol 1e-5; a partitioned run must also say
that it ran a partitioned program and that all ranks agree). Models run on 8
tokens (batch 2 x sequence 4 for language models), so that every ep of the
sweep divides the token count.

Outcomes: pass; fail (a mismatch or an error the plan should not cause);
not applicable, with the compiler's reason (an expert count the ep does not
divide, more stages than layers, a model whose MoE blocks are not raised);
not supported (a plan the partitioner rejects, counted here, not hidden). The JSON lists every case; the summary prints
counts.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def models():
    path = os.path.join(REPO, "test", "e2e", "models.txt")
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            dims = fields[1] if len(fields) > 1 else ""
            int_high = fields[2] if len(fields) > 2 else "8"
            # 8 tokens: divisible by every ep of the sweep.
            dims = "batch=2,seq=4" if "seq=" in dims else (
                "tokens=8" if "tokens=" in dims else dims)
            yield fields[0], dims, int_high


# Models of the import test set that onnxruntime cannot run on random
# inputs, each with the model onnxruntime runs for the reference instead:
# the eager expert loops (the same weights as the batched_mm exports; the
# loop runs only when every traced expert gets tokens) and ShardedMoE (not
# in the CPU onnxruntime).
REFERENCED = [
    (f"ONNX/models/hf/{m}-eager-torchscript.onnx",
     f"ONNX/models/hf/{m}-batched_mm-torchscript.onnx", "batch=2,seq=4", "128")
    for m in ("mixtral", "qwen2_moe", "olmoe", "olmoe_top1", "deepseek_v3")
] + [
    ("ONNX/models/hf/mixtral-eager-torchscript-7of8.onnx",
     "ONNX/models/hf/mixtral-batched_mm-torchscript.onnx", "batch=2,seq=4",
     "128"),
    ("ONNX/models/ort/sharded_moe_silu_top2.onnx",
     "ONNX/models/ort/moe_silu_top2.onnx", "tokens=8", "8"),
]


def plans():
    for ep in (1, 2, 4, 8):
        for tp in (1, 2):
            for pp in (1, 2):
                if ep * tp * pp <= 8:
                    yield {"ep": ep, "tp": tp, "pp": pp}


def classify(output, returncode):
    if returncode == 0 and "PASS" in output:
        return "pass", ""
    for pattern in (r"which the partitioner does not apply yet",):
        if re.search(pattern, output):
            return "not supported", "the partitioner applies ep and tp " \
                "inside MoE layers; pp > 1 is rejected by moe-compile"
    match = re.search(r"no plan for model .*?; rejected: \w+ \(e\.g\. [^:]*: "
                      r"(.*)\)$", output, re.MULTILINE)
    if match:
        return "not applicable", match.group(1)
    match = re.search(r"error: '?moe\.layer'? op (has \d+ experts, which .*?);",
                      output)
    if match:
        return "not applicable", match.group(1)
    if "has no moe.layer to plan" in output:
        return "not applicable", "no MoE layer was raised to moe.layer " \
            "(DeepSeek-V3's router is not raised yet), so there is nothing " \
            "to plan or split"
    if "did not run a partitioned program" in output:
        return "not applicable", "no MoE layer was raised, so there is " \
            "nothing to split"
    if "SKIP" in output:
        return "skipped", output.strip().splitlines()[-1]
    return "fail", output.strip().splitlines()[-1] if output.strip() else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(REPO, "build", "bin"))
    parser.add_argument("--work", default=os.path.join(REPO, "build", "sweep"))
    parser.add_argument("--out", default=os.path.join(
        REPO, "bench", "results", "partition_sweep.json"))
    parser.add_argument("--models", default="",
                        help="only models whose path matches this regex")
    args = parser.parse_args()
    python = os.path.join(REPO, ".venv", "bin", "python")
    runner = os.path.join(REPO, "test", "e2e", "run_onnx_model.py")
    have_mpirun = shutil.which("mpirun") is not None
    if not have_mpirun:
        print("note: mpirun not found (install openmpi-bin): the MPI half of "
              "the sweep is reported as skipped")

    cases = []
    start = time.time()
    runs = [(m, d, i, None) for m, d, i in models()] + [
        (m, d, i, r) for m, r, d, i in REFERENCED]
    for model, dims, int_high, reference in runs:
        if args.models and not re.search(args.models, model):
            continue
        for plan in plans():
            ranks = plan["ep"] * plan["tp"] * plan["pp"]
            text = " ".join(f"{k}={v}" for k, v in plan.items())
            for transport in ("threads", "mpi"):
                if ranks == 1 and transport == "mpi":
                    continue
                case = {"model": model, "dim_params": dims, "plan": text,
                        "ranks": ranks, "transport": transport}
                if reference:
                    case["onnxruntime_reference"] = reference
                if transport == "mpi" and not have_mpirun:
                    case.update(outcome="skipped", reason="mpirun not found")
                    cases.append(case)
                    continue
                command = [python, runner, os.path.join(REPO, "test", model),
                           "--bin", args.bin, "--work",
                           os.path.join(args.work, f"{transport}-{ranks}"),
                           "--dim-params=" + dims, "--int-high", int_high]
                if reference:
                    command += ["--reference-model",
                                os.path.join(REPO, "test", reference)]
                if ranks > 1:
                    command += ["--plan", text,
                                "--mpirun" if transport == "mpi" else "--ranks",
                                str(ranks)]
                case_start = time.time()
                result = subprocess.run(command, capture_output=True,
                                        text=True, timeout=900)
                output = result.stdout + result.stderr
                outcome, reason = classify(output, result.returncode)
                match = re.search(r"max abs diff ([0-9.e+-]+)", output)
                case.update(outcome=outcome, reason=reason,
                            seconds=round(time.time() - case_start, 2))
                if match:
                    case["max_abs_diff"] = float(match.group(1))
                cases.append(case)
                print(f"{outcome:15s} {model} {text} {transport}"
                      + (f": {reason}" if reason else ""), flush=True)

    summary = {}
    for case in cases:
        summary[case["outcome"]] = summary.get(case["outcome"], 0) + 1
    report = {
        "description": "partitioned runs on CPU ranks vs onnxruntime "
                       "(rtol 1e-4, atol 1e-5), bench/partition_sweep.py",
        "seconds": round(time.time() - start, 1),
        "summary": summary,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print("summary:", ", ".join(f"{v} {k}" for k, v in sorted(summary.items())))
    print("wrote", args.out)
    return 1 if summary.get("fail") else 0


if __name__ == "__main__":
    sys.exit(main())
