#!/usr/bin/env python3
"""Generates small ONNX models around onnxruntime's com.microsoft.MoE and
com.microsoft.QMoE contrib ops, each with a JSON sidecar that states the
equivalent `moe.layer`.

    make_ort_moe_models.py [OUT_DIR]     (default: test/ONNX/models/ort)

Every model takes `x` ([tokens, hidden], or [batch, seq, hidden] where noted)
and computes the router logits inside the graph (`MatMul` with an
initializer, optionally `Add` of a bias), so that the whole layer, router
included, is one `moe.layer`. Weights are initializers with fixed seeds.

Sidecar (`<model>.json`) fields:

    model, description      file name and what the model exercises
    ort_op, ort_attributes  the contrib op and its attributes as written
    ort_env                 environment variables the ORT run needs (see the
                            QMoE block-wise 8-bit model)
    input, output           graph input and output names; leading input
                            dimensions flatten into moe.layer's tokens
    layer                   moe.layer attributes (top_k, score, normalize,
                            activation, num_groups, top_k_groups,
                            routed_scaling_factor)
    operands                moe.layer operand -> {"initializer": name,
                            "transforms": [...]}: the initializer's value,
                            transformed in order, is the operand in [in, out]
                            layout
    notes                   ORT behaviour the mapping relies on

Transforms:

    {"op": "dequantize", "bits": b, "block_size": n, "scales": S,
     "zero_points": Z or null}
        uint8 [E, N, K*b/8] -> float [E, N, K]; codes packed LSB first along
        K; w = (q - zp) * scale, scale [E, N] (block_size 0) or
        [E, N, K/block_size]; zp default 2^(b-1), else unpacked from Z the
        same way ([E, ceil(N*b/8)] packed along N, or [E, N,
        ceil(K/block_size*b/8)] packed along blocks)
    {"op": "reshape", "shape": [...]}        numpy reshape (row-major)
    {"op": "slice", "axis": a, "start": s, "step": t}   x[..., s::t, ...]
    {"op": "transpose", "perm": [...]}       numpy transpose

The semantics these mappings rely on were established against onnxruntime
1.32 CPU; see docs/design/onnxruntime-moe.md.
"""

import functools
import json
import os
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "test", "ONNX", "models", "ort")
MAX_BYTES = 200 * 1024

# ORT's activation_type -> moe.layer activation. ORT's "gelu" is the tanh
# approximation; its swiglu with the default activation_alpha = 1,
# activation_beta = 0 and no swiglu_limit is silu(gate) * up.
ACTIVATION = {"relu": "relu", "gelu": "gelu_tanh", "silu": "silu",
              "identity": "identity", "swiglu": "swiglu"}

# Values of the moe.layer attributes a model's `layer` dict leaves out.
LAYER_DEFAULTS = {"num_groups": 1, "top_k_groups": 1, "routed_scaling_factor": 1.0}

TRANSPOSE = {"op": "transpose", "perm": [0, 2, 1]}
# Axis 1 is the fused gate/up axis of both fc1 [E, 2I, H] and its bias [E, 2I].
GATE_PART = {"op": "slice", "axis": 1, "start": 0, "step": 2}
UP_PART = {"op": "slice", "axis": 1, "start": 1, "step": 2}

NOTE_LAYOUT = ("ORT CPU reads fc1/fc2 as [E, out, in] row-major (x @ W[e].T), so "
               "each becomes [in, out] by a transpose of the last two axes")
NOTE_LEGACY = ("fc1/fc2 have the legacy [E, in, out] shapes, which ORT accepts, but "
               "ORT CPU still reads the bytes as [E, out, in] row-major: the mapping "
               "is a reshape to [E, out, in], not a transpose of the stored shape")
NOTE_INTERLEAVED = ("swiglu_fusion = 1: fc1 rows alternate gate, up (gate = even rows "
                    "and bias entries, up = odd)")
NOTE_TIES = ("ORT breaks exact top-k ties toward the higher expert index, moe.layer "
             "toward the lower; random inputs do not tie")
