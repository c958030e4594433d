#!/usr/bin/env python3
"""moe-run against onnxruntime on the CPU, side by side in one run.

    cpu_vs_onnxruntime.py [--bin build/bin] [--work build/bench/cpu]
                          [--threads 1] [--repeats 5] [--iterations 20]
                          [--json bench/results/cpu_vs_onnxruntime.json]

For each model and each batch x sequence shape (1x1 decode, 1x128, 8x512)
both engines run the same ONNX file on the same inputs with the same thread
count. Each repeat is a fresh process per engine that warms up once and
times `iterations` runs; the reported latency is the median over repeats of
each repeat's median. Peak RSS is measured per process with /usr/bin/time.
Outputs are compared (rtol 1e-4, atol 1e-5) in every repeat, so a fast wrong
answer cannot count.

Models:
- moe_demo: the demo stack of com.microsoft.MoE blocks
  (examples/onnx/make_demo_model.py: 2 blocks, hidden 1024, 8 experts,
  inter 2816, top-2);
- mixtral_bench: a Mixtral-style decoder exported by torch.onnx.export
  (dynamo, transformers' batched_mm experts; bench/export_hf_bench_model.py:
  4 layers, hidden 256, 8 experts, inter 512). It needs torch, so it runs
  only when .venv-torch exists (the export is cached in the work folder).
  At 8x512 onnxruntime cannot run the batch on a 24 GiB machine (the
  exported graph gathers every token's expert weights; the kernel's OOM
  killer stopped it at 23.2 GiB), so there it runs the 8 sequences one at a
  time (1x512 each; rows of the batch are independent) and the row reports
  the sum, with the peak RSS of those runs.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(1, 1), (1, 128), (8, 512)]
HF_SHAPES = SHAPES
# Shapes where onnxruntime runs the batch one sequence at a time.
ORT_PER_SEQUENCE = {("mixtral_bench", 8, 512)}


def ort_worker(model, inputs, iterations, threads, per_sequence):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    data = np.load(inputs)
    # One feed, or one per sequence of the batch.
    feeds = ([{name: data[i:i + 1]} for i in range(data.shape[0])]
             if per_sequence else [{name: data}])
    output = np.concatenate([session.run(None, feed)[0] for feed in feeds])
    latencies = []
    for _ in range(iterations):
        start = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        latencies.append(time.perf_counter() - start)
    np.save(inputs + ".ort.npy", output)
    print(f"p50 {statistics.median(latencies) * 1e3:.6f} ms")


def timed(command):
    result = subprocess.run(["/usr/bin/time", "-v"] + command,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}"
                 f"{result.stderr}")
    p50 = float(re.search(r"p50 ([0-9.]+) ms", result.stdout).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                        result.stderr).group(1)) / 1024.0
    return p50, rss, result.stdout


def bench_shape(args, python, name, model, model_config, batch, sequence):
    """Times both engines on one model and shape; returns the JSON row."""
    tag = f"{batch}x{sequence}"
    inputs = os.path.join(args.work, f"{name}_{tag}.npy")
    rng = np.random.default_rng(batch * 1000 + sequence)
    if name == "moe_demo":
        tokens = batch * sequence
        np.save(inputs, rng.standard_normal(
            (tokens, model_config["hidden"])).astype(np.float32))
        dim_params = f"tokens={tokens}"
    else:
        tokens = batch * sequence
        np.save(inputs, rng.integers(0, model_config["vocab"],
                                     (batch, sequence)).astype(np.int64))
        dim_params = f"batch={batch},seq={sequence}"
    program = os.path.join(args.work, f"{name}_{tag}.moe")
    subprocess.run([os.path.join(args.bin, "moe-compile"), model, "-o",
                    program, f"--dim-params={dim_params}"], check=True,
                   capture_output=True)
    # Large shapes take seconds per run; fewer iterations keep the benchmark
    # short without changing what a median means.
    iterations = args.iterations if tokens <= 128 else max(
        3, args.iterations // 6)
    per_sequence = (name, batch, sequence) in ORT_PER_SEQUENCE
    if per_sequence:
        # Tens of seconds per onnxruntime run: one timed run per repeat.
        iterations = 1
    ort_runs, moe_runs, ort_rss, moe_rss = [], [], [], []
    for _ in range(args.repeats):
        p50, rss, _ = timed([python, os.path.abspath(__file__),
                             "--ort-worker", model, inputs, str(iterations),
                             str(args.threads), str(int(per_sequence))])
        ort_runs.append(p50)
        ort_rss.append(rss)
        p50, rss, _ = timed([os.path.join(args.bin, "moe-run"), program,
                             "--inputs", inputs, "--compare",
                             inputs + ".ort.npy", "--threads",
                             str(args.threads), "--warmup", "1",
                             "--iterations", str(iterations)])
        moe_runs.append(p50)
        moe_rss.append(rss)
    ort_ms, moe_ms = statistics.median(ort_runs), statistics.median(moe_runs)
    row = {"model": name, "shape": tag, "tokens": tokens,
           "iterations": iterations,
           "onnxruntime_ms": round(ort_ms, 4),
           "moe_run_ms": round(moe_ms, 4),
           "speedup": round(ort_ms / moe_ms, 3),
           "onnxruntime_peak_rss_mb": round(max(ort_rss), 1),
           "moe_run_peak_rss_mb": round(max(moe_rss), 1),
           "rss_ratio": round(max(moe_rss) / max(ort_rss), 3),
           "outputs_match": True}
    if per_sequence:
        row["onnxruntime_note"] = (
            f"the {batch}x{sequence} batch does not fit in onnxruntime on a "
            "24 GiB machine (killed by the OOM killer at 23.2 GiB); it ran "
            f"the {batch} sequences one at a time (1x{sequence} each) and "
            "the latency is their sum")
    print(f"{name:>14} {tag:>6}: onnxruntime {ort_ms:9.3f} ms, moe-run "
          f"{moe_ms:9.3f} ms -> {row['speedup']:.2f}x; peak RSS "
          f"{row['onnxruntime_peak_rss_mb']:.0f} vs "
          f"{row['moe_run_peak_rss_mb']:.0f} MB", flush=True)
    return row


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--ort-worker":
        ort_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                   int(sys.argv[5]), sys.argv[6:] == ["1"])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(REPO, "build/bin"))
    parser.add_argument("--work", default=os.path.join(REPO,
                                                       "build/bench/cpu"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--json", default=os.path.join(
        REPO, "bench/results/cpu_vs_onnxruntime.json"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    python = sys.executable

    models = []
    demo = os.path.join(args.work, "moe_demo.onnx")
    subprocess.run([python, os.path.join(REPO, "examples/onnx/"
                                         "make_demo_model.py"), demo,
                    "--hidden", "1024", "--inter", "2816"], check=True)
    models.append(("moe_demo", demo, {
        "blocks": 2, "hidden": 1024, "experts": 8, "inter": 2816, "top_k": 2,
        "activation": "swiglu", "op": "com.microsoft.MoE"}, SHAPES))
    torch_python = os.path.join(REPO, ".venv-torch/bin/python")
    hf = os.path.join(args.work, "mixtral_bench.onnx")
    if not os.path.exists(hf) and os.path.exists(torch_python):
        subprocess.run([torch_python, os.path.join(
            REPO, "bench/export_hf_bench_model.py"), hf], check=True)
    if os.path.exists(hf):
        models.append(("mixtral_bench", hf, {
            "layers": 4, "hidden": 256, "experts": 8, "inter": 512,
            "top_k": 2, "vocab": 2048,
            "exporter": "torch.onnx.export (dynamo), batched_mm experts"},
            HF_SHAPES))
    else:
        print("SKIP mixtral_bench: .venv-torch is missing (create it and "
              "install torch + transformers to export the model)")

    rows = []
    for name, model, model_config, shapes in models:
        for batch, sequence in shapes:
            rows.append(bench_shape(args, python, name, model, model_config,
                                    batch, sequence))

    import onnxruntime
    result = {
        "benchmark": "moe-run vs onnxruntime, CPU, same ONNX model",
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "system": platform.platform()},
        "versions": {"onnxruntime": onnxruntime.__version__,
                     "numpy": np.__version__},
        "config": {"models": {name: config for name, _, config, _ in models},
                   "threads": args.threads, "repeats": args.repeats,
                   "iterations_per_repeat": args.iterations,
                   "statistic": "median over repeats of per-repeat medians"},
        "results": rows,
        "targets": {"speedup_com_microsoft_moe": 1.0,
                    "speedup_decomposed_exports": 1.5, "rss_ratio": 1.2},
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
