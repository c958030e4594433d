#!/usr/bin/env python3
"""Makes an eager-expert export look as if tracing never hit its last expert.

    drop_traced_expert.py IN.onnx OUT.onnx

transformers' eager experts loop over the experts the tracing example routed
tokens to; the TorchScript exporter unrolls that loop, so an expert the
example missed leaves no iteration (docs/design/hf-moe-export-patterns.md,
section C). The committed exports hit every expert. This rewrites one: in
every MoE block it deletes the last loop iteration (the hit list is split
into one fewer id, and that iteration's accumulation is bypassed), which is
the graph tracing would have written had one expert stayed idle.
onnxruntime then runs the model only on inputs that route tokens to exactly
that many experts in every block (rare: none among 7500 random inputs of 7
to 12 tokens for the Mixtral test export), so the tests compare the
imported model, which computes every expert, with onnxruntime on the export
that traced them all.
"""

import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def producers_and_consumers(graph):
    producer, consumers = {}, {}
    for node in graph.node:
        for output in node.output:
            producer[output] = node
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producer, consumers


def constant_value(graph, name):
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return node, numpy_helper.to_array(node.attribute[0].t)
    for tensor in graph.initializer:
        if tensor.name == name:
            return tensor, numpy_helper.to_array(tensor)
    sys.exit(f"'{name}' is not a constant")


def drop_last_iteration(graph):
    producer, consumers = producers_and_consumers(graph)
    hit_splits = [n for n in graph.node if n.op_type == "Split"
                  and "experts" in n.name and len(n.output) > 2
                  and producer.get(n.input[0]) is not None
                  and producer[n.input[0]].op_type == "Transpose"]
    if not hit_splits:
        sys.exit("no expert loop (hit-list Split) found")
    for split in hit_splits:
        last = split.output[-1]
        # The last iteration: everything depending on the last hit id, up to
        # (not into) the accumulation it adds to.
        doomed, work, accumulation = set(), list(consumers.get(last, [])), None
        while work:
            node = work.pop()
            if id(node) in doomed:
                continue
            is_accumulation = node.op_type == "Add" and any(
                producer.get(i) is not None
                and producer[i].op_type == "ScatterElements"
                and id(producer[i]) in doomed for i in node.input)
            if is_accumulation:
                accumulation = node
                continue
            doomed.add(id(node))
            for output in node.output:
                work.extend(consumers.get(output, []))
        if accumulation is None:
            sys.exit(f"{split.name}: no accumulation for the last iteration")
        scatter_out = next(i for i in accumulation.input
                           if id(producer.get(i)) in doomed)
        previous = next(i for i in accumulation.input if i != scatter_out)
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == accumulation.output[0]:
                    node.input[index] = previous
        for output in graph.output:
            if output.name == accumulation.output[0]:
                sys.exit("the accumulation is a graph output")
        doomed.add(id(accumulation))
        keep = [n for n in graph.node if id(n) not in doomed]
        del graph.node[:]
        graph.node.extend(keep)
        # One id fewer in the hit list.
        holder, sizes = constant_value(graph, split.input[1])
        sizes = np.asarray(sizes)[:-1]
        new = numpy_helper.from_array(sizes.astype(np.int64), split.input[1])
        if isinstance(holder, onnx.TensorProto):
            holder.CopyFrom(new)
        else:
            holder.attribute[0].t.CopyFrom(new)
        del split.output[-1]
        producer, consumers = producers_and_consumers(graph)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args()
    model = onnx.load(args.input)
    drop_last_iteration(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
