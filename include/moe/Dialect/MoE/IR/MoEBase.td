//===- MoEBase.td - moe dialect, enums and attributes ------*- tablegen -*-===//
//
// Part of moe-compiler. The dialect definition, its enums and attributes live
// here, apart from the operations (MoEOps.td), as upstream Shard does.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEBASE_TD
#define MOE_DIALECT_MOE_IR_MOEBASE_TD

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/BuiltinTypeInterfaces.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/OpBase.td"

//===----------------------------------------------------------------------===//
// Dialect
//===----------------------------------------------------------------------===//

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::moe";
  let summary = "Mixture-of-Experts graphs, their weights and their collectives";
  let description = [{
    The `moe` dialect holds an imported ONNX model at three levels:

    * graph-level tensor operations with ONNX semantics (numpy broadcasting,
      negative axes counted from the back), so the importer maps one ONNX
      node to one operation without changing meaning;
    * weights by reference: `moe.weight` declares a named weight with its
      dtype, shape and where its bytes are stored; `moe.weight_ref` reads it,
      optionally only the slice a rank owns. No weight bytes live in the IR;
    * Mixture-of-Experts layers: `moe.layer` is one whole routed layer
      (router, experts, shared experts); `moe-decompose-layers` rewrites it
      into `moe.router`, `moe.dispatch`, `moe.expert_ffn` and `moe.combine`,
      which the partitioner distributes with `moe.ragged_all_to_all` and the
      even collectives of the upstream `shard` dialect.

    `docs/design/ops.md` explains which upstream dialects are reused and why.
  }];
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::shard::ShardDialect"];
}

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def MoE_ActivationKind : I32EnumAttr<"ActivationKind",
    "expert activation function", [
  I32EnumAttrCase<"relu", 0>,
  I32EnumAttrCase<"gelu", 1>,
  I32EnumAttrCase<"gelu_tanh", 2>,
  I32EnumAttrCase<"silu", 3>,
  I32EnumAttrCase<"swiglu", 4>,
  I32EnumAttrCase<"geglu", 5>,
  I32EnumAttrCase<"identity", 6>
]> {
  let cppNamespace = "::moe";
  let description = [{
    `swiglu` and `geglu` are gated: the FFN computes
    `act(x @ gate) * (x @ up)` and needs a gate weight; the others compute
    `act(x @ up)` and take no gate weight.
  }];
}

def MoE_ScoreFunction : I32EnumAttr<"ScoreFunction",
    "router score function", [
  I32EnumAttrCase<"softmax", 0>,
  I32EnumAttrCase<"sigmoid", 1>
]> {
  let cppNamespace = "::moe";
}

def MoE_ReduceKind : I32EnumAttr<"ReduceKind", "reduction kind", [
  I32EnumAttrCase<"sum", 0>,
  I32EnumAttrCase<"mean", 1>,
  I32EnumAttrCase<"max", 2>,
  I32EnumAttrCase<"min", 3>,
  I32EnumAttrCase<"prod", 4>
]> {
  let cppNamespace = "::moe";
}

def MoE_ScatterReduction : I32EnumAttr<"ScatterReduction",
    "how scattered updates combine with existing values", [
  I32EnumAttrCase<"none", 0>,
  I32EnumAttrCase<"add", 1>,
  I32EnumAttrCase<"mul", 2>,
  I32EnumAttrCase<"max", 3>,
  I32EnumAttrCase<"min", 4>
]> {
  let cppNamespace = "::moe";
}

def MoE_ComparePredicate : I32EnumAttr<"ComparePredicate",
    "element-wise comparison", [
  I32EnumAttrCase<"eq", 0>,
  I32EnumAttrCase<"ne", 1>,
  I32EnumAttrCase<"lt", 2>,
  I32EnumAttrCase<"le", 3>,
  I32EnumAttrCase<"gt", 4>,
  I32EnumAttrCase<"ge", 5>
]> {
  let cppNamespace = "::moe";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

class MoE_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<MoE_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def MoE_StorageAttr : MoE_Attr<"Storage", "storage"> {
  let summary = "where the bytes of a weight are stored";
  let description = [{
    A byte range `[offset, offset + length)` of a file. `file` is relative to
    the directory of the model (the ONNX file itself for initializers stored
    in it, or an external data file); absolute paths and `..` components are
    rejected so a model cannot make the compiler read outside its directory.
    Bytes are little-endian and densely packed in row-major order, as ONNX
    `raw_data` is: 4-bit types pack two elements per byte, a bool takes one.

    ```mlir
    #moe.storage<"model.onnx.data", offset = 4096, length = 262144>
    ```
  }];
  let parameters = (ins
    StringRefParameter<"file path relative to the model directory">:$file,
    "int64_t":$offset,
    "int64_t":$length
  );
  let assemblyFormat = [{
    `<` $file `,` `offset` `=` $offset `,` `length` `=` $length `>`
  }];
  let genVerifyDecl = 1;
}

def MoE_SliceAttr : MoE_Attr<"Slice", "slice"> {
  let summary = "the static hyper-rectangle of a weight that a rank owns";
  let description = [{
    After partitioning, each rank reads only the part of a weight it owns:
    element `[offsets[i], offsets[i] + sizes[i])` along each dimension `i`.
    Unit strides only: column and row splits and expert ranges are all
    contiguous boxes.

    ```mlir
    #moe.slice<offsets = [2, 0, 0], sizes = [2, 64, 128]>
    ```
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t">:$offsets,
    ArrayRefParameter<"int64_t">:$sizes
  );
  let assemblyFormat = [{
    `<` `offsets` `=` `[` $offsets `]` `,` `sizes` `=` `[` $sizes `]` `>`
  }];
  let genVerifyDecl = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEBASE_TD
