#!/usr/bin/env python3
"""Writes the demo model: a stack of Mixture-of-Experts blocks as
onnxruntime's tool chains write them.

    make_demo_model.py OUT.onnx [--layers 2] [--hidden 256] [--experts 8]
                       [--inter 512] [--top-k 2] [--router-skew S]
                       [--heads H]

Each block is RMSNorm (SimplifiedLayerNormalization) -> router MatMul ->
com.microsoft.MoE (SwiGLU experts, interleaved fc1, renormalised top-k) ->
residual Add. The input is x: [tokens, hidden] with a symbolic token count.
With --heads H > 0 every block starts with self-attention over the tokens
(one sequence): RMSNorm, Q/K/V MatMuls, H heads of width hidden / H,
Softmax(Q K^T / sqrt(width)) V, output MatMul, residual Add; that is work
outside the experts, which partitioned plans place differently.
With --router-skew S > 0 a bias of -S * log(e + 1) is added to expert e's
router logit, so that the expert load is skewed roughly like Zipf(S) (the
planner's load-aware placement has something to balance).
Weights are random with a fixed seed, stored as external data next to the
model (OUT.onnx.data).
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def attention(p, current, h, heads, weight, nodes, initializers):
    """Appends self-attention with a residual add; returns its output."""
    initializers += [
        numpy_helper.from_array(np.ones(h, np.float32), f"{p}.attn_norm"),
        weight(f"{p}.wq", (h, h), h ** -0.5),
        weight(f"{p}.wk", (h, h), h ** -0.5),
        weight(f"{p}.wv", (h, h), h ** -0.5),
        weight(f"{p}.wo", (h, h), h ** -0.5),
    ]

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [f"{p}.{output}"],
                                      name=f"{p}/{output}", **attrs))
        return f"{p}.{output}"

    normed = node("SimplifiedLayerNormalization", [current, f"{p}.attn_norm"],
                  "attn_normed", axis=-1, epsilon=1e-6)
    heads_of = {}
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]),
                       ("v", [0, 2, 1, 3])):
        projected = node("MatMul", [normed, f"{p}.w{name}"], name)
        split = node("Reshape", [projected, "heads_shape"], f"{name}_heads")
        heads_of[name] = node("Transpose", [split], f"{name}_t", perm=perm)
    scores = node("MatMul", [heads_of["q"], heads_of["k"]], "scores")
    scaled = node("Mul", [scores, "score_scale"], "scaled")
    probs = node("Softmax", [scaled], "probs", axis=-1)
    mixed = node("MatMul", [probs, heads_of["v"]], "mixed")
    merged = node("Transpose", [mixed], "merged", perm=[0, 2, 1, 3])
    flat = node("Reshape", [merged, "tokens_shape"], "flat")
    out = node("MatMul", [flat, f"{p}.wo"], "attn_out")
    return node("Add", [current, out], "attn_residual")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--inter", type=int, default=512)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--router-skew", type=float, default=0.0)
    parser.add_argument("--heads", type=int, default=0)
    args = parser.parse_args()
    h, e, i = args.hidden, args.experts, args.inter
    rng = np.random.default_rng(2026)

    def weight(name, shape, scale):
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes, initializers = [], []
    current = "x"
    if args.heads:
        if h % args.heads:
            sys.exit(f"--heads {args.heads} must divide --hidden {h}")
        width = h // args.heads
        initializers += [
            numpy_helper.from_array(np.array([1, -1, args.heads, width],
                                             np.int64), "heads_shape"),
            numpy_helper.from_array(np.array([-1, h], np.int64),
                                    "tokens_shape"),
            numpy_helper.from_array(np.array(width ** -0.5, np.float32),
                                    "score_scale"),
        ]
    for layer in range(args.layers):
        p = f"layer{layer}"
        if args.heads:
            current = attention(p, current, h, args.heads, weight, nodes,
                                initializers)
        initializers += [
            numpy_helper.from_array(
                (1.0 + 0.1 * rng.standard_normal(h)).astype(np.float32),
                f"{p}.norm"),
            weight(f"{p}.router", (h, e), h ** -0.5),
            weight(f"{p}.fc1", (e, 2 * i, h), h ** -0.5),
            weight(f"{p}.fc2", (e, h, i), i ** -0.5),
        ]
        nodes += [
            helper.make_node("SimplifiedLayerNormalization",
                             [current, f"{p}.norm"], [f"{p}.normed"],
                             name=f"{p}/norm", axis=-1, epsilon=1e-6),
            helper.make_node("MatMul", [f"{p}.normed", f"{p}.router"],
                             [f"{p}.logits"], name=f"{p}/router"),
        ]
        logits = f"{p}.logits"
        if args.router_skew > 0:
            initializers.append(numpy_helper.from_array(
                (-args.router_skew * np.log(np.arange(e) + 1.0))
                .astype(np.float32), f"{p}.router_skew"))
            nodes.append(helper.make_node(
                "Add", [logits, f"{p}.router_skew"], [f"{p}.skewed"],
                name=f"{p}/router_skew"))
            logits = f"{p}.skewed"
        nodes += [
            helper.make_node("MoE", [f"{p}.normed", logits,
                                     f"{p}.fc1", "", f"{p}.fc2"],
                             [f"{p}.moe"], name=f"{p}/moe",
                             domain="com.microsoft", k=args.top_k,
                             activation_type="swiglu", swiglu_fusion=1,
                             normalize_routing_weights=1),
            helper.make_node("Add", [current, f"{p}.moe"], [f"{p}.out"],
                             name=f"{p}/residual"),
        ]
        current = f"{p}.out"
    nodes.append(helper.make_node("Identity", [current], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "moe_demo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", h])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", h])],
        initializers)
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    data = os.path.basename(args.output) + ".data"
    if os.path.exists(os.path.join(os.path.dirname(args.output) or ".", data)):
        os.remove(os.path.join(os.path.dirname(args.output) or ".", data))
    onnx.save(model, args.output, save_as_external_data=True,
              all_tensors_to_one_file=True, location=data, size_threshold=1024)
    print(f"wrote {args.output}: {args.layers} MoE blocks, hidden {h}, "
          f"{e} experts, inter {i}, top-{args.top_k}")


if __name__ == "__main__":
    main()
