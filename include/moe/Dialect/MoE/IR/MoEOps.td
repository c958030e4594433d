//===- MoEOps.td - moe dialect operations ------------------*- tablegen -*-===//
//
// Part of moe-compiler. Operations of the moe dialect in four groups: weights,
// graph-level tensor ops with ONNX semantics, Mixture-of-Experts ops, and
// collectives. Upstream ShardOps.td is the model for descriptions and formats.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_TD
#define MOE_DIALECT_MOE_IR_MOEOPS_TD

include "moe/Dialect/MoE/IR/MoEBase.td"
include "mlir/Dialect/Shard/IR/ShardBase.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/SymbolInterfaces.td"

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits>;

def MoE_FloatTensor : RankedTensorOf<[AnyFloat]>;
def MoE_IndexTensor : RankedTensorOf<[AnySignlessInteger]>;
def MoE_BoolTensor : RankedTensorOf<[I1]>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def MoE_WeightOp : MoE_Op<"weight", [Symbol]> {
  let summary = "declares a named weight stored outside the IR";
  let description = [{
    A module-level declaration of one weight tensor: its name, element type,
    static shape and the byte range that holds it. The bytes are never read
    while compiling; the runtime maps them (only the slice a rank owns) when a
    program starts. This keeps planning of very large models cheap.

    The storage length must equal the element count times the element size
    (4-bit types pack two elements per byte, rounded up).

    ```mlir
    moe.weight @layer0.router : tensor<64x8xf32>
        storage = <"model.onnx.data", offset = 0, length = 2048>
    ```
  }];
  let arguments = (ins
    SymbolNameAttr:$sym_name,
    TypeAttrOf<AnyStaticShapeTensor>:$type,
    MoE_StorageAttr:$storage
  );
  let assemblyFormat = [{
    $sym_name `:` $type `storage` `=` $storage attr-dict
  }];
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
  let hasVerifier = 1;
}

def MoE_WeightRefOp : MoE_Op<"weight_ref", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads a declared weight, or the slice of it a rank owns";
  let description = [{
    Produces the value of the `moe.weight` named by `name`. With `slice`, it
    produces only that box of the weight; the result shape must equal the
    slice sizes. The partitioner sets `slice` so every rank maps only the
    bytes it needs.

    ```mlir
    %w = moe.weight_ref @experts.up : tensor<8x64x128xf32>
    %mine = moe.weight_ref @experts.up
        slice = <offsets = [2, 0, 0], sizes = [2, 64, 128]>
        : tensor<2x64x128xf32>
    ```
  }];
  let arguments = (ins
    FlatSymbolRefAttr:$name,
    OptionalAttr<MoE_SliceAttr>:$slice
  );
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $name (`slice` `=` $slice^)? attr-dict `:` type($result)
  }];
}

