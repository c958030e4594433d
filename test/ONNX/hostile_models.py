#!/usr/bin/env python3
"""Feeds moe-translate malformed and hostile ONNX files.

    hostile_models.py --bin BUILD/bin --work DIR

Each case is built here (so no binary corpus is committed), imported with
`moe-translate --import-onnx CASE -o OUT`, and must end with exit code 1 (an
error, never a crash), an error message containing the expected text, and no
output file. Bit-flipped copies of a valid model may import (a flipped weight
bit is still a valid model) but must never crash. Prints one line per case and
'N passed, N failed'.
"""

import argparse
import os
import random
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def base_model(weight_name="w", dims=(8, 4)):
    weight = numpy_helper.from_array(
        np.arange(np.prod(dims), dtype=np.float32).reshape(dims), weight_name)
    node = helper.make_node("MatMul", ["x", weight_name], ["y"], name="mm")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                    [2, dims[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight])
    return helper.make_model(graph,
                             opset_imports=[helper.make_opsetid("", 17)])


def external_model(directory, location, offset=0, length=None, data=None):
    """A model whose weight is external data at `location`."""
    model = base_model()
    tensor = model.graph.initializer[0]
    raw = tensor.raw_data
    if data is not None:
        with open(os.path.join(directory, "weights.bin"), "wb") as f:
            f.write(data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = [("location", location), ("offset", str(offset))]
    entries.append(("length", str(len(raw) if length is None else length)))
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def cases(work):
    valid = base_model().SerializeToString()
    yield "empty file", b"", "is empty"
    yield "garbage", bytes(random.Random(1).randrange(256) for _ in range(300)), \
        "not a valid ONNX model"
    for cut in (7, len(valid) // 2, len(valid) - 3):
        yield f"truncated at {cut}", valid[:cut], ""

    model = base_model()
    model.graph.initializer[0].dims[0] = -8
    yield "negative initializer dim", model, "negative or too large dimension"

    model = base_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -2
    yield "negative input dim", model, "negative or too large dimension"

    model = base_model()
    del model.graph.initializer[0].dims[:]
    model.graph.initializer[0].dims.extend([1 << 40, 1 << 40])
    yield "huge claimed size", model, "negative or too large dimension"

    model = base_model()
    model.graph.initializer[0].raw_data = b"\0" * 12
    yield "raw_data too short", model, "needs"

    model = base_model()
    model.graph.initializer[0].data_type = 99
    yield "unknown dtype", model, "unsupported data type"

    model = base_model()
    model.graph.node[0].input[1] = "missing"
    yield "missing initializer", model, "is not produced by any node"

    model = base_model()
    model.graph.node.append(helper.make_node("Relu", ["z"], ["z2"], name="a"))
    model.graph.node.append(helper.make_node("Relu", ["z2"], ["z"], name="b"))
    yield "cycle", model, "cycle"

    model = base_model()
    model.graph.node.append(helper.make_node("Foo", ["y"], ["f"], name="n1"))
    model.graph.node.append(
        helper.make_node("Bar", ["y"], ["b"], name="n2", domain="custom"))
    yield "unsupported ops", model, "2 node(s) with ops moe-compiler does not support"

    model = base_model()
    model.opset_import[0].version = 7
    yield "old opset", model, "opset 7"

    # Hostile constants evaluated while importing (a security review's
    # reproducers): missing inputs, empty scalars, overflow, mismatched
    # shapes, huge repeat counts, repeated axes, negative sizes.
    def graph_with(nodes, initializers, output="y"):
        graph = helper.make_graph(
            nodes, "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            initializers)
        return helper.make_model(graph,
                                 opset_imports=[helper.make_opsetid("", 17)])

    i64 = lambda name, values: numpy_helper.from_array(
        np.array(values, np.int64), name)
    yield "Range with a missing input", graph_with(
        [helper.make_node("Range", ["a"], ["y"])], [i64("a", 1)]), \
        "missing input"
    yield "Add with a missing input", graph_with(
        [helper.make_node("Add", ["a"], ["y"])], [i64("a", [1])]), \
        "input 1 is missing"
    yield "Range of empty scalars", graph_with(
        [helper.make_node("Range", ["a", "a", "a"], ["y"])],
        [i64("a", np.zeros(0, np.int64))]), "must be scalars"
    yield "integer division overflow", graph_with(
        [helper.make_node("Div", ["a", "b"], ["y"])],
        [i64("a", [np.iinfo(np.int64).min]), i64("b", [-1])]), "overflow"
    yield "Concat of mismatched constants", graph_with(
        [helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
        [i64("a", np.zeros((2, 1), np.int64)),
         i64("b", np.zeros((1, 600), np.int64))]), \
        "outside the concatenation axis"
    yield "huge Tile", graph_with(
        [helper.make_node("Tile", ["x", "r"], ["y"])],
        [i64("r", [1, 10 ** 12])]), "too large"
    yield "Unsqueeze with a repeated axis", graph_with(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
        [i64("axes", [0, 0])]), "is repeated"
    yield "Expand to a negative size", graph_with(
        [helper.make_node("Expand", ["x", "s"], ["y"])],
        [i64("s", [-5, 3])]), "is -5"
    yield "Split with a negative size", graph_with(
        [helper.make_node("Split", ["x", "s"], ["y", "z"], axis=1)],
        [i64("s", [-3, 6])]), "split size -3 is invalid"

    directory = os.path.join(work, "external")
    os.makedirs(directory, exist_ok=True)
    data = np.arange(32, dtype=np.float32).tobytes()
    yield "path traversal", external_model(directory, "../../etc/passwd",
                                           data=data), "contains '..'"
    yield "absolute path", external_model(directory, "/etc/passwd"), \
        "must be a relative path"
    link = os.path.join(directory, "link.bin")
    if not os.path.lexists(link):
        os.symlink("weights.bin", link)
    yield "symbolic link", external_model(directory, "link.bin", data=data), \
        "symbolic link"
    yield "offset past end", external_model(directory, "weights.bin",
                                            offset=100, data=data), \
        "lies outside"
    yield "length mismatch", external_model(directory, "weights.bin",
                                            length=64, data=data), \
        "does not match"
    yield "missing file", external_model(directory, "absent.bin"), \
        "does not exist"


def run_case(bin_dir, work, index, name, content, expected):
    directory = os.path.join(work, "external") if not isinstance(
        content, bytes) and content.graph.initializer[0].data_location else work
    path = os.path.join(directory, f"case{index}.onnx")
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes)
                else content.SerializeToString())
    output = os.path.join(work, f"case{index}.mlir")
    if os.path.exists(output):
        os.remove(output)
    result = subprocess.run(
        [os.path.join(bin_dir, "moe-translate"), "--import-onnx", path, "-o",
         output], capture_output=True, text=True)
    problems = []
    if result.returncode != 1:
        problems.append(f"exit code {result.returncode} (want 1)")
    if expected not in result.stderr:
        problems.append(f"message lacks '{expected}'")
    if "error" not in result.stderr:
        problems.append("no error message")
    if os.path.exists(output):
        problems.append("wrote an output file")
    status = "FAIL" if problems else "PASS"
    print(f"{status} {name}: {result.stderr.strip().splitlines()[0] if result.stderr else ''}"
          + (f" [{'; '.join(problems)}]" if problems else ""))
    return not problems


def run_bit_flips(bin_dir, work, count):
    """Flipped bits: importing may succeed, but must not crash."""
    valid = bytearray(base_model().SerializeToString())
    rng = random.Random(7)
    failures = 0
    for i in range(count):
        data = bytearray(valid)
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
        path = os.path.join(work, "flip.onnx")
        with open(path, "wb") as f:
            f.write(data)
        result = subprocess.run(
            [os.path.join(bin_dir, "moe-translate"), "--import-onnx", path,
             "-o", os.path.join(work, "flip.mlir")],
            capture_output=True, text=True)
        if result.returncode not in (0, 1) or (
                result.returncode == 1 and "error" not in result.stderr):
            failures += 1
            print(f"FAIL bit flip at byte {position}: exit code "
                  f"{result.returncode}")
    print(f"{'FAIL' if failures else 'PASS'} {count} bit-flipped models: "
          f"{failures} crashed")
    return failures == 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    passed = failed = 0
    for index, (name, content, expected) in enumerate(cases(args.work)):
        if run_case(args.bin, args.work, index, name, content, expected):
            passed += 1
        else:
            failed += 1
    if run_bit_flips(args.bin, args.work, 200):
        passed += 1
    else:
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
