#!/usr/bin/env python3
"""Runs the generated kernels' loop nests on the CPU and checks them
against numpy.

    generated_kernels_numerics.py --moe-opt BIN --mlir-opt BIN
        --mlir-runner BIN --runner-libs LIB[,LIB...] [--keep DIR]

The PTX tests (generated-kernels.mlir) show that every kernel compiles and
assembles, not that it computes the right numbers, and this machine has no
GPU to run it. The numbers come from the steps before the GPU mapping, and
those run here: each case below is a function of moe ops on random inputs
that goes through moe-lower-elementwise-to-linalg and the same upstream
steps as the GPU path (element-wise fusion, bufferisation, parallel loops,
fixed-size tiles with the inner bounds check: 1 x 256, and 256 as for loops
over rows alone; each case runs under both), then, where the GPU path maps
the loops onto blocks and threads, into sequential loops, LLVM and
mlir-runner. The printed results are compared with numpy computing the
op's definition (ONNX's for top-k, the runtime's documented routing for the
router). Prints one line per case with its largest error; exits 1 naming
the case on a mismatch or a failed step.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

RNG = np.random.default_rng(20261203)
PRINT_RTOL = 1e-5


def bf16_round(values):
    """The float32 values rounded to the nearest bfloat16 (ties to even)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def literal(array):
    """An MLIR dense literal body: nested lists of exact decimals."""
    if array.ndim == 0:
        value = array.item()
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            if not np.isfinite(value):
                # MLIR spells non-finite floats by their bits.
                return hex(np.float32(value).view(np.uint32))
            return repr(float(np.float32(value)))
        return str(value)
    return "[" + ", ".join(literal(part) for part in array) + "]"


def tensor_type(shape, element):
    return "tensor<" + "x".join(str(d) for d in shape) + "x" + element + ">"


class Case:
    """A kernel: `body` computes results from the arguments %a0, %a1, ...

    `inputs` are (array, element type) pairs; `results` (element type,
    shape) pairs; `reference` the numpy results; `tolerance` an absolute
    bound per result (beyond the printing's PRINT_RTOL), 0 for indices.
    """

    def __init__(self, name, inputs, body, results, reference, tolerance):
        self.name = name
        self.inputs = inputs
        self.body = body
        self.results = results
        self.reference = reference
        self.tolerance = tolerance

    def modules(self):
        """The kernel (moe ops, for moe-opt) and the harness calling it
        and printing the results (upstream ops, appended after moe-opt)."""
        argument_types = [tensor_type(a.shape, e) for a, e in self.inputs]
        result_types = [tensor_type(s, e) for e, s in self.results]
        arguments = ", ".join(f"%a{i}: {t}"
                              for i, t in enumerate(argument_types))
        kernel = (f"func.func @kernel({arguments}) -> "
                  f"({', '.join(result_types)}) {{\n  " +
                  self.body.strip().replace("\n", "\n  ") + "\n}\n")
        lines = [
            "func.func private @printMemrefF32(memref<*xf32>)",
            "func.func private @printMemrefI64(memref<*xi64>)",
            "func.func @main() {",
        ]
        for i, (array, element) in enumerate(self.inputs):
            lines.append(f"  %c{i} = arith.constant dense<{literal(array)}> : "
                         f"{argument_types[i]}")
        names = ", ".join(f"%r{i}" for i in range(len(self.results)))
        operands = ", ".join(f"%c{i}" for i in range(len(self.inputs)))
        lines.append(f"  {names} = call @kernel({operands}) : "
                     f"({', '.join(argument_types)}) -> "
                     f"({', '.join(result_types)})")
        for i, (element, shape) in enumerate(self.results):
            value = f"%r{i}"
            # Printed as f32 or i64: narrower results are widened first.
            if element in ("bf16", "f16", "i32", "i1"):
                widen, element = {"bf16": ("extf", "f32"),
                                  "f16": ("extf", "f32"),
                                  "i32": ("extsi", "i64"),
                                  "i1": ("extui", "i64")}[element]
                lines.append(f"  %w{i} = arith.{widen} %r{i} : "
                             f"{result_types[i]} to "
                             f"{tensor_type(shape, element)}")
                value = f"%w{i}"
            printed = "F32" if element == "f32" else "I64"
            memref = tensor_type(shape, element).replace("tensor", "memref")
            lines.append(f"  %m{i} = bufferization.to_buffer {value} : "
                         f"{tensor_type(shape, element)} to {memref}")
            lines.append(f"  %u{i} = memref.cast %m{i} : {memref} to "
                         f"memref<*x{element}>")
            lines.append(f"  call @printMemref{printed}(%u{i}) : "
                         f"(memref<*x{element}>) -> ()")
        lines += ["  return", "}"]
        return kernel, "\n".join(lines) + "\n"


