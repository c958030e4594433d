#!/usr/bin/env python3
"""Describe an ONNX model: op histogram and the node sequence of one block.

  describe_onnx.py MODEL.onnx                      # summary + histogram + first MoE block
  describe_onnx.py MODEL.onnx --hist               # histogram only
  describe_onnx.py MODEL.onnx --block 1            # the second MoE block
  describe_onnx.py MODEL.onnx --scope /model/model/layers.0/mlp
  describe_onnx.py MODEL.onnx --from NODE --to NODE  # nodes on the paths from one node to another

A MoE block is found from its TopK node(s): the block is the module scope
that owns the router (the parent of the scope holding the first TopK or
ArgMax), taken from the node name (TorchScript exporter: "/model/.../TopK")
or from the "pkg.torch.onnx.name_scopes" metadata (dynamo exporter).  All
nodes in that scope are printed in graph order; Constant nodes are folded
into their consumers (shown as const=value) unless --constants is given.

Needs only onnx and numpy.
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

ROUTER_OPS = ("TopK", "ArgMax")


# --------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------
def node_scope(node):
    """Module path of a node as '/a/b/layers.0/mlp' ('' if unknown), the same
    for both exporters."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                parts = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                break
            # ['', 'model', 'model.model', ..., 'model.model.layers.0.mlp', 'topk']:
            # cumulative module paths, then the FX node name.
            comps, prev = [], ""
            for x in parts[:-1]:
                if not x:
                    continue
                comps.append(x[len(prev) + 1 :] if prev and x.startswith(prev + ".") else x)
                prev = x
            return "/" + "/".join(comps) if comps else ""
    if node.name.startswith("/"):
        return node.name.rsplit("/", 1)[0]
    return ""