NOTE_QMOE_NORMALIZE = ("QMoE without router_weights always mixes with the softmax over "
                       "the selected logits, i.e. normalize, whatever "
                       "normalize_routing_weights says")


class Builder:
    """Collects nodes, initializers and sidecar operands of one model."""

    def __init__(self, name):
        self.name = name
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.nodes, self.inits, self.operands = [], [], {}

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def randn(self, name, shape, scale):
        return self.init(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def operand(self, operand, initializer, *transforms):
        self.operands[operand] = {"initializer": initializer, "transforms": list(transforms)}

    def router(self, x, hidden, experts, bias, flatten=False):
        """logits = x @ router_w (+ router_b), reshaped to [tokens, experts]."""
        w = self.randn("router_w", (hidden, experts), 1.5 / np.sqrt(hidden))
        self.operand("router_weight", w)
        self.nodes.append(helper.make_node("MatMul", [x, w], ["router_mm"]))
        logits = "router_mm"
        if bias:
            b = self.randn("router_b", (experts,), 0.5)
            self.operand("router_bias", b)
            self.nodes.append(helper.make_node("Add", [logits, b], ["router_add"]))
            logits = "router_add"
        if flatten:
            shape = self.init("router_shape", np.array([-1, experts], np.int64))
            self.nodes.append(helper.make_node("Reshape", [logits, shape], ["router_2d"]))
            logits = "router_2d"
        return logits

    def save(self, out_dir, op_node, input_shape, layer, description, notes, env=None):
        self.nodes.append(op_node)
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, input_shape)],
            self.inits)
        model = helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        # The oldest IR version opset 17 allows, for older ONNX readers.
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = os.path.join(out_dir, self.name + ".onnx")
        onnx.save(model, path)
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise RuntimeError(f"{path} is {size} bytes, over {MAX_BYTES}")
        attrs = {a.name: helper.get_attribute_value(a) for a in op_node.attribute}
        sidecar = {
            "model": self.name + ".onnx",
            "description": description,
            "ort_op": f"{op_node.domain}.{op_node.op_type}",
            "ort_attributes": {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()},
            "ort_env": env or {},
            "input": "x",
            "output": "y",
            "layer": {**layer, **{k: v for k, v in LAYER_DEFAULTS.items() if k not in layer}},
            "operands": self.operands,
            "notes": notes,
        }
        with open(os.path.join(out_dir, self.name + ".json"), "w") as f:
            json.dump(sidecar, f, indent=2)
            f.write("\n")
        return path


def fc1_fc2_operands(b, fc1, fc2, fc1_bias, fc2_bias, swiglu, pre):
    """Sidecar operands for fc1 ([E, f*I, H] as ORT reads it) and fc2
    ([E, H, I]); `pre` are transforms that come first (dequantize, reshape)."""
    pre1, pre2 = pre
    if swiglu:
        b.operand("gate_weight", fc1, *pre1, GATE_PART, TRANSPOSE)
        b.operand("up_weight", fc1, *pre1, UP_PART, TRANSPOSE)
        if fc1_bias:
            b.operand("gate_bias", fc1_bias, GATE_PART)
            b.operand("up_bias", fc1_bias, UP_PART)
    else:
        b.operand("up_weight", fc1, *pre1, TRANSPOSE)
        if fc1_bias:
            b.operand("up_bias", fc1_bias)
    b.operand("down_weight", fc2, *pre2, TRANSPOSE)
    if fc2_bias:
        b.operand("down_bias", fc2_bias)


