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
/// stored. Sub-byte integer types pack densely, rounded up to whole bytes.
std::optional<int64_t> getStorageSizeInBytes(mlir::Type elementType,
                                             int64_t numElements);

/// The numpy broadcast of two shapes (dynamic dimensions are
/// ShapedType::kDynamic), or failure when a pair of static dimensions other
/// than 1 differ.
llvm::FailureOr<llvm::SmallVector<int64_t>>
broadcastShapes(llvm::ArrayRef<int64_t> lhs, llvm::ArrayRef<int64_t> rhs);

namespace detail {
/// Shared verifier of the element-wise operations with numpy broadcasting.
llvm::LogicalResult verifyBroadcastingOp(mlir::Operation *op);
} // namespace detail

} // namespace moe

#define GET_OP_CLASSES
#include "moe/Dialect/MoE/IR/MoEOps.h.inc"

#endif // MOE_DIALECT_MOE_IR_MOEOPS_H