def MoE_DequantizeOp : MoE_Op<"dequantize", [Pure]> {
  let summary = "expands integer-quantised expert weights to floats";
  let description = [{
    `codes` (`[E, N, ceil(K * bits / 8)]`, `ui8`) hold `bits`-bit unsigned
    codes packed along K, least significant bits first (4-bit:
    `byte = q[2i] | q[2i+1] << 4`). The result is
    `w[e, n, k] = (q[e, n, k] - zp) * scale`, with `scales` of shape `[E, N]`
    (one per row) or, with `block_size`, `[E, N, K / block_size]` (one per
    block of K). `zero_points`, when given, are packed the same way: along N
    (`[E, ceil(N * bits / 8)]`) per row, along blocks
    (`[E, N, ceil(K / block_size * bits / 8)]`) per block; absent means the
    symmetric `2^(bits - 1)`. This is onnxruntime's QMoE weight format.

    ```mlir
    %w = moe.dequantize %codes, %scales bits = 4 block_size = 32
        : (tensor<8x128x32xui8>, tensor<8x128x2xf32>) -> tensor<8x128x64xf32>
    ```
  }];
  let arguments = (ins
    RankedTensorOf<[UI8]>:$codes,
    MoE_FloatTensor:$scales,
    Optional<RankedTensorOf<[UI8]>>:$zero_points,
    I64Attr:$bits,
    OptionalAttr<I64Attr>:$block_size
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $codes `,` $scales (`,` $zero_points^)? `bits` `=` $bits
    (`block_size` `=` $block_size^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Element-wise operations (ONNX multidirectional broadcasting)
//===----------------------------------------------------------------------===//

class MoE_UnaryOp<string mnemonic, Type tensorType, list<Trait> traits = []>
    : MoE_Op<mnemonic, !listconcat(traits, [Pure, SameOperandsAndResultType])> {
  let arguments = (ins tensorType:$input);
  let results = (outs tensorType:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def MoE_NegOp : MoE_UnaryOp<"neg", AnyRankedTensor> {
  let summary = "element-wise negation (ONNX Neg)";
  let description = [{
    ```mlir
    %y = moe.neg %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_AbsOp : MoE_UnaryOp<"abs", AnyRankedTensor> {
  let summary = "element-wise absolute value (ONNX Abs)";
  let description = [{
    ```mlir
    %y = moe.abs %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_ExpOp : MoE_UnaryOp<"exp", MoE_FloatTensor> {
  let summary = "element-wise e^x (ONNX Exp)";
  let description = [{
    ```mlir
    %y = moe.exp %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_LogOp : MoE_UnaryOp<"log", MoE_FloatTensor> {
  let summary = "element-wise natural logarithm (ONNX Log)";
  let description = [{
    ```mlir
    %y = moe.log %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_SqrtOp : MoE_UnaryOp<"sqrt", MoE_FloatTensor> {
  let summary = "element-wise square root (ONNX Sqrt)";
  let description = [{
    ```mlir
    %y = moe.sqrt %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_ReciprocalOp : MoE_UnaryOp<"reciprocal", MoE_FloatTensor> {
  let summary = "element-wise 1/x (ONNX Reciprocal)";
  let description = [{
    ```mlir
    %y = moe.reciprocal %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_TanhOp : MoE_UnaryOp<"tanh", MoE_FloatTensor> {
  let summary = "element-wise hyperbolic tangent (ONNX Tanh)";
  let description = [{
    ```mlir
    %y = moe.tanh %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_CosOp : MoE_UnaryOp<"cos", MoE_FloatTensor> {
  let summary = "element-wise cosine (ONNX Cos)";
  let description = [{
    Rotary position embeddings compute their tables with it.

    ```mlir
    %y = moe.cos %x : tensor<16x32xf32>
    ```
  }];
}

def MoE_SinOp : MoE_UnaryOp<"sin", MoE_FloatTensor> {
  let summary = "element-wise sine (ONNX Sin)";
  let description = [{
    ```mlir
    %y = moe.sin %x : tensor<16x32xf32>
    ```
  }];
}

def MoE_NotOp : MoE_UnaryOp<"not", MoE_BoolTensor> {
  let summary = "element-wise logical negation (ONNX Not)";
  let description = [{
    ```mlir
    %y = moe.not %mask : tensor<4x8xi1>
    ```
  }];
}

def MoE_IsNaNOp : MoE_Op<"is_nan", [Pure, SameOperandsAndResultShape]> {
  let summary = "element-wise test for NaN (ONNX IsNaN)";
  let description = [{
    Exported attention replaces fully masked rows (NaN after softmax) with
    zeros through `Where(IsNaN(x), 0, x)`.

    ```mlir
    %m = moe.is_nan %x : tensor<4x16xf32> -> tensor<4x16xi1>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input);
  let results = (outs MoE_BoolTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def MoE_ErfOp : MoE_UnaryOp<"erf", MoE_FloatTensor> {
  let summary = "element-wise Gauss error function (ONNX Erf)";
  let description = [{
    ```mlir
    %y = moe.erf %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_SigmoidOp : MoE_UnaryOp<"sigmoid", MoE_FloatTensor> {
  let summary = "element-wise 1 / (1 + e^-x) (ONNX Sigmoid)";
  let description = [{
    ```mlir
    %y = moe.sigmoid %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_ReluOp : MoE_UnaryOp<"relu", MoE_FloatTensor> {
  let summary = "element-wise max(x, 0) (ONNX Relu)";
  let description = [{
    ```mlir
    %y = moe.relu %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_SiluOp : MoE_UnaryOp<"silu", MoE_FloatTensor> {
  let summary = "element-wise x * sigmoid(x)";
  let description = [{
    ONNX has no SiLU node; exporters write `Mul(x, Sigmoid(x))`, which the
    importer recognises.

    ```mlir
    %y = moe.silu %x : tensor<4x8xf32>
    ```
  }];
}

def MoE_GeluOp : MoE_Op<"gelu", [Pure, SameOperandsAndResultType]> {
  let summary = "element-wise Gaussian error linear unit (ONNX Gelu)";
  let description = [{
    `x * 0.5 * (1 + erf(x / sqrt(2)))`; with `tanh`, the approximation
    `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`, as ONNX
    `Gelu(approximate="tanh")`.

    ```mlir
    %y = moe.gelu %x : tensor<4x8xf32>
    %z = moe.gelu %x tanh : tensor<4x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, UnitAttr:$tanh);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = "$input (`tanh` $tanh^)? attr-dict `:` type($result)";
}

def MoE_CastOp : MoE_Op<"cast", [Pure, SameOperandsAndResultShape]> {
  let summary = "element-wise conversion to another element type (ONNX Cast)";
  let description = [{
    Float to float rounds to nearest even; float to integer truncates toward
    zero; integer to `i1` compares with zero.

    ```mlir
    %y = moe.cast %x : tensor<4x8xbf16> to tensor<4x8xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
}

class MoE_BroadcastingOp<string mnemonic, list<Trait> traits = []>
    : MoE_Op<mnemonic, !listconcat(traits, [Pure])> {
  let hasVerifier = 1;
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::verify() {
      return ::moe::detail::verifyBroadcastingOp(getOperation());
    }
  }];
}

class MoE_BinaryOp<string mnemonic, string onnxName>
    : MoE_BroadcastingOp<mnemonic> {
  let summary = "element-wise " # mnemonic # " with broadcasting (ONNX "
                # onnxName # ")";
  let description = [{
    Operands broadcast against each other as in numpy: shapes are aligned at
    the back and a dimension of 1 stretches. The result has the broadcast
    shape and the operands' element type.

    ```mlir
    %z = moe.}] # mnemonic # [{ %x, %y
        : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
}

def MoE_AddOp : MoE_BinaryOp<"add", "Add">;
def MoE_SubOp : MoE_BinaryOp<"sub", "Sub">;
def MoE_MulOp : MoE_BinaryOp<"mul", "Mul">;
def MoE_DivOp : MoE_BinaryOp<"div", "Div">;
def MoE_PowOp : MoE_BinaryOp<"pow", "Pow">;
def MoE_MaxOp : MoE_BinaryOp<"max", "Max">;
def MoE_MinOp : MoE_BinaryOp<"min", "Min">;

class MoE_LogicalOp<string mnemonic, string onnxName>
    : MoE_BroadcastingOp<mnemonic> {
  let summary = "element-wise logical " # mnemonic # " with broadcasting (ONNX "
                # onnxName # ")";
  let description = [{
    On `i1` operands that broadcast as in numpy. Exporters build attention
    masks with it; masks too large to evaluate while importing run here.

    ```mlir
    %z = moe.}] # mnemonic # [{ %x, %y
        : (tensor<1x8x8xi1>, tensor<8x8xi1>) -> tensor<1x8x8xi1>
    ```
  }];
  let arguments = (ins MoE_BoolTensor:$lhs, MoE_BoolTensor:$rhs);
  let results = (outs MoE_BoolTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
}

def MoE_AndOp : MoE_LogicalOp<"and", "And">;
def MoE_OrOp : MoE_LogicalOp<"or", "Or">;

def MoE_CompareOp : MoE_BroadcastingOp<"compare"> {
  let summary = "element-wise comparison with broadcasting";
  let description = [{
    ONNX Equal, Less, LessOrEqual, Greater and GreaterOrEqual. The result is
    `i1` with the broadcast shape.

    ```mlir
    %m = moe.compare lt, %x, %y
        : (tensor<4x8xi64>, tensor<1x8xi64>) -> tensor<4x8xi1>
    ```
  }];
  let arguments = (ins
    MoE_ComparePredicate:$predicate,
    AnyRankedTensor:$lhs,
    AnyRankedTensor:$rhs
  );
  let results = (outs MoE_BoolTensor:$result);
  let assemblyFormat = [{
    $predicate `,` $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
}

def MoE_WhereOp : MoE_BroadcastingOp<"where"> {
  let summary = "element-wise select with broadcasting (ONNX Where)";
  let description = [{
    `result = condition ? true_value : false_value`, all three broadcast.
    Causal masks are written with it.

    ```mlir
    %y = moe.where %mask, %scores, %neg_inf
        : (tensor<1x16x16xi1>, tensor<4x16x16xf32>, tensor<f32>)
        -> tensor<4x16x16xf32>
    ```
  }];
  let arguments = (ins
    MoE_BoolTensor:$condition,
    AnyRankedTensor:$true_value,
    AnyRankedTensor:$false_value
  );
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $condition `,` $true_value `,` $false_value attr-dict `:`
    functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// Linear algebra, normalisation and reductions
//===----------------------------------------------------------------------===//

def MoE_MatMulOp : MoE_Op<"matmul", [Pure]> {
  let summary = "matrix product with numpy semantics (ONNX MatMul)";
  let description = [{
    The last two dimensions multiply; leading (batch) dimensions broadcast.
    A 1-D left operand is treated as a row and a 1-D right operand as a
    column, and that dimension is dropped from the result.

    ```mlir
    %y = moe.matmul %x, %w
        : (tensor<2x16x64xf32>, tensor<64x128xf32>) -> tensor<2x16x128xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_GemmOp : MoE_Op<"gemm", [Pure]> {
  let summary = "alpha * op(A) * op(B) + beta * C on matrices (ONNX Gemm)";
  let description = [{
    `op(X)` is `X` or its transpose (`trans_a`, `trans_b`). `C` is optional
    and broadcasts to the `M x N` result.

    ```mlir
    %y = moe.gemm %x, %w, %b trans_b
        : (tensor<16x64xf32>, tensor<128x64xf32>, tensor<128xf32>)
        -> tensor<16x128xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$a,
    MoE_FloatTensor:$b,
    Optional<MoE_FloatTensor>:$c,
    DefaultValuedAttr<F32Attr, "1.0f">:$alpha,
    DefaultValuedAttr<F32Attr, "1.0f">:$beta,
    UnitAttr:$trans_a,
    UnitAttr:$trans_b
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $a `,` $b (`,` $c^)? (`trans_a` $trans_a^)? (`trans_b` $trans_b^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_ReduceOp : MoE_Op<"reduce", [Pure]> {
  let summary = "reduction over axes (ONNX ReduceSum, ReduceMean, ...)";
  let description = [{
    Reduces `input` over `axes` (negative values count from the back). With
    `keep_dims` the reduced dimensions stay with size 1.

    ```mlir
    %s = moe.reduce mean %x axes = [-1] keep_dims
        : tensor<16x64xf32> -> tensor<16x1xf32>
    ```
  }];
  let arguments = (ins
    MoE_ReduceKind:$kind,
    AnyRankedTensor:$input,
    DenseI64ArrayAttr:$axes,
    UnitAttr:$keep_dims
  );
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $kind $input `axes` `=` $axes (`keep_dims` $keep_dims^)? attr-dict `:`
    type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def MoE_SoftmaxOp : MoE_Op<"softmax", [Pure, SameOperandsAndResultType]> {
  let summary = "softmax along one axis (ONNX Softmax, opset 13 and later)";
  let description = [{
    ```mlir
    %p = moe.softmax %logits axis = -1 : tensor<16x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, I64Attr:$axis);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = "$input `axis` `=` $axis attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def MoE_TopKOp : MoE_Op<"top_k", [Pure]> {
  let summary = "the k largest (or smallest) values along an axis (ONNX TopK)";
  let description = [{
    Returns values and their indices along `axis`, sorted, largest first
    unless `smallest` is set. Ties keep the lower index first, as ONNX.

    ```mlir
    %v, %i = moe.top_k %scores k = 2 axis = -1
        : tensor<16x8xf32> -> tensor<16x2xf32>, tensor<16x2xi64>
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$input,
    I64Attr:$k,
    I64Attr:$axis,
    UnitAttr:$smallest
  );
  let results = (outs AnyRankedTensor:$values, MoE_IndexTensor:$indices);
  let assemblyFormat = [{
    $input `k` `=` $k `axis` `=` $axis (`smallest` $smallest^)? attr-dict `:`
    type($input) `->` type($values) `,` type($indices)
  }];
  let hasVerifier = 1;
}

def MoE_LayerNormOp : MoE_Op<"layer_norm", [Pure]> {
  let summary = "layer normalisation over trailing axes (ONNX LayerNormalization)";
  let description = [{
    Normalises over dimensions `axis` to the last: subtracts the mean,
    divides by `sqrt(variance + epsilon)`, multiplies by `scale` and adds
    `bias` when present. `scale` and `bias` have the normalised shape.

    ```mlir
    %y = moe.layer_norm %x, %gamma, %beta axis = -1 epsilon = 1.0e-05
        : (tensor<16x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$input,
    MoE_FloatTensor:$scale,
    Optional<MoE_FloatTensor>:$bias,
    I64Attr:$axis,
    F32Attr:$epsilon
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $scale (`,` $bias^)? `axis` `=` $axis `epsilon` `=` $epsilon
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_RMSNormOp : MoE_Op<"rms_norm", [Pure]> {
  let summary = "root-mean-square normalisation over trailing axes";
  let description = [{
    `x / sqrt(mean(x^2) + epsilon) * scale` over dimensions `axis` to the
    last: the Llama/Mixtral RMSNorm and ORT SimplifiedLayerNormalization.

    ```mlir
    %y = moe.rms_norm %x, %gamma axis = -1 epsilon = 1.0e-06
        : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$input,
    MoE_FloatTensor:$scale,
    I64Attr:$axis,
    F32Attr:$epsilon
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $scale `axis` `=` $axis `epsilon` `=` $epsilon attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

def MoE_GatherOp : MoE_Op<"gather", [Pure]> {
  let summary = "takes slices along an axis by index (ONNX Gather)";
  let description = [{
    The result shape is `data.shape[:axis] + indices.shape +
    data.shape[axis+1:]`. Negative indices count from the back. Embedding
    lookups are gathers on axis 0.

    ```mlir
    %e = moe.gather %table[%ids] axis = 0
        : (tensor<1000x64xf32>, tensor<2x16xi64>) -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$data, MoE_IndexTensor:$indices,
                       I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $data `[` $indices `]` `axis` `=` $axis attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_GatherElementsOp : MoE_Op<"gather_elements", [Pure]> {
  let summary = "takes single elements along an axis (ONNX GatherElements)";
  let description = [{
    `result[i][j] = data[indices[i][j]][j]` for axis 0, and so on; the result
    has the indices' shape.

    ```mlir
    %g = moe.gather_elements %probs[%top] axis = 1
        : (tensor<16x8xf32>, tensor<16x2xi64>) -> tensor<16x2xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$data, MoE_IndexTensor:$indices,
                       I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $data `[` $indices `]` `axis` `=` $axis attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_ScatterElementsOp : MoE_Op<"scatter_elements", [Pure]> {
  let summary = "writes single elements along an axis (ONNX ScatterElements)";
  let description = [{
    A copy of `data` where `updates[i][j]` goes to
    `[indices[i][j]][j]` (for axis 0), replacing or combining as `reduction`
    says. `indices` and `updates` have one shape.

    ```mlir
    %y = moe.scatter_elements %zeros[%idx], %vals axis = 1 reduction = add
        : (tensor<16x8xf32>, tensor<16x2xi64>, tensor<16x2xf32>) -> tensor<16x8xf32>
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$data,
    MoE_IndexTensor:$indices,
    AnyRankedTensor:$updates,
    I64Attr:$axis,
    DefaultValuedAttr<MoE_ScatterReduction, "::moe::ScatterReduction::none">:$reduction
  );
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $data `[` $indices `]` `,` $updates `axis` `=` $axis
    (`reduction` `=` $reduction^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_ScatterNDOp : MoE_Op<"scatter_nd", [Pure]> {
  let summary = "writes slices at index tuples (ONNX ScatterND)";
  let description = [{
    `indices` has shape `[..., q]`; each index tuple of length `q` addresses a
    slice of `data` with shape `data.shape[q:]`. `updates` has shape
    `indices.shape[:-1] + data.shape[q:]`.

    ```mlir
    %y = moe.scatter_nd %out[%rows], %vals reduction = add
        : (tensor<16x64xf32>, tensor<5x1xi64>, tensor<5x64xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$data,
    MoE_IndexTensor:$indices,
    AnyRankedTensor:$updates,
    DefaultValuedAttr<MoE_ScatterReduction, "::moe::ScatterReduction::none">:$reduction
  );
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $data `[` $indices `]` `,` $updates (`reduction` `=` $reduction^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

def MoE_ReshapeOp : MoE_Op<"reshape", [Pure]> {
  let summary = "reinterprets a tensor with another shape (ONNX Reshape)";
  let description = [{
    The element count is unchanged. When the result has dynamic dimensions,
    the optional `shape` operand (a 1-D integer tensor) gives the runtime
    shape; without it the result shape must be static.

    ```mlir
    %y = moe.reshape %x : (tensor<2x16x64xf32>) -> tensor<32x64xf32>
    %z = moe.reshape %x, %shape : (tensor<?x16x64xf32>, tensor<2xi64>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, Optional<MoE_IndexTensor>:$shape);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input (`,` $shape^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_TransposeOp : MoE_Op<"transpose", [Pure]> {
  let summary = "permutes dimensions (ONNX Transpose)";
  let description = [{
    Result dimension `i` is input dimension `permutation[i]`.

    ```mlir
    %t = moe.transpose %x permutation = [1, 0] : tensor<64x128xf32> -> tensor<128x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$permutation);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input `permutation` `=` $permutation attr-dict `:` type($input) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def MoE_ExpandOp : MoE_Op<"expand", [Pure]> {
  let summary = "broadcasts a tensor to a larger shape (ONNX Expand)";
  let description = [{
    `input` must broadcast to the result shape as in numpy.

    ```mlir
    %y = moe.expand %x : tensor<1x64xf32> -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def MoE_SliceOp : MoE_Op<"slice", [Pure]> {
  let summary = "takes a strided box (ONNX Slice with constant bounds)";
  let description = [{
    For each `axes[i]`, elements `starts[i], starts[i] + steps[i], ...` before
    `ends[i]`; bounds clamp to the dimension and negative values count from
    the back, as in ONNX. Axes not listed are kept whole.

    ```mlir
    %h = moe.slice %x starts = [0] ends = [32] axes = [-1] steps = [1]
        : tensor<16x64xf32> -> tensor<16x32xf32>
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$input,
    DenseI64ArrayAttr:$starts,
    DenseI64ArrayAttr:$ends,
    DenseI64ArrayAttr:$axes,
    DenseI64ArrayAttr:$steps
  );
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input `starts` `=` $starts `ends` `=` $ends `axes` `=` $axes
    `steps` `=` $steps attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def MoE_ConcatOp : MoE_Op<"concat", [Pure]> {
  let summary = "joins tensors along an axis (ONNX Concat)";
  let description = [{
    ```mlir
    %y = moe.concat %a, %b axis = 1
        : (tensor<16x32xf32>, tensor<16x32xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $inputs `axis` `=` $axis attr-dict `:` functional-type($inputs, results)
  }];
  let hasVerifier = 1;
}

def MoE_SplitOp : MoE_Op<"split", [Pure]> {
  let summary = "cuts a tensor into parts along an axis (ONNX Split)";
  let description = [{
    The part sizes are the result sizes along `axis`; they add up to the
    input's.

    ```mlir
    %gate, %up = moe.split %gate_up axis = 1
        : tensor<16x256xf32> -> tensor<16x128xf32>, tensor<16x128xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = [{
    $input `axis` `=` $axis attr-dict `:` type($input) `->` type($results)
  }];
  let hasVerifier = 1;
}

def MoE_TriluOp : MoE_Op<"trilu", [Pure, SameOperandsAndResultType]> {
  let summary = "keeps the upper or lower triangle of the last two dimensions";
  let description = [{
    ONNX Trilu: elements above (with `upper`) or below diagonal `k` are kept,
    the rest set to zero. Causal attention masks are built with it.

    ```mlir
    %m = moe.trilu %ones upper k = 1 : tensor<16x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, UnitAttr:$upper, I64Attr:$k);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input (`upper` $upper^)? `k` `=` $k attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture of Experts
//===----------------------------------------------------------------------===//

def MoE_LayerOp : MoE_Op<"layer", [Pure, AttrSizedOperandSegments]> {
  let summary = "one whole routed Mixture-of-Experts layer";
  let description = [{
    Computes, for each token row of `input` (`[tokens, hidden]`):

    1. router: `logits = input @ router_weight (+ router_bias)`;
       `scores = softmax(logits)` or `sigmoid(logits)`;
    2. selection: the `top_k` experts by score (plus `correction_bias` when
       given, which only steers selection); with `num_groups > 1`, experts
       form that many groups, each group is rated by the sum of its two best
       scores, and only the best `top_k_groups` groups compete;
    3. weights: the selected scores, divided by their sum with `normalize`,
       times `routed_scaling_factor`;
    4. experts: `ffn_e(x) = act(x @ gate[e] + gate_bias[e]) * (x @ up[e] +
       up_bias[e]) @ down[e] + down_bias[e]` for gated activations
       (`swiglu`, `geglu`), `act(x @ up[e] + up_bias[e]) @ down[e] +
       down_bias[e]` otherwise;
    5. combine: `sum_j weight_j * ffn_{e_j}(x)`;
    6. shared experts, when present: a dense FFN over every token with the
       same activation, optionally scaled by
       `sigmoid(input @ shared_expert_gate)`, added to the result.

    Weights are `[in, out]` per expert: `gate` and `up` are
    `[experts, hidden, inter]`, `down` is `[experts, inter, hidden]`, the router
    is `[hidden, experts]`. `capacity_factor`, when present, limits each
    expert to `ceil(capacity_factor * tokens * top_k / experts)` tokens;
    absent means dropless.

    ```mlir
    %y = moe.layer %x router(%wr)
        experts(up %wu down %wd gate %wg)
        top_k = 2 score = softmax normalize activation = swiglu
        : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
           tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$input,
    MoE_FloatTensor:$router_weight,
    Optional<MoE_FloatTensor>:$router_bias,
    Optional<MoE_FloatTensor>:$correction_bias,
    Optional<MoE_FloatTensor>:$gate_weight,
    MoE_FloatTensor:$up_weight,
    MoE_FloatTensor:$down_weight,
    Optional<MoE_FloatTensor>:$gate_bias,
    Optional<MoE_FloatTensor>:$up_bias,
    Optional<MoE_FloatTensor>:$down_bias,
    Optional<MoE_FloatTensor>:$shared_gate_weight,
    Optional<MoE_FloatTensor>:$shared_up_weight,
    Optional<MoE_FloatTensor>:$shared_down_weight,
    Optional<MoE_FloatTensor>:$shared_expert_gate_weight,
    I64Attr:$top_k,
    MoE_ScoreFunction:$score,
    UnitAttr:$normalize,
    MoE_ActivationKind:$activation,
    DefaultValuedAttr<I64Attr, "1">:$num_groups,
    DefaultValuedAttr<I64Attr, "1">:$top_k_groups,
    DefaultValuedAttr<F64Attr, "1.0">:$routed_scaling_factor,
    OptionalAttr<F64Attr>:$capacity_factor
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `router` `(` $router_weight (`bias` $router_bias^)?
      (`correction` $correction_bias^)? `)`
    `experts` `(` `up` $up_weight `down` $down_weight (`gate` $gate_weight^)?
      (`gate_bias` $gate_bias^)? (`up_bias` $up_bias^)?
      (`down_bias` $down_bias^)? `)`
    (`shared_gate` $shared_gate_weight^)?
    (`shared_up` $shared_up_weight^)?
    (`shared_down` $shared_down_weight^)?
    (`shared_expert_gate` $shared_expert_gate_weight^)?
    `top_k` `=` $top_k `score` `=` $score (`normalize` $normalize^)?
    `activation` `=` $activation attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNumExperts() {
      return getRouterWeight().getType().getDimSize(1);
    }
    bool hasSharedExperts() { return getSharedUpWeight() != nullptr; }
  }];
}

def MoE_RouterOp : MoE_Op<"router", [Pure, AttrSizedOperandSegments]> {
  let summary = "scores tokens and selects top-k experts with their weights";
  let description = [{
    Steps 1 to 3 of `moe.layer`: returns, per token, the routing weights
    (`[tokens, top_k]`, float) and the selected expert indices
    (`[tokens, top_k]`, integer), best first.

    ```mlir
    %weights, %experts = moe.router %x, %wr top_k = 2 score = softmax normalize
        : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$input,
    MoE_FloatTensor:$router_weight,
    Optional<MoE_FloatTensor>:$router_bias,
    Optional<MoE_FloatTensor>:$correction_bias,
    I64Attr:$top_k,
    MoE_ScoreFunction:$score,
    UnitAttr:$normalize,
    DefaultValuedAttr<I64Attr, "1">:$num_groups,
    DefaultValuedAttr<I64Attr, "1">:$top_k_groups,
    DefaultValuedAttr<F64Attr, "1.0">:$routed_scaling_factor
  );
  let results = (outs MoE_FloatTensor:$weights, MoE_IndexTensor:$experts);
  let assemblyFormat = [{
    $input `,` $router_weight (`bias` $router_bias^)?
    (`correction` $correction_bias^)? `top_k` `=` $top_k `score` `=` $score
    (`normalize` $normalize^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_DispatchOp : MoE_Op<"dispatch", [Pure]> {
  let summary = "groups token copies by expert (token permute)";
  let description = [{
    Given tokens `[tokens, hidden]` and their selected experts
    `[tokens, top_k]`, writes one row per (token, slot) pair, grouped by
    expert in ascending order and by token order within an expert.

    Results: the permuted rows; `counts[e]`, the rows for expert `e`; and
    `sources[r] = token * top_k + slot`, the pair each row came from.

    Dropless (no `capacity`): `rows = tokens * top_k` and expert `e`'s rows
    start at `sum(counts[:e])`. With `capacity = C`: `rows = experts * C`,
    expert `e`'s rows are `[e*C, e*C + counts[e])`, the remainder of each
    block is zero with source `-1`, and pairs beyond an expert's capacity are
    dropped, earliest tokens kept.

    ```mlir
    %rows, %counts, %sources = moe.dispatch %x, %experts num_experts = 8
        : (tensor<16x64xf32>, tensor<16x2xi64>)
        -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$input,
    MoE_IndexTensor:$experts,
    I64Attr:$num_experts,
    OptionalAttr<I64Attr>:$capacity
  );
  let results = (outs
    AnyRankedTensor:$rows,
    MoE_IndexTensor:$counts,
    MoE_IndexTensor:$sources
  );
  let assemblyFormat = [{
    $input `,` $experts `num_experts` `=` $num_experts
    (`capacity` `=` $capacity^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_ExpertFFNOp : MoE_Op<"expert_ffn", [Pure, AttrSizedOperandSegments]> {
  let summary = "runs each expert's FFN on its group of rows (grouped GEMM)";
  let description = [{
    `rows` are grouped by expert as `moe.dispatch` writes them and `counts`
    gives each group's size; expert `e` applies the FFN of step 4 of
    `moe.layer` to its group. With `capacity = C`, groups are `C` rows apart.
    After partitioning, the weights hold only the local experts and `counts`
    has one entry per local expert.

    ```mlir
    %out = moe.expert_ffn %rows, %counts gate %wg up %wu down %wd
        activation = swiglu
        : (tensor<32x64xf32>, tensor<8xi64>, tensor<8x64x128xf32>,
           tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<32x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$rows,
    MoE_IndexTensor:$counts,
    Optional<MoE_FloatTensor>:$gate_weight,
    MoE_FloatTensor:$up_weight,
    MoE_FloatTensor:$down_weight,
    Optional<MoE_FloatTensor>:$gate_bias,
    Optional<MoE_FloatTensor>:$up_bias,
    Optional<MoE_FloatTensor>:$down_bias,
    MoE_ActivationKind:$activation,
    OptionalAttr<I64Attr>:$capacity
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $counts (`gate` $gate_weight^)? `up` $up_weight
    `down` $down_weight (`gate_bias` $gate_bias^)? (`up_bias` $up_bias^)?
    (`down_bias` $down_bias^)? `activation` `=` $activation
    (`capacity` `=` $capacity^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_CombineOp : MoE_Op<"combine", [Pure]> {
  let summary = "weighted sum of expert outputs back per token (unpermute)";
  let description = [{
    The inverse of `moe.dispatch`: `result[t] = sum_j weights[t, j] *
    expert_out[r]` over the rows `r` with `sources[r] = t * top_k + j`. Rows
    with source `-1` (capacity padding) are ignored and dropped pairs add
    nothing.

    ```mlir
    %y = moe.combine %out, %sources, %weights
        : (tensor<32x64xf32>, tensor<32xi64>, tensor<16x2xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$expert_out,
    MoE_IndexTensor:$sources,
    MoE_FloatTensor:$weights
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_out `,` $sources `,` $weights attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_FFNOp : MoE_Op<"ffn", [Pure, AttrSizedOperandSegments]> {
  let summary = "a dense feed-forward block (shared experts)";
  let description = [{
    The FFN of step 4 of `moe.layer` with one set of `[in, out]` weights,
    applied to every row of `input` (`[..., hidden]`). Shared experts
    decompose to it.

    ```mlir
    %s = moe.ffn %x gate %sg up %su down %sd activation = swiglu
        : (tensor<16x64xf32>, tensor<64x256xf32>, tensor<64x256xf32>,
           tensor<256x64xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor:$input,
    Optional<MoE_FloatTensor>:$gate_weight,
    MoE_FloatTensor:$up_weight,
    MoE_FloatTensor:$down_weight,
    Optional<MoE_FloatTensor>:$gate_bias,
    Optional<MoE_FloatTensor>:$up_bias,
    Optional<MoE_FloatTensor>:$down_bias,
    MoE_ActivationKind:$activation
  );
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`gate` $gate_weight^)? `up` $up_weight `down` $down_weight
    (`gate_bias` $gate_bias^)? (`up_bias` $up_bias^)?
    (`down_bias` $down_bias^)? `activation` `=` $activation attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_TransposeChunksOp : MoE_Op<"transpose_chunks", [Pure]> {
  let summary = "reorders row chunks from a-major to b-major order";
  let description = [{
    `rows` hold `A x B` chunks of rows one after another in row-major order
    `(a, b)`; chunk `(a, b)` has `chunk_counts[a, b]` rows. The result holds
    the same chunks in order `(b, a)`. Rows past the sum of the counts are
    zero in the result.

    Expert parallelism uses it after the dispatch exchange, where the rows
    received from peer `p` are grouped by local expert: transposing the
    `[peers, local experts]` chunks groups every local expert's rows
    together for `moe.expert_ffn`. Transposing the counts and applying it
    again restores the order for the return exchange.

    ```mlir
    %grouped = moe.transpose_chunks %recv, %counts
        : (tensor<64x32xf32>, tensor<2x4xi64>) -> tensor<64x32xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$rows, MoE_IndexTensor:$chunk_counts);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $rows `,` $chunk_counts attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

def MoE_RaggedAllToAllOp : MoE_Op<"ragged_all_to_all", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "all-to-all with a different row count for every peer";
  let description = [{
    The dispatch and combine exchange of expert parallelism. Within each
    device group of `grid` along `grid_axes`, every device sends the first
    `send_counts[0]` rows of `input` to peer 0, the next `send_counts[1]` to
    peer 1, and so on. It receives rows from each peer in peer order,
    concatenated into `result`, and `recv_counts[p]` rows came from peer `p`.
    Counts may be zero. Trailing dimensions are the same everywhere. A
    static leading result dimension is a bound: receiving more rows is an
    error, and rows past the received ones are zero.

    Upstream `shard.all_to_all` needs equal pieces; this op is its ragged
    form. The NCCL transport runs it as grouped `ncclSend` / `ncclRecv`, the
    MPI transport as `MPI_Alltoallv`.

    ```mlir
    shard.grid @ep(shape = 2)
    %recv, %recv_counts = moe.ragged_all_to_all %rows, %send_counts on @ep
        grid_axes = [0]
        : (tensor<?x64xf32>, tensor<2xi64>) -> (tensor<?x64xf32>, tensor<2xi64>)
    ```
    Per device, rows of hidden size 1 written as values:
    ```
                 input       send_counts       result      recv_counts
    device 0:    a0 a1 a2    [1, 2]      ->    a0 b0       [1, 1]
    device 1:    b0 b1       [1, 1]      ->    a1 a2 b1    [2, 1]
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$input,
    MoE_IndexTensor:$send_counts,
    FlatSymbolRefAttr:$grid,
    DefaultValuedAttr<Shard_GridAxesAttr, "{}">:$grid_axes
  );
  let results = (outs AnyRankedTensor:$result, MoE_IndexTensor:$recv_counts);
  let assemblyFormat = [{
    $input `,` $send_counts `on` $grid (`grid_axes` `=` $grid_axes^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_StageTransferOp : MoE_Op<"stage_transfer", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "hands a value from one pipeline stage to later ones";
  let description = [{
    Pipeline parallelism: the devices of `grid` along `grid_axes` (one axis)
    are the stages. The devices of stage `from` send `input` to the device
    with the same other coordinates in each stage of `to`, whose `result` is
    that value; the sender's result is `input` itself. On the other devices
    the result is not used. The partitioner hands each value that a later
    stage uses to that stage, and the outputs of the last stage to all the
    others, so that every rank ends with the whole outputs.

    ```mlir
    shard.grid @pp_ep_tp(shape = 2x1x1)
    %h1 = moe.stage_transfer %h on @pp_ep_tp grid_axes = [0] from = 0 to = [1]
        : tensor<16x64xf32> -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins
    AnyRankedTensor:$input,
    FlatSymbolRefAttr:$grid,
    DefaultValuedAttr<Shard_GridAxesAttr, "{}">:$grid_axes,
    I64Attr:$from,
    DenseI64ArrayAttr:$to
  );
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input `on` $grid (`grid_axes` `=` $grid_axes^)? `from` `=` $from
    `to` `=` $to attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Generated code
//===----------------------------------------------------------------------===//

def MoE_LaunchOp : MoE_Op<"launch", [Pure]> {
  let summary = "runs a fused group of ops as generated GPU kernels";
  let description = [{
    What `moe-compile --target cuda` leaves of a group of element-wise,
    normalisation and routing ops: MLIR generated their kernels (fused
    where it could), which the module's `gpu.binary` ops hold as PTX. The
    op launches them in order on the operands, writing its results:
    `launches` lists each kernel with its grid, block and parameters
    (`inN` operand N, `outN` result N, `tmpN` scratch buffer N, `i64:V` and
    `f32:0xBITS` values; the grammar is in runtime/include/moe/Runtime/
    KernelLaunch.h), `scratch` the bytes of each scratch buffer.

    ```mlir
    %y = moe.launch "k0_kernel:k0_kernel 4,1,1 1,256,1 i64:1 i64:256 in0 out0"
        scratch = [] ins(%x) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    ```
  }];
  let arguments = (ins
    Variadic<AnyRankedTensor>:$inputs,
    StrAttr:$launches,
    DenseI64ArrayAttr:$scratch
  );
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = [{
    $launches `scratch` `=` $scratch `ins` `(` $inputs `)` attr-dict `:`
    functional-type($inputs, $results)
  }];
  let hasVerifier = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEOPS_TD