def make_moe(out_dir, name, description, *, activation, k, normalize, hidden=16,
             inter=32, experts=4, biases=False, router_bias=False, legacy=False,
             batch_seq=False, router_kind="matmul"):
    """A com.microsoft.MoE model (float weights)."""
    b = Builder(name)
    swiglu = activation == "swiglu"
    fused = 2 * inter if swiglu else inter
    notes = [NOTE_LEGACY if legacy else NOTE_LAYOUT, NOTE_TIES]
    if swiglu:
        notes.append(NOTE_INTERLEAVED)

    if router_kind == "group":
        # DeepSeek-V3 style: MoEGroupRouter writes log(sigmoid) at its
        # selection and -10000 elsewhere; MoE's softmax of that is the
        # selected sigmoid scores renormalised.
        raw = b.router("x", hidden, experts, bias=False)
        corr = b.randn("correction_b", (experts,), 0.3)
        b.operand("correction_bias", corr)
        b.nodes.append(helper.make_node(
            "MoEGroupRouter", [raw, corr], ["router_probs"], domain="com.microsoft",
            top_k=k, n_group=4, topk_group=2))
        logits = "router_probs"
        layer_router = {"score": "sigmoid", "normalize": True, "num_groups": 4, "top_k_groups": 2}
        notes.append("MoEGroupRouter (n_group 4, topk_group 2, group_topk 2) feeds MoE: "
                     "sigmoid scores, correction_b steers selection only, groups rated by "
                     "the sum of their two best biased scores, weights renormalised")
    else:
        logits = b.router("x", hidden, experts, router_bias, flatten=batch_seq)
        layer_router = {"score": "softmax", "normalize": bool(normalize)}

    fc1_shape = (experts, hidden, fused) if legacy else (experts, fused, hidden)
    fc2_shape = (experts, inter, hidden) if legacy else (experts, hidden, inter)
    fc1 = b.randn("fc1_w", fc1_shape, 1 / np.sqrt(hidden))
    fc2 = b.randn("fc2_w", fc2_shape, 1 / np.sqrt(inter))
    fc1_b = b.randn("fc1_b", (experts, fused), 0.1) if biases else ""
    fc2_b = b.randn("fc2_b", (experts, hidden), 0.1) if biases else ""
    reshape1 = [{"op": "reshape", "shape": [experts, fused, hidden]}] if legacy else []
    reshape2 = [{"op": "reshape", "shape": [experts, hidden, inter]}] if legacy else []
    fc1_fc2_operands(b, fc1, fc2, fc1_b, fc2_b, swiglu, (reshape1, reshape2))

    attrs = dict(k=k, activation_type=activation, normalize_routing_weights=normalize)
    if swiglu:
        attrs["swiglu_fusion"] = 1
    node = helper.make_node("MoE", ["x", logits, fc1, fc1_b, fc2, fc2_b], ["y"],
                            domain="com.microsoft", **attrs)
    shape = ["batch", "seq", hidden] if batch_seq else ["tokens", hidden]
    layer = {"top_k": k, "activation": ACTIVATION[activation], **layer_router}
    return b.save(out_dir, node, shape, layer, description, notes)


def quantize_codes(rng, experts, rows, cols, bits, block_size, zero_points):
    """Random codes for a [experts, rows, cols] weight, packed as QMoE wants,
    with scales and (optionally) packed zero points."""
    codes = rng.integers(0, 2**bits, (experts, rows, cols), dtype=np.uint8)
    blocks = cols // block_size if block_size else 1
    # Scales keep w = (q - zp) * s near 1/sqrt(cols) in size.
    scales = (rng.uniform(0.5, 1.5, (experts, rows, blocks)) * 4 / (2**bits * np.sqrt(cols)))
    scales = scales.astype(np.float32)
    if not block_size:
        scales = scales[..., 0]
    zp = None
    if zero_points:
        zcodes = rng.integers(0, 2**bits, (experts, rows, blocks), dtype=np.uint8)
        # Row-wise zero points are packed along rows, block-wise along blocks.
        zp = pack(zcodes if block_size else zcodes[..., 0], bits)
    return pack(codes, bits), scales, zp


