#!/usr/bin/env python3
"""Writes MoE test models in the dense form: every expert runs on every
token, and a top-k mask scattered from the router weights selects and weights
the results (how simple PyTorch MoE code and some exporters write it).

    make_dense_moe_models.py [OUT_DIR]   (default: test/ONNX/models/dense)

x [tokens, H] -> logits = x @ Wr -> softmax -> TopK -> (renormalise) ->
mask [T, E] = ScatterElements(zeros, indices, weights, axis 1);
per expert h = x @ W[E, H, I] (MatMul broadcasts to [E, T, I]), activation,
y = h @ W2[E, I, H] -> [E, T, H]; out = ReduceSum(y * Transpose(mask)[E, T,
1], axis 0). Weights are [in, out] per expert, as moe.layer wants them.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def make(name, gated, renormalize, top_k, out_dir, seed):
    rng = np.random.default_rng(seed)
    hidden, experts, inter = 16, 6, 20
    init = lambda n, a: numpy_helper.from_array(a.astype(np.float32), n)
    initializers = [
        init("router", rng.standard_normal((hidden, experts)) * 0.3),
        init("up", rng.standard_normal((experts, hidden, inter)) * 0.25),
        init("down", rng.standard_normal((experts, inter, hidden)) * 0.2),
        numpy_helper.from_array(np.array([top_k], np.int64), "k"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.array([0], np.int64), "first"),
        numpy_helper.from_array(np.array([2], np.int64), "third"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "router"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("TopK", ["probs", "k"], ["topv", "topi"], axis=-1),
    ]
    weights = "topv"
    if renormalize:
        nodes += [
            helper.make_node("ReduceSum", ["topv", "last"], ["topsum"],
                             keepdims=1),
            helper.make_node("Div", ["topv", "topsum"], ["topw"]),
        ]
        weights = "topw"
    nodes += [
        helper.make_node("Shape", ["probs"], ["probs_shape"]),
        helper.make_node("ConstantOfShape", ["probs_shape"], ["zeros"],
                         value=numpy_helper.from_array(
                             np.zeros(1, np.float32))),
        helper.make_node("ScatterElements", ["zeros", "topi", weights],
                         ["mask"], axis=1),
        helper.make_node("Transpose", ["mask"], ["mask_t"], perm=[1, 0]),
        helper.make_node("Unsqueeze", ["mask_t", "last"], ["mask_e"]),
        helper.make_node("MatMul", ["x", "up"], ["h_up"]),
    ]
    if gated:
        initializers.append(
            init("gate", rng.standard_normal((experts, hidden, inter)) * 0.25))
        nodes += [
            helper.make_node("MatMul", ["x", "gate"], ["h_gate"]),
            helper.make_node("Sigmoid", ["h_gate"], ["h_sig"]),
            helper.make_node("Mul", ["h_gate", "h_sig"], ["h_silu"]),
            helper.make_node("Mul", ["h_silu", "h_up"], ["act"]),
        ]
    else:
        nodes.append(helper.make_node("Relu", ["h_up"], ["act"]))
    nodes += [
        helper.make_node("MatMul", ["act", "down"], ["y_e"]),
        helper.make_node("Mul", ["y_e", "mask_e"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "first"], ["y"],
                         keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["tokens", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       ["tokens", hidden])], initializers)
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = os.path.join(out_dir, name + ".onnx")
    onnx.save(model, path)
    print(f"wrote {path}")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        REPO, "test", "ONNX", "models", "dense")
    os.makedirs(out_dir, exist_ok=True)
    make("dense_swiglu_top2", gated=True, renormalize=True, top_k=2,
         out_dir=out_dir, seed=1)
    make("dense_relu_top1", gated=False, renormalize=False, top_k=1,
         out_dir=out_dir, seed=2)


if __name__ == "__main__":
    main()