def router_blocks(graph):
    """Scopes of MoE blocks, in graph order (parent scope of each router op)."""
    blocks = []
    for n in graph.node:
        if n.op_type in ROUTER_OPS:
            s = node_scope(n)
            if not s:
                continue
            parent = s.rsplit("/", 1)[0]
            if parent and parent not in blocks and not any(parent.startswith(b + "/") for b in blocks):
                blocks.append(parent)
    return blocks


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------
def fmt_dims(t):
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return "?"
    dims = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(str(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append("?")
    return "[" + ",".join(dims) + "]"


def fmt_array(a, limit=8):
    a = np.asarray(a)
    if a.size <= limit:
        v = a.tolist()
        return f"{v}" if a.ndim else f"{v}"
    return f"<{a.dtype}{list(a.shape)}>"


def fmt_attr(a):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    elif isinstance(v, onnx.TensorProto):
        v = fmt_array(numpy_helper.to_array(v))
    elif isinstance(v, onnx.GraphProto):
        v = f"<graph {v.name}: {len(v.node)} nodes>"
    elif isinstance(v, list) and v and isinstance(v[0], bytes):
        v = [x.decode() for x in v]
    return f"{a.name}={v}"


class Model:
    def __init__(self, path):
        self.path = path
        self.scope = None  # tensor names are printed relative to it when set
        self.model = onnx.load(path)
        try:
            inferred = shape_inference.infer_shapes(self.model, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - shape info is only decoration
            inferred = self.model
        self.g = self.model.graph
        self.types = {}
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            self.types[vi.name] = vi.type
        self.inits = {i.name: i for i in self.g.initializer}
        self.const = {}  # output name -> numpy value of Constant nodes
        for n in self.g.node:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.const[n.output[0]] = numpy_helper.to_array(a.t)
                    elif a.name in ("value_int", "value_ints", "value_float", "value_floats"):
                        self.const[n.output[0]] = np.array(onnx.helper.get_attribute_value(a))
        self.producer = {o: n for n in self.g.node for o in n.output}

    def shape_of(self, name):
        if name in self.inits:
            return "[" + ",".join(map(str, self.inits[name].dims)) + "]"
        t = self.types.get(name)
        return fmt_dims(t) if t is not None else "?"

    def short(self, name):
        """Tensor name, relative to the scope being printed."""
        if self.scope is None:
            return name
        if name.endswith("_output_0"):
            name = name[: -len("_output_0")]
        if self.scope and name.startswith(self.scope + "/"):
            return name[len(self.scope) + 1 :]
        if name.startswith("/"):
            return "^" + "/".join(name.split("/")[-2:])  # from outside the scope
        return name

    def fmt_input(self, name):
        if name == "":
            return "<none>"
        if name in self.inits:
            init = self.inits[name]
            if np.prod(init.dims, dtype=np.int64) <= 8:
                return f"{name}={fmt_array(numpy_helper.to_array(init))}"
            dt = onnx.TensorProto.DataType.Name(init.data_type).lower()
            return f"W:{name}{list(init.dims)}:{dt}"
        if name in self.const:
            return f"const={fmt_array(self.const[name])}"
        return f"{self.short(name)}{self.shape_of(name)}"

    def fmt_node(self, i, n, show_name=True):
        ins = ", ".join(self.fmt_input(x) for x in n.input)
        outs = ", ".join(f"{self.short(o)}{self.shape_of(o)}" for o in n.output)
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        attrs = " {" + ", ".join(fmt_attr(a) for a in n.attribute) + "}" if n.attribute else ""
        name = f"  # {n.name}" if show_name and n.name and self.scope is None else ""
        return f"{i:5d}  {op}{attrs}({ins}) -> {outs}{name}"


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------
def histogram(model):
    """(domain, op_type) -> count over the main graph, subgraphs and functions."""
    counts = collections.Counter()

    def walk(graph):
        for n in graph.node:
            counts[(n.domain or "ai.onnx", n.op_type)] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)

    walk(model.graph)
    for f in model.functions:
        for n in f.node:
            counts[(n.domain or "ai.onnx", n.op_type)] += 1
    return counts


def print_summary(m):
    mod = m.model
    print(f"file: {m.path}")
    print(f"ir_version: {mod.ir_version}  producer: {mod.producer_name} {mod.producer_version}")
    print("opset_import: " + ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in mod.opset_import))
    for vi in m.g.input:
        print(f"input:  {vi.name} {onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)} {fmt_dims(vi.type)}")
    for vi in m.g.output:
        print(f"output: {vi.name} {onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)} {fmt_dims(vi.type)}")
    nbytes = sum(int(np.prod(i.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(i.data_type).itemsize
                 for i in m.g.initializer)
    print(f"nodes: {len(m.g.node)}  initializers: {len(m.g.initializer)} ({nbytes} bytes)  functions: {len(mod.functions)}")


def print_histogram(m):
    counts = histogram(m.model)
    print(f"op histogram ({len(counts)} distinct (domain, op_type), {sum(counts.values())} nodes):")
    for (dom, op), c in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        print(f"  {dom:10s} {op:20s} {c}")


def block_nodes(m, scope):
    """Indices of the nodes in `scope`, in graph order, plus nodes without any
    scope (made by the exporter's optimizer) that sit between two of them."""
    def inside(n):
        s = node_scope(n)
        return s == scope or s.startswith(scope + "/")

    sel = {i for i, n in enumerate(m.g.node) if inside(n)}
    index = {id(n): i for i, n in enumerate(m.g.node)}
    consumers = collections.defaultdict(list)
    for i, n in enumerate(m.g.node):
        for x in n.input:
            consumers[x].append(i)
    changed = True
    while changed:
        changed = False
        for i, n in enumerate(m.g.node):
            if i in sel or node_scope(n) or n.op_type == "Constant":
                continue
            fed = any(x in m.producer and index[id(m.producer[x])] in sel for x in n.input)
            feeds = any(c in sel for o in n.output for c in consumers[o])
            if fed and feeds:
                sel.add(i)
                changed = True
    return sorted(sel)


def between_nodes(m, src, dst):
    """Indices of nodes on some path src -> dst (inclusive), in graph order."""
    by_name = {n.name: i for i, n in enumerate(m.g.node)}
    for x in (src, dst):
        if x not in by_name:
            sys.exit(f"no node named {x!r}")
    consumers = collections.defaultdict(list)
    for i, n in enumerate(m.g.node):
        for x in n.input:
            consumers[x].append(i)
    fwd, stack = set(), [by_name[src]]
    while stack:
        i = stack.pop()
        if i in fwd:
            continue
        fwd.add(i)
        for o in m.g.node[i].output:
            stack.extend(consumers[o])
    bwd, stack = set(), [by_name[dst]]
    while stack:
        i = stack.pop()
        if i in bwd:
            continue
        bwd.add(i)
        for x in m.g.node[i].input:
            if x in m.producer:
                stack.append(by_name.get(m.producer[x].name, -1))
    bwd.discard(-1)
    return sorted(fwd & bwd)


def print_nodes(m, idx, constants=False, names=True):
    shown = [i for i in idx if constants or m.g.node[i].op_type != "Constant"]
    for i in shown:
        print(m.fmt_node(i, m.g.node[i], show_name=names))
    ops = [m.g.node[i].op_type for i in shown]
    print(f"\n  {len(shown)} nodes: " + " ".join(ops))
    c = collections.Counter(ops)
    print("  counts: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--hist", action="store_true", help="summary and histogram only")
    ap.add_argument("--block", type=int, default=0, help="which MoE block (default 0, the first)")
    ap.add_argument("--scope", help="print the nodes of this module scope instead")
    ap.add_argument("--from", dest="src", help="node name: print nodes on paths from it ...")
    ap.add_argument("--to", dest="dst", help="... to this node name")
    ap.add_argument("--constants", action="store_true", help="also print Constant nodes")
    ap.add_argument("--no-names", action="store_true", help="omit node names")
    ap.add_argument("--long", action="store_true", help="full tensor names (default: relative to the block scope)")
    ap.add_argument("--list-blocks", action="store_true", help="list the MoE block scopes found")
    args = ap.parse_args()

    m = Model(args.model)
    print_summary(m)
    print_histogram(m)
    if args.hist:
        return
    blocks = router_blocks(m.g)
    if args.list_blocks:
        print("MoE blocks: " + ", ".join(blocks))
        return
    print()
    if args.src or args.dst:
        if not (args.src and args.dst):
            sys.exit("--from and --to go together")
        print(f"nodes from {args.src} to {args.dst}:")
        print_nodes(m, between_nodes(m, args.src, args.dst), args.constants, not args.no_names)
        return
    scope = args.scope
    if scope is None:
        if args.block >= len(blocks):
            sys.exit(f"found {len(blocks)} MoE block(s): {blocks}")
        scope = blocks[args.block]
    print(f"MoE blocks: {', '.join(blocks)}")
    print(f"nodes of scope {scope}:")
    if not args.long:
        m.scope = scope
        print("  (tensor names relative to the scope, '_output_0' dropped; ^a/b = from outside the scope;")
        print("   W:name[shape] = initializer; const=v = Constant node folded in)")
    print_nodes(m, block_nodes(m, scope), args.constants, not args.no_names)


if __name__ == "__main__":
    main()