def pack(codes, bits):
    """Packs codes along the last axis, LSB first, padding to whole bytes."""
    per_byte = 8 // bits
    pad = (-codes.shape[-1]) % per_byte
    codes = np.concatenate([codes, np.zeros(codes.shape[:-1] + (pad,), np.uint8)], -1)
    out = np.zeros(codes.shape[:-1] + (codes.shape[-1] // per_byte,), np.uint8)
    for i in range(per_byte):
        out |= codes[..., i::per_byte] << (i * bits)
    return out


def make_qmoe(out_dir, name, description, *, activation, k, bits, block_size=0,
              zero_points=False, normalize=1, hidden=32, inter=64, experts=4,
              biases=False, router="softmax", env=None):
    """A com.microsoft.QMoE model (uint8-packed integer weights)."""
    b = Builder(name)
    swiglu = activation == "swiglu"
    fused = 2 * inter if swiglu else inter
    notes = [NOTE_LAYOUT, NOTE_TIES]
    if swiglu:
        notes.append(NOTE_INTERLEAVED)

    inputs = {}
    if router == "sigmoid_correction":
        # Selection by sigmoid(logits) + correction, mixing by the plain
        # sigmoid scores through QMoE's router_weights input.
        logits = b.router("x", hidden, experts, bias=False)
        corr = b.randn("correction_b", (experts,), 0.3)
        b.operand("correction_bias", corr)
        b.nodes.append(helper.make_node("Sigmoid", [logits], ["scores"]))
        b.nodes.append(helper.make_node("Add", ["scores", corr], ["choice"]))
        inputs.update(router_probs="choice", router_weights="scores")
        layer_router = {"score": "sigmoid", "normalize": bool(normalize)}
        notes.append("router_weights given: top-k by router_probs, mixing by the "
                     "gathered router_weights, renormalised iff normalize_routing_weights")
    else:
        inputs["router_probs"] = b.router("x", hidden, experts, bias=False)
        layer_router = {"score": "softmax", "normalize": True}
        notes.append(NOTE_QMOE_NORMALIZE)

    def quantized(prefix, rows, cols):
        w, s, z = quantize_codes(b.rng, experts, rows, cols, bits, block_size, zero_points)
        names = (b.init(prefix + "_w", w), b.init(prefix + "_scales", s),
                 b.init(prefix + "_zp", z) if zero_points else "")
        deq = {"op": "dequantize", "bits": bits, "block_size": block_size,
               "scales": names[1], "zero_points": names[2] or None}
        return names, deq

    (fc1, fc1_s, fc1_z), deq1 = quantized("fc1", fused, hidden)
    (fc2, fc2_s, fc2_z), deq2 = quantized("fc2", hidden, inter)
    fc1_b = b.randn("fc1_b", (experts, fused), 0.1) if biases else ""
    fc2_b = b.randn("fc2_b", (experts, hidden), 0.1) if biases else ""
    fc1_fc2_operands(b, fc1, fc2, fc1_b, fc2_b, swiglu, ([deq1], [deq2]))

    attrs = dict(k=k, activation_type=activation, expert_weight_bits=bits,
                 normalize_routing_weights=normalize)
    if block_size:
        attrs["block_size"] = block_size
    if swiglu:
        attrs["swiglu_fusion"] = 1
    # QMoE inputs: 0 input, 1 router_probs, 2-4 fc1 weights/scales/bias,
    # 5-7 fc2, 8-10 fc3, 11-13 zero points, 14 router_weights.
    names = ["x", inputs["router_probs"], fc1, fc1_s, fc1_b, fc2, fc2_s, fc2_b,
             "", "", "", fc1_z, fc2_z, "", inputs.get("router_weights", "")]
    while not names[-1]:
        names.pop()
    node = helper.make_node("QMoE", names, ["y"], domain="com.microsoft", **attrs)
    layer = {"top_k": k, "activation": ACTIVATION[activation], **layer_router}
    return b.save(out_dir, node, ["tokens", hidden], layer, description, notes, env)


def make_all(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    moe, qmoe = functools.partial(make_moe, out_dir), functools.partial(make_qmoe, out_dir)
    return [
        moe("moe_relu_bias_top1", "relu, top-1, no renormalisation, router and expert biases",
            activation="relu", k=1, normalize=0, biases=True, router_bias=True),
        moe("moe_gelu_top2", "gelu (ORT's is the tanh form), top-2, renormalised",
            activation="gelu", k=2, normalize=1),
        moe("moe_silu_top2", "silu, top-2, not renormalised, expert biases",
            activation="silu", k=2, normalize=0, biases=True),
        moe("moe_identity_top3", "identity, top-3 of 6 experts, renormalised",
            activation="identity", k=3, normalize=1, experts=6),
        moe("moe_swiglu_interleaved", "swiglu, swiglu_fusion = 1 (the only fusion ORT CPU runs), biases",
            activation="swiglu", k=2, normalize=1, biases=True),
        moe("moe_relu_legacy_layout", "relu with fc1 [E, H, I] and fc2 [E, I, H] (legacy shapes)",
            activation="relu", k=2, normalize=1, biases=True, legacy=True),
        moe("moe_swiglu_legacy_layout", "swiglu, fusion 1, fc1 [E, H, 2I] and fc2 [E, I, H] (legacy shapes)",
            activation="swiglu", k=2, normalize=0, legacy=True),
        moe("moe_silu_3d_input", "silu, top-2, input [batch, seq, hidden]",
            activation="silu", k=2, normalize=1, batch_seq=True),
        moe("moe_group_router", "MoEGroupRouter + MoE: sigmoid, correction bias, 4 groups, top-2 groups",
            activation="silu", k=2, normalize=0, experts=8, router_kind="group"),
        qmoe("qmoe_int8_relu_bias", "8-bit per-row symmetric, relu, top-2, biases, normalize_routing_weights = 0",
             activation="relu", k=2, bits=8, normalize=0, biases=True),
        qmoe("qmoe_int4_silu", "4-bit per-row symmetric, silu, top-2",
             activation="silu", k=2, bits=4),
        qmoe("qmoe_int4_block32_zp_swiglu", "4-bit, blocks of 32 with zero points, swiglu fusion 1, biases",
             activation="swiglu", k=2, bits=4, block_size=32, zero_points=True, biases=True),
        qmoe("qmoe_int8_block32_zp_gelu", "8-bit, blocks of 32 with zero points, gelu, top-1",
             activation="gelu", k=1, bits=8, block_size=32, zero_points=True,
             # Block-wise 8-bit QMoE otherwise quantises activations to int8
             # on CPU (about 1e-2 relative error); fp32 keeps it exact.
             env={"ORT_QMOE_CPU_QNBIT_GEMM": "fp32"}),
        qmoe("qmoe_int4_sigmoid_correction", "4-bit, sigmoid scores + correction bias via router_weights",
             activation="silu", k=2, bits=4, router="sigmoid_correction"),
    ]


def make_sharded(out_dir, source, whole_name, shard_name):
    """com.microsoft.ShardedMoE versions of the MoE model `source`: one that
    holds every expert whole (equal to `source`, which is its reference: the
    CPU onnxruntime has no ShardedMoE), and one rank's shard of it (the
    second half of the experts), which the importer must refuse."""
    model = onnx.load(os.path.join(out_dir, source + ".onnx"))
    node = next(n for n in model.graph.node if n.op_type == "MoE")
    node.op_type = "ShardedMoE"
    node.attribute.extend([
        helper.make_attribute("local_experts_start_index", 0),
        helper.make_attribute("tensor_shards", 1)])
    whole = os.path.join(out_dir, whole_name + ".onnx")
    onnx.save(model, whole)
    experts = None
    for tensor in model.graph.initializer:
        if tensor.name in (node.input[2], node.input[3], node.input[4],
                           node.input[5]):
            array = numpy_helper.to_array(tensor)
            experts = array.shape[0]
            tensor.CopyFrom(numpy_helper.from_array(array[experts // 2:],
                                                    tensor.name))
    for attr in node.attribute:
        if attr.name == "local_experts_start_index":
            attr.i = experts // 2
    shard = os.path.join(out_dir, shard_name + ".onnx")
    onnx.save(model, shard)
    return [whole, shard]


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else DEFAULT_OUT
    paths = make_all(out_dir) + make_sharded(
        out_dir, "moe_silu_top2", "sharded_moe_silu_top2",
        "sharded_moe_silu_top2_shard1")
    for path in paths:
        print(f"{os.path.getsize(path):7d}  {path}")


if __name__ == "__main__":
    main(sys.argv)
