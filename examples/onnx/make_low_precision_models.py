#!/usr/bin/env python3
"""Writes MoE test models whose weights are stored as float16 or bfloat16.

    make_low_precision_models.py [OUT_DIR]   (default: test/ONNX/models/dtypes)

Each model casts its stored weights to float32 (as mixed-precision exports
do) and computes an RMSNorm + router + com.microsoft.MoE block in float32:
x [tokens, 16] -> y [tokens, 16], 4 experts, top-2, SwiGLU (interleaved).
The importer keeps the weights by reference in their stored type; the
runtime converts them once when it loads the program.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def bfloat16_tensor(array, name):
    """A BFLOAT16 TensorProto with raw_data (round to nearest even)."""
    bits = array.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = TensorProto.BFLOAT16
    tensor.dims.extend(array.shape)
    tensor.raw_data = rounded.tobytes()
    return tensor


def make(dtype_name, out_dir):
    rng = np.random.default_rng(16 if dtype_name == "float16" else 17)
    hidden, experts, inter = 16, 4, 24
    arrays = {
        "norm": 1.0 + 0.1 * rng.standard_normal(hidden),
        "router": rng.standard_normal((hidden, experts)) * hidden ** -0.5,
        "fc1": rng.standard_normal((experts, 2 * inter, hidden)) * 0.25,
        "fc2": rng.standard_normal((experts, hidden, inter)) * 0.2,
    }
    initializers, nodes = [], []
    for name, array in arrays.items():
        stored = f"{name}.{dtype_name}"
        if dtype_name == "float16":
            initializers.append(numpy_helper.from_array(
                array.astype(np.float16), stored))
        else:
            initializers.append(bfloat16_tensor(array, stored))
        nodes.append(helper.make_node("Cast", [stored], [name],
                                      to=TensorProto.FLOAT,
                                      name=f"cast_{name}"))
    nodes += [
        helper.make_node("SimplifiedLayerNormalization", ["x", "norm"],
                         ["normed"], axis=-1, epsilon=1e-6, name="norm"),
        helper.make_node("MatMul", ["normed", "router"], ["logits"],
                         name="router"),
        helper.make_node("MoE", ["normed", "logits", "fc1", "", "fc2"], ["y"],
                         domain="com.microsoft", k=2,
                         activation_type="swiglu", swiglu_fusion=1,
                         normalize_routing_weights=1, name="moe"),
    ]
    graph = helper.make_graph(
        nodes, f"moe_{dtype_name}_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["tokens", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       ["tokens", hidden])], initializers)
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    path = os.path.join(out_dir, f"moe_{dtype_name}_weights.onnx")
    onnx.save(model, path)
    print(f"wrote {path}")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        REPO, "test", "ONNX", "models", "dtypes")
    os.makedirs(out_dir, exist_ok=True)
    for dtype_name in ("float16", "bfloat16"):
        make(dtype_name, out_dir)


if __name__ == "__main__":
    main()
