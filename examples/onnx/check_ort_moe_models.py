#!/usr/bin/env python3
"""Checks every model written by make_ort_moe_models.py against moe.layer.

    check_ort_moe_models.py [MODEL_DIR]     (default: test/ONNX/models/ort)

For each `<model>.onnx` with its `<model>.json` sidecar: builds the moe.layer
operands from the model's initializers as the sidecar's transforms say, runs
the model in onnxruntime (CPU) and tools/reference/moe_reference.py (both
`layer` and `decomposed_layer`) on the same random input, and asserts
allclose(rtol=1e-4, atol=1e-5). Prints one line per model and a final
'N passed, M failed'; exits non-zero when any failed.
"""

import glob
import json
import os
import sys
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))
import moe_reference  # noqa: E402

DEFAULT_DIR = os.path.join(REPO, "test", "ONNX", "models", "ort")
RTOL, ATOL = 1e-4, 1e-5
# Sizes for the symbolic input dimensions.
DIMS = {"tokens": 9, "batch": 2, "seq": 5}


def unpack(packed, bits, count):
    """Unpacks LSB-first `bits`-wide codes along the last axis; keeps `count`."""
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    codes = np.stack([(packed >> (i * bits)) & mask for i in range(per_byte)], -1)
    return codes.reshape(*packed.shape[:-1], -1)[..., :count]


def dequantize(packed, bits, block_size, scales, zero_points):
    """QMoE's integer weights: uint8 [E, N, K*bits/8] -> float64 [E, N, K]."""
    experts, rows, _ = packed.shape
    cols = packed.shape[-1] * 8 // bits
    q = unpack(packed, bits, cols).astype(np.float64)
    blocks = cols // block_size if block_size else 1
    s = scales.astype(np.float64).reshape(experts, rows, blocks)
    if zero_points is None:
        zp = np.full((experts, rows, blocks), 2.0 ** (bits - 1))
    elif block_size:
        zp = unpack(zero_points, bits, blocks).astype(np.float64)
    else:
        zp = unpack(zero_points, bits, rows).astype(np.float64)[..., None]
    repeat = block_size if block_size else cols
    return (q - np.repeat(zp, repeat, -1)) * np.repeat(s, repeat, -1)


def apply_transforms(value, transforms, inits):
    for t in transforms:
        if t["op"] == "dequantize":
            zp = inits[t["zero_points"]] if t["zero_points"] else None
            value = dequantize(value, t["bits"], t["block_size"], inits[t["scales"]], zp)
        elif t["op"] == "reshape":
            value = value.reshape(t["shape"])
        elif t["op"] == "slice":
            index = [slice(None)] * value.ndim
            index[t["axis"]] = slice(t["start"], None, t["step"])
            value = value[tuple(index)]
        elif t["op"] == "transpose":
            value = value.transpose(t["perm"])
        else:
            raise ValueError(f"unknown transform {t['op']!r}")
    return value


def run_ort(model_path, feeds, env):
    """Runs the model on the CPU provider with `env` set while the session is
    created (QMoE reads its switches then)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    return session.run(None, feeds)[0]


def check(sidecar_path):
    """Returns (ok, message) for one model."""
    with open(sidecar_path) as f:
        side = json.load(f)
    model_path = os.path.join(os.path.dirname(sidecar_path), side["model"])
    model = onnx.load(model_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    (graph_input,) = [i for i in model.graph.input if i.name == side["input"]]
    shape = [d.dim_value or DIMS[d.dim_param] for d in graph_input.type.tensor_type.shape.dim]

    rng = np.random.default_rng(zlib.crc32(side["model"].encode()))
    x = rng.standard_normal(shape).astype(np.float32)
    y_ort = run_ort(model_path, {side["input"]: x}, side["ort_env"])

    operands = {name: apply_transforms(inits[op["initializer"]], op["transforms"], inits)
                for name, op in side["operands"].items()}
    tokens = x.reshape(-1, shape[-1])
    worst = 0.0
    for fn in (moe_reference.layer, moe_reference.decomposed_layer):
        y_ref = fn(tokens, **operands, **side["layer"], f64=True).reshape(y_ort.shape)
        worst = max(worst, float(np.max(np.abs(y_ref - y_ort))))
        if not np.allclose(y_ort, y_ref, rtol=RTOL, atol=ATOL):
            return False, f"{fn.__name__} differs from ORT, max |diff| {worst:.3g}"
    return True, f"max |diff| {worst:.2g}"


def main(argv):
    model_dir = argv[1] if len(argv) > 1 else DEFAULT_DIR
    sidecars = sorted(glob.glob(os.path.join(model_dir, "*.json")))
    if not sidecars:
        print(f"no models in {model_dir}; run make_ort_moe_models.py first")
        return 1
    passed = failed = 0
    for path in sidecars:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            ok, message = check(path)
        except Exception as e:  # a broken model or sidecar is a failure, not a crash
            ok, message = False, f"{type(e).__name__}: {e}"
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name:32s} {message}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
