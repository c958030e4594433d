//===- MoEOps.h - moe dialect operations and attributes ---------*- C++ -*-===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_H
#define MOE_DIALECT_MOE_IR_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "moe/Dialect/MoE/IR/MoEDialect.h"

#include "moe/Dialect/MoE/IR/MoEEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/MoE/IR/MoEAttributes.h.inc"

namespace moe {

/// Returns true for the gated activations (SwiGLU, GeGLU), whose FFN needs a
/// gate weight next to the up weight.
bool isGatedActivation(ActivationKind kind);

/// Size in bytes of `numElements` elements of `elementType` as they are
/// stored in a weight file, or std::nullopt for element types that cannot be
/// stored. As in ONNX, 4-bit types pack two per byte (rounded up to whole
/// bytes) and a bool takes a byte.
std::optional<int64_t> getStorageSizeInBytes(mlir::Type elementType,
                                             int64_t numElements);

/// The numpy broadcast of two shapes (dynamic dimensions are
/// ShapedType::kDynamic), or failure when a pair of static dimensions other
/// than 1 differ.
llvm::FailureOr<llvm::SmallVector<int64_t>>
broadcastShapes(llvm::ArrayRef<int64_t> lhs, llvm::ArrayRef<int64_t> rhs);

/// The shape of ONNX MatMul of operands with shapes `lhs` and `rhs` (numpy
/// matmul: 1-D promotion, batch broadcasting), or failure with the reason
/// written to `whyNot`.
llvm::FailureOr<llvm::SmallVector<int64_t>>
inferMatMulShape(llvm::ArrayRef<int64_t> lhs, llvm::ArrayRef<int64_t> rhs,
                 llvm::raw_ostream &whyNot);

/// The number of elements ONNX Slice takes from a dimension of size `dim`
/// with the given start, end and (non-zero) step, after ONNX clamping.
int64_t sliceDimSize(int64_t dim, int64_t start, int64_t end, int64_t step);

/// Per-expert capacity of moe.layer's capacity mode:
/// ceil(capacity_factor * tokens * top_k / experts) routed pairs.
int64_t expertCapacity(double capacityFactor, int64_t tokens, int64_t topK,
                       int64_t experts);

/// Formats a shape as in a tensor type (`16x?x64`), or `scalar` for rank 0.
std::string formatShape(llvm::ArrayRef<int64_t> shape);

namespace detail {
/// Shared verifier of the element-wise operations with numpy broadcasting.
llvm::LogicalResult verifyBroadcastingOp(mlir::Operation *op);
} // namespace detail

} // namespace moe

#define GET_OP_CLASSES
#include "moe/Dialect/MoE/IR/MoEOps.h.inc"

#endif // MOE_DIALECT_MOE_IR_MOEOPS_H
