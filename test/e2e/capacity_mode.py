#!/usr/bin/env python3
"""Capacity mode end to end (moe-compile --capacity-factor).

    capacity_mode.py --bin BUILD/bin --work DIR

On onnxruntime MoE test models with a JSON sidecar (the moe.layer operands
as transforms of the initializers, see examples/onnx/make_ort_moe_models.py):
- with a capacity large enough for every (token, slot) pair, moe-run's
  outputs equal onnxruntime's dropless ones;
- with a small capacity, they equal the numpy reference of the stated policy
  (tools/reference/moe_reference.py: each expert keeps its earliest tokens)
  and the kept pairs per expert (moe-run --expert-load) equal the
  reference's;
- partitioned over 2 expert-parallel ranks (moe-compile --machine=cpu:2
  --plan=ep=2), and over 2 x 2 expert- and tensor-parallel ranks, the same
  with the partitioned policy: each expert-parallel rank dispatches its own
  half of the tokens with the capacity of that half, so the reference
  applies the layer to each half.
Prints one line per case and 'N passed, N failed'.

With --target cuda the programs are compiled for the GPU and run there
(without the expert-load check, which the CUDA backend does not report);
without a GPU the script prints a SKIP line. --prepare DIR only compiles
them, writing each case as bench/gpu/run.sh expects it (DIR/<case>-cuda/
with model.moe, input.0.npy, reference.0.npy and run-flags).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))
sys.path.insert(0, os.path.join(REPO, "examples", "onnx"))
import moe_reference  # noqa: E402
from check_ort_moe_models import apply_transforms  # noqa: E402

MODELS = ["moe_silu_top2", "moe_swiglu_interleaved", "moe_relu_bias_top1"]
TOKENS = 16


def run_case(args, name, factor, reference, ep=1, tp=1):
    ranks = ep * tp
    models = os.path.join(REPO, "test", "ONNX", "models", "ort")
    with open(os.path.join(models, name + ".json")) as f:
        side = json.load(f)
    model_path = os.path.join(models, side["model"])
    model = onnx.load(model_path)
    inits = {t.name: numpy_helper.to_array(t)
             for t in model.graph.initializer}
    hidden = [d.dim_value for d in model.graph.input[0].type.tensor_type
              .shape.dim][-1]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((TOKENS, hidden)).astype(np.float32)
    work = os.path.join(args.work, f"{name}_{factor}_ep{ep}_tp{tp}")
    os.makedirs(work, exist_ok=True)
    inputs, outputs = os.path.join(work, "x.npy"), os.path.join(work, "y.npy")
    load = os.path.join(work, "load.jsonl")
    np.save(inputs, x)
    program = os.path.join(work, "model.moe")
    cuda = args.target == "cuda"
    compile_command = ([os.path.join(args.bin, "moe-compile"), model_path,
                        f"--dim-params=tokens={TOKENS}",
                        f"--capacity-factor={factor}", "-o", program] +
                       ([f"--machine=cpu:{ranks}", f"--plan=ep={ep} tp={tp}"]
                        if ranks > 1 else []) +
                       (["--target=cuda"] if cuda else []))
    run_command = ([os.path.join(args.bin, "moe-run"), program, "--inputs",
                    inputs, "--outputs", outputs, "--warmup", "0",
                    "--iterations", "1", "--ranks", str(ranks)] +
                   ([] if cuda else ["--expert-load", load]))
    for command in ([compile_command] if args.prepare else
                    [compile_command, run_command]):
        result = subprocess.run(command, capture_output=True, text=True)
        if cuda and "needs a GPU" in result.stderr:
            return None, "no GPU here, so the CUDA program did not run"
        if result.returncode != 0:
            return False, f"{os.path.basename(command[0])} failed: " \
                          f"{result.stderr.strip()}"
    y = None if args.prepare else np.load(outputs)
    kept = None
    if not cuda:
        # One line per layer and rank: the pairs each rank kept for each
        # expert. The tensor-parallel ranks of a row dispatch the same
        # tokens: count each row once (rank = e * tp + t).
        with open(load) as f:
            lines = [json.loads(line) for line in f]
        kept = np.sum([line["tokens_per_expert"] for line in lines
                       if line["layer"] == 0 and line["rank"] % tp == 0],
                      axis=0).tolist()
        if len([line for line in lines if line["layer"] == 0]) != ranks:
            return False, f"expected expert load lines from {ranks} ranks"

    operands = {key: apply_transforms(inits[op["initializer"]],
                                      op["transforms"], inits)
                for key, op in side["operands"].items()}
    attributes = dict(side["layer"])
    experts = operands["router_weight"].shape[1]
    # Each expert-parallel rank's tokens, with the capacity of their count
    # (tensor-parallel ranks share their row's tokens).
    groups = np.split(x, ep)
    capacity = moe_reference.capacity_for(factor, TOKENS // ep,
                                          attributes["top_k"], experts)
    if reference == "onnxruntime":
        os.environ.update(side.get("ort_env", {}))
        session = ort.InferenceSession(model_path,
                                       providers=["CPUExecutionProvider"])
        expected = session.run(None, {side["input"]: x})[0]
    else:
        expected = np.concatenate([
            moe_reference.layer(group, **operands, **attributes,
                                capacity_factor=factor, f64=True)
            for group in groups])
    # The reference's kept pairs per expert: the first `capacity` of each
    # rank's pairs.
    counts = np.zeros(experts, np.int64)
    expected_kept = np.zeros(experts, np.int64)
    for group in groups:
        _, selected = moe_reference.router(
            group.astype(np.float64), operands["router_weight"],
            top_k=attributes["top_k"], score=attributes["score"],
            normalize=attributes.get("normalize", False),
            router_bias=operands.get("router_bias"))
        group_counts = np.bincount(selected.reshape(-1), minlength=experts)
        counts += group_counts
        expected_kept += np.minimum(group_counts, capacity)
    expected_kept = expected_kept.tolist()
    if args.prepare:
        case = os.path.join(args.prepare,
                            f"{name}_{factor}_ep{ep}_tp{tp}-cuda")
        os.makedirs(case, exist_ok=True)
        shutil.copy(program, os.path.join(case, "model.moe"))
        np.save(os.path.join(case, "input.0.npy"), x)
        np.save(os.path.join(case, "reference.0.npy"),
                np.asarray(expected, np.float32))
        with open(os.path.join(case, "run-flags"), "w") as f:
            f.write(f"--ranks {ranks}\n")
        return True, "compiled for the GPU machine"
    if kept is not None and kept != expected_kept:
        return False, f"kept pairs {kept}, expected {expected_kept}"
    if not np.allclose(y, expected, rtol=1e-4, atol=1e-5):
        return False, (f"outputs differ from {reference}: max |diff| "
                       f"{np.max(np.abs(y - expected)):.3g}")
    dropped = int(counts.sum() - sum(kept))
    where = f" on ep={ep} x tp={tp} ranks" if ranks > 1 else ""
    return True, (f"capacity {capacity}, {dropped} of {int(counts.sum())} "
                  f"pairs dropped, matches {reference}{where}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--target", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--prepare", default="",
                        help="with --target cuda: only compile, into this "
                             "folder, for bench/gpu/run.sh")
    args = parser.parse_args()
    if args.prepare and args.target != "cuda":
        parser.error("--prepare needs --target cuda")
    passed = failed = 0
    for name in MODELS:
        # A factor of `experts` gives capacity tokens * top_k: nothing drops.
        for ep, tp in ((1, 1), (2, 1), (2, 2)):
            for factor, reference in ((8.0, "onnxruntime"),
                                      (0.5, "the numpy reference")):
                ok, message = run_case(args, name, factor, reference, ep, tp)
                if ok is None:
                    print(f"SKIP capacity mode: {message}")
                    return 0
                print(f"{'PASS' if ok else 'FAIL'} {name} capacity factor "
                      f"{factor}: {message}")
                passed += ok
                failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
