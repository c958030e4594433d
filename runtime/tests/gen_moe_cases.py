#!/usr/bin/env python3
"""Writes runtime/tests/MoECases.inc, the MoE kernel test cases.

Each case is a small random configuration of `moe.layer` (or `moe.ffn`)
with its inputs and the outputs that tools/reference/moe_reference.py
computes for it in float64: the router's weights and experts, dispatch's
counts and sources, and the layer result. The kernels
compute in f32; MoEKernelsTest.cpp compares with a tolerance.

Inputs are multiples of 1/32, exact in f32 and short to print. A
configuration is kept only if its expert selection is robust: perturbing the
router weights by 1e-4 must not change it, so f32 rounding cannot either.

    .venv/bin/python runtime/tests/gen_moe_cases.py
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import moe_reference as ref  # noqa: E402

OUTPUT = os.path.join(HERE, "MoECases.inc")

# Operand names in the order of MoELayerCase's fields (and of moe.layer's
# optional operands).
LAYER_OPERANDS = (
    "input", "router_weight", "router_bias", "correction_bias", "gate_weight",
    "up_weight", "down_weight", "gate_bias", "up_bias", "down_bias",
    "shared_gate_weight", "shared_up_weight", "shared_down_weight",
    "shared_expert_gate_weight")

# One configuration per router variant; together they cover softmax and
# sigmoid scores, normalize on and off, the correction bias, group-limited
# selection, routed scaling, router and expert biases, shared experts with
# and without a gate, and dropless and capacity routing with drops.
LAYER_CASES = [
    dict(name="mixtral", experts=4, top_k=2, score="softmax", normalize=True,
         activation="swiglu"),
    dict(name="switch_capacity", experts=4, top_k=1, score="softmax",
         activation="relu", biases=True, capacity_factor=1.0),
    dict(name="deepseek_groups", experts=6, top_k=3, score="sigmoid",
         normalize=True, activation="silu", correction=True, num_groups=3,
         top_k_groups=2, routed_scaling_factor=2.5, shared_inter=2),
    dict(name="qwen2_shared_gate", experts=4, top_k=2, score="softmax",
         activation="geglu", shared_inter=2, shared_gated=True),
    dict(name="sigmoid_capacity_drops", experts=4, top_k=2, score="sigmoid",
         activation="gelu_tanh", router_bias=True, capacity_factor=0.5),
]

# The activations the layer cases leave out, through moe.ffn.
FFN_CASES = [
    dict(name="gelu_biases", shape=(2, 2, 3), inter=2, activation="gelu",
         biases=True),
    dict(name="identity", shape=(3, 3), inter=2, activation="identity"),
    dict(name="swiglu_biases", shape=(3, 3), inter=2, activation="swiglu",
         biases=True),
]

TOKENS, HIDDEN, INTER = 4, 3, 2


def quantize(a):
    # Adding 0 turns the -0.0 of rounding into 0.0, which prints shorter.
    rounded = np.round(np.asarray(a, np.float64) * 32) / 32 + 0.0
    return rounded.astype(np.float32)


def layer_attrs(case):
    return dict(top_k=case["top_k"], score=case["score"],
                normalize=case.get("normalize", False),
                activation=case["activation"],
                num_groups=case.get("num_groups", 1),
                top_k_groups=case.get("top_k_groups", 1),
                routed_scaling_factor=case.get("routed_scaling_factor", 1.0),
                capacity_factor=case.get("capacity_factor"))


def router_args(args, attrs):
    keys = ("router_bias", "correction_bias")
    return dict(top_k=attrs["top_k"], score=attrs["score"],
                normalize=attrs["normalize"], num_groups=attrs["num_groups"],
                top_k_groups=attrs["top_k_groups"],
                routed_scaling_factor=attrs["routed_scaling_factor"],
                **{k: args[k] for k in keys if k in args})


def selection_is_robust(rng, args, attrs):
    """The same experts win (in the same order) under small perturbations
    of the router weights, in float64 and in float32."""
    _, selected = ref.router(args["input"], args["router_weight"],
                             f64=True, **router_args(args, attrs))
    for trial in range(8):
        perturbed = dict(args)
        noise = rng.standard_normal(args["router_weight"].shape) * 1e-4
        perturbed["router_weight"] = args["router_weight"] + noise
        _, other = ref.router(perturbed["input"], perturbed["router_weight"],
                              f64=trial % 2 == 0,
                              **router_args(perturbed, attrs))
        if not np.array_equal(selected, other):
            return False
    return True


def make_layer_case(rng, case):
    attrs = layer_attrs(case)
    while True:
        args = ref.random_layer_args(
            rng, tokens=TOKENS, hidden=HIDDEN, inter=INTER,
            experts=case["experts"], activation=case["activation"],
            biases=case.get("biases", False),
            shared_inter=case.get("shared_inter"),
            shared_gated=case.get("shared_gated", False))
        if case.get("router_bias"):
            args["router_bias"] = rng.standard_normal(case["experts"]) * 0.5
        if case.get("correction"):
            args["correction_bias"] = rng.standard_normal(case["experts"]) * 0.1
        args = {k: quantize(v) for k, v in args.items()}
        if not selection_is_robust(rng, args, attrs):
            continue
        weights, selected = ref.router(args["input"], args["router_weight"],
                                       f64=True, **router_args(args, attrs))
        capacity = (None if attrs["capacity_factor"] is None else
                    ref.capacity_for(attrs["capacity_factor"], TOKENS,
                                     attrs["top_k"], case["experts"]))
        _, counts, sources = ref.dispatch(args["input"], selected,
                                             num_experts=case["experts"],
                                             capacity=capacity)
        # A capacity case must drop pairs, or it tests nothing dropless
        # does not.
        if capacity is not None and counts.sum() == selected.size:
            continue
        result = ref.layer(**args, **attrs, f64=True)
        return dict(args=args, attrs=attrs, capacity=capacity,
                    weights=weights, selected=selected, counts=counts,
                    sources=sources, result=result)


def make_ffn_case(rng, case):
    hidden = case["shape"][-1]
    inter = case["inter"]
    gated = case["activation"] in ref.GATED

    def w(*shape, scale):
        return quantize(rng.standard_normal(shape) * scale)

    args = dict(input=w(*case["shape"], scale=1.0),
                up_weight=w(hidden, inter, scale=hidden**-0.5),
                down_weight=w(inter, hidden, scale=inter**-0.5))
    if gated:
        args["gate_weight"] = w(hidden, inter, scale=hidden**-0.5)
    if case.get("biases"):
        args["up_bias"] = w(inter, scale=0.1)
        args["down_bias"] = w(hidden, scale=0.1)
        if gated:
            args["gate_bias"] = w(inter, scale=0.1)
    result = ref.ffn(activation=case["activation"], f64=True, **args)
    return dict(args=args, result=result)


def cpp_values(values, prefix, suffix=","):
    """`prefix` and a braced initializer, wrapped at 80 columns. Expected
    values get 7 significant digits, enough for the tests' 1e-5 tolerance;
    inputs print exactly."""
    indent = "     "
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind in "iu":
        items = [str(int(v)) for v in flat]
    else:
        items = [f"{float(v):.7g}" for v in flat]
    lines, line = [], indent + prefix + "{"
    for i, item in enumerate(items):
        piece = item + ("," if i + 1 < len(items) else "}" + suffix)
        if len(line) + 1 + len(piece) > 80:
            lines.append(line)
            line = indent + piece
        else:
            line += ("" if line.endswith("{") else " ") + piece
    if not items:
        line += "}" + suffix
    lines.append(line)
    return "\n".join(lines)


def emit_operand(out, name, value):
    """An Operand: {shape, values}, or {} when absent."""
    if value is None:
        out.append(f"     /*{name}=*/{{}},")
        return
    shape = "{" + ", ".join(str(d) for d in np.shape(value)) + "}"
    out.append(cpp_values(value, f"/*{name}=*/{{{shape}, ", "},"))


def emit_layer(out, name, case):
    args, attrs = case["args"], case["attrs"]
    experts = args["router_weight"].shape[1]
    capacity = -1 if case["capacity"] is None else case["capacity"]
    out.append(f'    {{"{name}", /*experts=*/{experts}, '
               f'/*topK=*/{attrs["top_k"]}, "{attrs["score"]}",')
    out.append(f'     /*normalize=*/{str(attrs["normalize"]).lower()}, '
               f'"{attrs["activation"]}", '
               f'/*numGroups=*/{attrs["num_groups"]}, '
               f'/*topKGroups=*/{attrs["top_k_groups"]},')
    factor = attrs["capacity_factor"]
    scaling = attrs["routed_scaling_factor"]
    out.append(f'     /*routedScalingFactor=*/{scaling}, '
               f'/*capacityFactor=*/{0.0 if factor is None else factor}, '
               f'/*capacity=*/{capacity},')
    for operand in LAYER_OPERANDS:
        emit_operand(out, operand, args.get(operand))
    for field in ("weights", "selected", "counts", "sources", "result"):
        out.append(cpp_values(case[field], f"/*{field}=*/",
                              "}," if field == "result" else ","))


def emit_ffn(out, name, case):
    args = case["args"]
    out.append(f'    {{"{name}", "{FFN_CASES_BY_NAME[name]["activation"]}",')
    for operand in ("input", "gate_weight", "up_weight", "down_weight",
                    "gate_bias", "up_bias", "down_bias"):
        emit_operand(out, operand, args.get(operand))
    out.append(cpp_values(case["result"], "/*result=*/", "},"))


FFN_CASES_BY_NAME = {case["name"]: case for case in FFN_CASES}


def main():
    rng = np.random.default_rng(2026)
    out = [
        "//===- MoECases.inc - MoE kernel cases from the numpy reference "
        "-*- C++ -*-===//",
        "//",
        "// Generated by runtime/tests/gen_moe_cases.py with the float64 "
        "numpy reference",
        "// tools/reference/moe_reference.py; do not edit. "
        "MoEKernelsTest.cpp includes it",
        "// and defines the case structs.",
        "//",
        "//===-------------------------------------------------------------"
        "---------===//",
        "",
        f"constexpr int64_t moeCaseTokens = {TOKENS};",
        f"constexpr int64_t moeCaseHidden = {HIDDEN};",
        f"constexpr int64_t moeCaseInter = {INTER};",
        "",
        "const MoELayerCase moeLayerCases[] = {",
    ]
    for case in LAYER_CASES:
        emit_layer(out, case["name"], make_layer_case(rng, case))
    out.append("};")
    out.append("")
    out.append("const MoEFFNCase moeFFNCases[] = {")
    for case in FFN_CASES:
        emit_ffn(out, case["name"], make_ffn_case(rng, case))
    out.append("};")
    with open(OUTPUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {OUTPUT} ({os.path.getsize(OUTPUT)} bytes)")


if __name__ == "__main__":
    main()
