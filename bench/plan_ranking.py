#!/usr/bin/env python3
"""Does the cost model rank plans as they run? Spearman's rank correlation
between the predicted and the measured step time of many plans of one model
on the CPU ranks of this machine.

    bench/plan_ranking.py [--bin build/bin] [--work build/plan-ranking]
        [--out bench/results/plan_ranking.json] [--repeats 5]
        [--iterations 20]

The model: the demo model (examples/onnx/make_demo_model.py) with 4 blocks
of self-attention (4 heads) and MoE (8 experts of intermediate size 1024,
top-2, a router skewed so that the expert load is roughly Zipf(1)), hidden
256, on 256 tokens. Attention is the work outside the experts: pipeline
stages split it, while expert- and tensor-parallel ranks each compute it. Its
measured expert load (moe-run --expert-load on one rank) is what every plan
is priced with.

The machine: N CPU ranks on this machine, described to the planner as a
file based on cpu:N whose per-rank peak FLOP/s and memory bandwidth are
measured here (single-thread sgemm and copy through numpy), and whose
"cores" is this machine's core count: with more ranks than cores, the cost
model prices the time-sharing (a stage computes no faster than its ranks'
total work over the cores).

Each plan is compiled with moe-compile --machine=FILE --plan=PLAN (its
predicted step time from the JSON report) and run with moe-run --ranks N
(median of --repeats runs of moe-run's p50 over --iterations runs). Prints one
line per plan and Spearman's rho; writes the JSON.
"""

import os

# One BLAS thread for the numpy measurements, as each rank uses.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENS = 256
PLANS = [
    "pp=1",
    "pp=2", "ep=2", "tp=2",
    "pp=4", "pp=2 ep=2", "pp=2 tp=2", "ep=4", "ep=2 tp=2", "tp=4",
    "ep=8", "pp=2 ep=4", "ep=4 tp=2", "pp=4 ep=2",
]


def ranks_of(plan):
    ranks = 1
    for word in plan.split():
        ranks *= int(word.split("=")[1])
    return ranks


def measure_machine():
    """Single-thread sgemm FLOP/s and copy bandwidth of this machine."""
    a = np.random.default_rng(0).standard_normal((512, 1024), np.float32)
    b = np.random.default_rng(1).standard_normal((1024, 1024), np.float32)
    a @ b
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        runs.append(time.perf_counter() - start)
    flops = 2 * 512 * 1024 * 1024 / min(runs)
    x = np.ones(64 << 20 >> 2, np.float32)
    y = np.empty_like(x)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(y, x)
        runs.append(time.perf_counter() - start)
    bandwidth = 2 * x.nbytes / min(runs)
    return flops, bandwidth


def spearman(xs, ys):
    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return result
    rx, ry = ranks(xs), ranks(ys)
    return float(np.corrcoef(rx, ry)[0, 1])


def run(command):
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout}"
                 f"{result.stderr}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(REPO, "build", "bin"))
    parser.add_argument("--work", default=os.path.join(REPO, "build",
                                                       "plan-ranking"))
    parser.add_argument("--out", default=os.path.join(
        REPO, "bench", "results", "plan_ranking.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    compiler = os.path.join(args.bin, "moe-compile")
    runner = os.path.join(args.bin, "moe-run")
    python = sys.executable

    model = os.path.join(args.work, "model.onnx")
    run([python, os.path.join(REPO, "examples", "onnx", "make_demo_model.py"),
         model, "--layers", "4", "--hidden", "256", "--experts", "8",
         "--inter", "1024", "--heads", "4", "--router-skew", "1.0"])
    dims = f"--dim-params=tokens={TOKENS}"
    inputs = os.path.join(args.work, "x.npy")
    np.save(inputs, np.random.default_rng(7).standard_normal(
        (TOKENS, 256)).astype(np.float32))

    # The measured expert load, from one rank.
    single = os.path.join(args.work, "single.moe")
    load = os.path.join(args.work, "load.jsonl")
    run([compiler, model, dims, "-o", single])
    run([runner, single, "--inputs", inputs, "--iterations", "1",
         "--expert-load", load])

    cores = len(os.sched_getaffinity(0))
    flops, bandwidth = measure_machine()
    print(f"this machine: {cores} cores, {flops / 1e9:.1f} GFLOP/s and "
          f"{bandwidth / 1e9:.1f} GB/s per core (single-thread sgemm, copy)")

    results = []
    for plan in PLANS:
        ranks = ranks_of(plan)
        machine = os.path.join(args.work, f"cpu{ranks}.json")
        with open(machine, "w") as f:
            json.dump({"name": f"cpu:{ranks} on {cores} cores",
                       "base": f"cpu:{ranks}", "cores": cores,
                       "peak_tflops": {t: flops / 1e12 for t in
                                       ("fp32", "bf16", "fp16", "fp8")},
                       "memory_bandwidth_gb_per_s": bandwidth / 1e9}, f)
        program = os.path.join(args.work, plan.replace(" ", "_") + ".moe")
        report = program + ".json"
        run([compiler, model, dims, f"--machine={machine}", f"--plan={plan}",
             f"--expert-load={load}", f"--report={report}", "-o", program])
        with open(report) as f:
            predicted = json.load(f)["plan"]["seconds"]
        latencies = []
        for _ in range(args.repeats):
            output = run([runner, program, "--inputs", inputs, "--ranks",
                          str(ranks), "--warmup", "2", "--iterations",
                          str(args.iterations)])
            latencies.append(float(re.search(r"p50 ([0-9.]+) ms",
                                              output).group(1)) / 1e3)
        measured = statistics.median(latencies)
        results.append({"plan": plan, "ranks": ranks,
                        "predicted_s": predicted, "measured_s": measured,
                        "measured_runs_s": latencies})
        print(f"{plan:14s} ranks {ranks}: predicted {predicted * 1e3:8.3f} ms"
              f", measured {measured * 1e3:8.3f} ms", flush=True)

    rho = spearman([r["predicted_s"] for r in results],
                   [r["measured_s"] for r in results])
    print(f"Spearman rho over {len(results)} plans: {rho:.3f} "
          f"(target >= 0.8)")
    report = {
        "description": "cost-model ranking vs measured ranking of plans on "
                       "CPU ranks, bench/plan_ranking.py",
        "model": f"demo model, 4 blocks of attention (4 heads) and MoE, "
                 f"hidden 256, 8 experts, inter 1024, top-2, router skew "
                 f"1.0, {TOKENS} tokens",
        "machine": {"cores": cores, "gflops_per_core": flops / 1e9,
                    "copy_gb_per_s_per_core": bandwidth / 1e9},
        "spearman_rho": rho,
        "plans": results,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