def softmax(x):
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def top_k(x, k, smallest=False):
    """ONNX TopK on the last axis: sorted, ties to the lower index."""
    order = np.argsort(x if smallest else -x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, order, axis=-1), order


def erf(x):
    return np.vectorize(__import__("math").erf)(x.astype(np.float64))


def cases():
    f32 = np.float32

    gate = RNG.standard_normal((37, 300)).astype(f32)
    up = RNG.standard_normal((37, 300)).astype(f32)
    bias = RNG.standard_normal(300).astype(f32)
    yield Case(
        "swiglu-with-bias (300 columns: a partial tile of 256)",
        [(gate, "f32"), (up, "f32"), (bias, "f32")], """
%b = moe.add %a1, %a2 : (tensor<37x300xf32>, tensor<300xf32>) -> tensor<37x300xf32>
%s = moe.silu %a0 : tensor<37x300xf32>
%y = moe.mul %s, %b : (tensor<37x300xf32>, tensor<37x300xf32>) -> tensor<37x300xf32>
return %y : tensor<37x300xf32>""", [("f32", (37, 300))],
        [gate * sigmoid(gate) * (up + bias)], [1e-5])

    x = RNG.standard_normal((16, 64)).astype(f32) * 3
    column = RNG.standard_normal((1, 64)).astype(f32)
    yield Case(
        "gelu (erf and tanh), broadcast sub and div",
        [(x, "f32"), (column, "f32")], """
%g = moe.gelu %a0 : tensor<16x64xf32>
%t = moe.gelu %a0 tanh : tensor<16x64xf32>
%d = moe.sub %g, %t : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
%q = moe.div %a0, %a1 : (tensor<16x64xf32>, tensor<1x64xf32>) -> tensor<16x64xf32>
return %g, %d, %q : tensor<16x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>""",
        [("f32", (16, 64))] * 3, [
            0.5 * x * (1 + erf(x / np.sqrt(2))),
            0.5 * x * (1 + erf(x / np.sqrt(2))) - 0.5 * x *
            (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
            x / column
        ], [1e-5, 1e-5, 1e-4])

    rows = bf16_round(RNG.standard_normal((9, 520)))
    scale = bf16_round(RNG.standard_normal(520))
    normalised = rows / np.sqrt((rows.astype(np.float64)**2).mean(
        axis=-1, keepdims=True) + 1e-6) * scale
    yield Case(
        "rms_norm on bf16 (f32 sums; 520 columns: three tiles)",
        [(rows, "bf16"), (scale, "bf16")], """
%y = moe.rms_norm %a0, %a1 axis = -1 epsilon = 1.0e-06
    : (tensor<9x520xbf16>, tensor<520xbf16>) -> tensor<9x520xbf16>
return %y : tensor<9x520xbf16>""", [("bf16", (9, 520))], [normalised],
        # One rounding to bf16: half a unit in the last of 8 bits.
        [np.abs(normalised).max() * 2.0**-8])

    logits = RNG.standard_normal((50, 8)).astype(f32) * 4
    yield Case("softmax over 8 experts", [(logits, "f32")], """
%p = moe.softmax %a0 axis = -1 : tensor<50x8xf32>
return %p : tensor<50x8xf32>""", [("f32", (50, 8))], [softmax(logits)],
               [1e-6])

    # Rounded to quarters, so rows hold ties that must go to the lower index.
    scores = np.round(RNG.standard_normal((40, 16)) * 2).astype(f32) / 4
    for smallest in (False, True):
        values, indices = top_k(scores, 4, smallest)
        yield Case(
            f"top_k k=4 of 16 ({'smallest' if smallest else 'largest'}, "
            "with ties)", [(scores, "f32")], f"""
%v, %i = moe.top_k %a0 k = 4 axis = -1 {'smallest' if smallest else ''}
    : tensor<40x16xf32> -> tensor<40x4xf32>, tensor<40x4xi64>
return %v, %i : tensor<40x4xf32>, tensor<40x4xi64>""",
            [("f32", (40, 4)), ("i64", (40, 4))], [values, indices], [0, 0])

    tokens = RNG.standard_normal((24, 32)).astype(f32)
    router = RNG.standard_normal((32, 8)).astype(f32) * 0.5
    probabilities = softmax(tokens @ router)
    chosen, experts = top_k(probabilities, 2)
    yield Case(
        "router: softmax, top-2, normalised", [(tokens, "f32"),
                                               (router, "f32")], """
%w, %e = moe.router %a0, %a1 top_k = 2 score = softmax normalize
    : (tensor<24x32xf32>, tensor<32x8xf32>) -> (tensor<24x2xf32>, tensor<24x2xi64>)
return %w, %e : tensor<24x2xf32>, tensor<24x2xi64>""",
        [("f32", (24, 2)), ("i64", (24, 2))],
        [chosen / chosen.sum(axis=-1, keepdims=True), experts], [1e-5, 0])

    router_bias = RNG.standard_normal(8).astype(f32) * 0.1
    correction = RNG.standard_normal(8).astype(f32) * 0.3
    plain = sigmoid(tokens @ router + router_bias)
    _, picks = top_k(plain + correction, 3)
    yield Case(
        "router: sigmoid, bias, correction bias, top-3, scaled 2.5",
        [(tokens, "f32"), (router, "f32"), (router_bias, "f32"),
         (correction, "f32")], """
%w, %e = moe.router %a0, %a1 bias %a2 correction %a3 top_k = 3 score = sigmoid
    {routed_scaling_factor = 2.5 : f64}
    : (tensor<24x32xf32>, tensor<32x8xf32>, tensor<8xf32>, tensor<8xf32>)
      -> (tensor<24x3xf32>, tensor<24x3xi32>)
return %w, %e : tensor<24x3xf32>, tensor<24x3xi32>""",
        [("f32", (24, 3)), ("i32", (24, 3))],
        [np.take_along_axis(plain, picks, axis=-1) * 2.5, picks], [1e-5, 0])


    # DeepSeek-V3's group-limited routing: 4 groups of 4 experts, each rated
    # by its two best choices, the best 2 groups compete for the top 3.
    wide_router = RNG.standard_normal((32, 16)).astype(f32) * 0.5
    choice_bias = RNG.standard_normal(16).astype(f32) * 0.2
    plain = sigmoid(tokens @ wide_router)
    choice = plain + choice_bias
    grouped = choice.reshape(24, 4, 4)
    ratings = np.sort(grouped, axis=-1)[..., -2:].sum(axis=-1)
    _, kept = top_k(ratings, 2)
    masked = np.full_like(choice, -np.inf)
    for t in range(24):
        for g in kept[t]:
            masked[t, g * 4:(g + 1) * 4] = choice[t, g * 4:(g + 1) * 4]
    _, picks = top_k(masked, 3)
    chosen = np.take_along_axis(plain, picks, axis=-1)
    yield Case(
        "router: 4 groups of 4, best 2 groups, top-3, normalised",
        [(tokens, "f32"), (wide_router, "f32"), (choice_bias, "f32")], """
%w, %e = moe.router %a0, %a1 correction %a2 top_k = 3 score = sigmoid normalize
    {num_groups = 4 : i64, top_k_groups = 2 : i64}
    : (tensor<24x32xf32>, tensor<32x16xf32>, tensor<16xf32>)
      -> (tensor<24x3xf32>, tensor<24x3xi64>)
return %w, %e : tensor<24x3xf32>, tensor<24x3xi64>""",
        [("f32", (24, 3)), ("i64", (24, 3))],
        [chosen / chosen.sum(axis=-1, keepdims=True), picks], [1e-5, 0])

    # Data movement: what attention and rotary embeddings are made of.
    x = RNG.standard_normal((2, 3, 4, 5)).astype(f32)
    yield Case(
        "transpose 0,2,1,3, slice with a negative start and step, expand",
        [(x, "f32"), (x[:, :1, :1, :], "f32")], """
%t = moe.transpose %a0 permutation = [0, 2, 1, 3] : tensor<2x3x4x5xf32> -> tensor<2x4x3x5xf32>
%s = moe.slice %a0 starts = [-1, 1] ends = [-100, 5] axes = [3, 2] steps = [-2, 2]
    : tensor<2x3x4x5xf32> -> tensor<2x3x2x3xf32>
%e = moe.expand %a1 : tensor<2x1x1x5xf32> -> tensor<2x3x4x5xf32>
return %t, %s, %e : tensor<2x4x3x5xf32>, tensor<2x3x2x3xf32>, tensor<2x3x4x5xf32>""",
        [("f32", (2, 4, 3, 5)), ("f32", (2, 3, 2, 3)), ("f32", (2, 3, 4, 5))],
        [x.transpose(0, 2, 1, 3), x[:, :, 1:5:2, -1::-2],
         np.broadcast_to(x[:, :1, :1, :], x.shape)], [0, 0, 0])

    table = RNG.standard_normal((6, 7, 3)).astype(f32)
    ids = np.array([[0, -1], [6, 3], [-7, 2]], dtype=np.int64)
    half = RNG.standard_normal((2, 4, 3)).astype(f32)
    yield Case(
        "gather on axis 1 with negative indices, concat of three",
        [(table, "f32"), (ids, "i64"), (half, "f32")], """
%g = moe.gather %a0[%a1] axis = 1 : (tensor<6x7x3xf32>, tensor<3x2xi64>) -> tensor<6x3x2x3xf32>
%n = moe.neg %a2 : tensor<2x4x3xf32>
%c = moe.concat %n, %a2, %n axis = -1 : (tensor<2x4x3xf32>, tensor<2x4x3xf32>, tensor<2x4x3xf32>) -> tensor<2x4x9xf32>
return %g, %c : tensor<6x3x2x3xf32>, tensor<2x4x9xf32>""",
        [("f32", (6, 3, 2, 3)), ("f32", (2, 4, 9))],
        [np.take(table, ids, axis=1),
         np.concatenate([-half, half, -half], axis=-1)], [0, 0])

    fused = RNG.standard_normal((4, 10)).astype(f32)
    yield Case("split 10 columns into 3 and 7", [(fused, "f32")], """
%a, %b = moe.split %a0 axis = -1 : tensor<4x10xf32> -> tensor<4x3xf32>, tensor<4x7xf32>
return %a, %b : tensor<4x3xf32>, tensor<4x7xf32>""",
               [("f32", (4, 3)), ("f32", (4, 7))],
               [fused[:, :3], fused[:, 3:]], [0, 0])

    # ScatterND with constant indices (DeepSeek-V3's exported RoPE writes a
    # contiguous run of rows); a scattered pair; an add-reduction.
    rows6 = RNG.standard_normal((6, 2, 3)).astype(f32)
    new_rows = RNG.standard_normal((3, 2, 3)).astype(f32)
    run = rows6.copy()
    run[1:4] = new_rows
    scattered = rows6.copy()
    scattered[5], scattered[0] = new_rows[0], new_rows[1]
    cell_updates = RNG.standard_normal((2, 3)).astype(f32)
    added = rows6.copy()
    added[5, 1] += cell_updates[0]
    added[2, 0] += cell_updates[1]
    yield Case(
        "scatter_nd: a run of rows, scattered rows, add at pairs",
        [(rows6, "f32"), (new_rows, "f32"), (cell_updates, "f32")], """
%run = arith.constant dense<[[1], [2], [3]]> : tensor<3x1xi64>
%pair = arith.constant dense<[[5], [-6]]> : tensor<2x1xi64>
%cells = arith.constant dense<[[5, 1], [2, 0]]> : tensor<2x2xi64>
%two = moe.slice %a1 starts = [0] ends = [2] axes = [0] steps = [1] : tensor<3x2x3xf32> -> tensor<2x2x3xf32>
%r = moe.scatter_nd %a0[%run], %a1 : (tensor<6x2x3xf32>, tensor<3x1xi64>, tensor<3x2x3xf32>) -> tensor<6x2x3xf32>
%s = moe.scatter_nd %a0[%pair], %two : (tensor<6x2x3xf32>, tensor<2x1xi64>, tensor<2x2x3xf32>) -> tensor<6x2x3xf32>
%t = moe.scatter_nd %a0[%cells], %a2 reduction = add : (tensor<6x2x3xf32>, tensor<2x2xi64>, tensor<2x3xf32>) -> tensor<6x2x3xf32>
return %r, %s, %t : tensor<6x2x3xf32>, tensor<6x2x3xf32>, tensor<6x2x3xf32>""",
        [("f32", (6, 2, 3))] * 3, [run, scattered, added], [0, 0, 1e-6])

    # A box of element tuples (the TorchScript export's RoPE halves):
    # indices[i, j] = (i + 1, j + 2), updates [2, 3, 2] into [4, 6, 2].
    grid = RNG.standard_normal((4, 6, 2)).astype(f32)
    patch = RNG.standard_normal((2, 3, 2)).astype(f32)
    boxed = grid.copy()
    boxed[1:3, 2:5] = patch
    tuples = [[[i + 1, j + 2] for j in range(3)] for i in range(2)]
    yield Case(
        "scatter_nd: a box of index tuples", [(grid, "f32"), (patch, "f32")],
        f"""
%box = arith.constant dense<{tuples}> : tensor<2x3x2xi64>
%y = moe.scatter_nd %a0[%box], %a1 : (tensor<4x6x2xf32>, tensor<2x3x2xi64>, tensor<2x3x2xf32>) -> tensor<4x6x2xf32>
return %y : tensor<4x6x2xf32>""", [("f32", (4, 6, 2))], [boxed], [0])

    values = RNG.standard_normal((3, 4, 50)).astype(f32)
    yield Case(
        "reduce mean over axes 0 and 2 (keep_dims), max over the last",
        [(values, "f32")], """
%m = moe.reduce mean %a0 axes = [0, -1] keep_dims : tensor<3x4x50xf32> -> tensor<1x4x1xf32>
%x = moe.reduce max %a0 axes = [2] : tensor<3x4x50xf32> -> tensor<3x4xf32>
return %m, %x : tensor<1x4x1xf32>, tensor<3x4xf32>""",
        [("f32", (1, 4, 1)), ("f32", (3, 4))],
        [values.mean(axis=(0, 2), keepdims=True), values.max(axis=2)],
        [1e-6, 0])

    scores = np.round(RNG.standard_normal((4, 6)) * 2).astype(f32)
    scores[1, 2] = np.nan
    limits = np.array([0.0, 1.0, -1.0, 2.0, 0.5, -0.5], dtype=f32)
    flags = RNG.integers(0, 2, (4, 6)).astype(bool)
    yield Case(
        "compare, where, is_nan, and, or, not, casts",
        [(scores, "f32"), (limits, "f32"), (flags, "i1")], """
%lt = moe.compare lt, %a0, %a1 : (tensor<4x6xf32>, tensor<6xf32>) -> tensor<4x6xi1>
%ne = moe.compare ne, %a0, %a1 : (tensor<4x6xf32>, tensor<6xf32>) -> tensor<4x6xi1>
%nan = moe.is_nan %a0 : tensor<4x6xf32> -> tensor<4x6xi1>
%both = moe.and %lt, %a2 : (tensor<4x6xi1>, tensor<4x6xi1>) -> tensor<4x6xi1>
%either = moe.or %nan, %both : (tensor<4x6xi1>, tensor<4x6xi1>) -> tensor<4x6xi1>
%none = moe.not %either : tensor<4x6xi1>
%w = moe.where %lt, %a0, %a1 : (tensor<4x6xi1>, tensor<4x6xf32>, tensor<6xf32>) -> tensor<4x6xf32>
%i = moe.cast %w : tensor<4x6xf32> to tensor<4x6xi32>
%f = moe.cast %i : tensor<4x6xi32> to tensor<4x6xf32>
%b = moe.cast %a1 : tensor<6xf32> to tensor<6xi1>
return %ne, %none, %w, %i, %f, %b
    : tensor<4x6xi1>, tensor<4x6xi1>, tensor<4x6xf32>, tensor<4x6xi32>, tensor<4x6xf32>, tensor<6xi1>""",
        [("i1", (4, 6)), ("i1", (4, 6)), ("f32", (4, 6)), ("i32", (4, 6)),
         ("f32", (4, 6)), ("i1", (6,))],
        [scores != limits,
         ~(np.isnan(scores) | ((scores < limits) & flags)),
         np.where(scores < limits, scores, limits),
         np.trunc(np.where(scores < limits, scores, limits)),
         np.trunc(np.where(scores < limits, scores, limits)),
         limits != 0], [0] * 6)


# The GPU path's tiles (moe-compile --target cuda): fixed-size, with the
# bounds check inside, which is what a partial tile must get right. It tiles
# row-by-column loops 1 x 256 and loops over rows alone 256; each case runs
# under both tilings (the second tiles a 2-D loop's rows by 256).
TILINGS = ["1,256", "256"]
TILING = "TILING"

CPU_PIPELINE = [
    "--convert-elementwise-to-linalg",
    "--linalg-fuse-elementwise-ops",
    "--one-shot-bufferize=bufferize-function-boundaries",
    "--convert-linalg-to-parallel-loops",
    TILING,
    "--convert-scf-to-cf",
    "--lower-affine",
    "--expand-strided-metadata",
    "--arith-expand=include-bf16=true",
    "--convert-math-to-llvm",
    "--convert-math-to-libm",
    "--finalize-memref-to-llvm",
    "--convert-arith-to-llvm",
    "--convert-index-to-llvm",
    "--convert-cf-to-llvm",
    "--convert-func-to-llvm",
    "--reconcile-unrealized-casts",
]


def printed_arrays(output):
    """The data of every printMemref call in `output`, in order."""
    arrays = []
    for block in re.split(r"Unranked Memref", output)[1:]:
        data = block.split("data =", 1)[1]
        numbers = re.findall(r"-?(?:nan|inf|\d+(?:\.\d*)?(?:e[-+]?\d+)?)",
                             data)
        arrays.append(np.array([float(n) for n in numbers]))
    return arrays


def run_case(case, tools, work, tiling):
    source = os.path.join(work, "case.mlir")
    linalg = os.path.join(work, "case.linalg.mlir")
    llvm = os.path.join(work, "case.llvm.mlir")
    kernel, harness = case.modules()
    with open(source, "w", encoding="utf-8") as f:
        f.write(kernel)
    lowered = subprocess.run(
        [tools.moe_opt, source, "--moe-lower-elementwise-to-linalg"],
        capture_output=True, text=True)
    if lowered.returncode != 0:
        return None, f"moe-opt failed:\n{lowered.stderr[-3000:]}"
    left = re.search(r"\bmoe\.\w+", lowered.stdout)
    if left:
        return None, (f"moe-lower-elementwise-to-linalg left {left.group(0)} "
                      "behind")
    with open(linalg, "w", encoding="utf-8") as f:
        f.write(lowered.stdout.rstrip().removesuffix("}") + harness + "}\n")
    steps = [
        [tools.mlir_opt, linalg,
         *[f"--scf-parallel-loop-tiling=parallel-loop-tile-sizes={tiling} "
           "no-min-max-bounds=true" if flag == TILING else flag
           for flag in CPU_PIPELINE], "-o", llvm],
        [tools.mlir_runner, llvm, "-e", "main", "-entry-point-result=void",
         *[f"-shared-libs={lib}" for lib in tools.runner_libs.split(",")]],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            return None, (f"{os.path.basename(step[0])} failed "
                          f"({' '.join(step)}):\n{result.stderr[-3000:]}")
    return printed_arrays(result.stdout), None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moe-opt", required=True)
    parser.add_argument("--mlir-opt", required=True)
    parser.add_argument("--mlir-runner", required=True)
    parser.add_argument("--runner-libs", required=True,
                        help="comma-separated: libmlir_runner_utils.so, "
                        "libmlir_c_runner_utils.so")
    parser.add_argument("--keep", help="keep each case's files here")
    tools = parser.parse_args()
    failures = 0
    for index, case in enumerate(cases()):
        work = (os.path.join(tools.keep, str(index)) if tools.keep else
                tempfile.mkdtemp(prefix="moe-numerics-"))
        os.makedirs(work, exist_ok=True)
        worst = [0.0] * len(case.reference)
        error = None
        for tiling in TILINGS:
            arrays, error = run_case(case, tools, work, tiling)
            if error is None and len(arrays) != len(case.reference):
                error = (f"printed {len(arrays)} results, expected "
                         f"{len(case.reference)}")
            if error is not None:
                error = f"tiles {tiling}: {error}"
                break
            for i, (got, want, bound) in enumerate(
                    zip(arrays, case.reference, case.tolerance)):
                want = np.asarray(want, dtype=np.float64).ravel()
                if got.size != want.size:
                    error = (f"tiles {tiling}: result {i}: {got.size} "
                             f"values, expected {want.size}")
                    break
                # printMemref prints 6 significant digits: a relative 1e-5
                # on top of each result's own bound.
                excess = np.abs(got - want) - (bound + PRINT_RTOL * np.abs(want))
                difference = np.abs(got - want).max()
                worst[i] = max(worst[i], difference)
                if not excess.max() <= 0:
                    at = int(np.argmax(excess))
                    error = (f"tiles {tiling}: result {i}: largest error "
                             f"{difference:.3g} > {bound:.3g} at flat index "
                             f"{at} (got {got[at]}, numpy {want[at]})")
                    break
            if error is not None:
                break
        if error is None:
            print(f"ok   {case.name}: largest error "
                  + ", ".join(f"{w:.2g}" for w in worst))
        else:
            failures += 1
            print(f"FAIL {case.name}: {error}")
    if failures:
        sys.exit(f"{failures} generated kernel case(s) disagree with numpy")


if __name__ == "__main__":
    main()
