//===- LayerParts.h - the routed parts of a moe.layer -----------*- C++ -*-===//
//
// Part of moe-compiler.
//
// Builders shared by the passes that take a moe.layer apart: the
// decomposition for one rank and the expert-parallel partition.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_LAYERPARTS_H
#define MOE_DIALECT_MOE_TRANSFORMS_LAYERPARTS_H

#include "moe/Dialect/MoE/IR/MoEOps.h"

#include "mlir/IR/Builders.h"

#include <optional>

namespace moe {

/// The router of `layer` applied to `input` ([tokens, hidden]).
RouterOp buildRouter(mlir::OpBuilder &builder, LayerOp layer,
                     mlir::Value input);

/// The per-expert capacity of `layer` for `tokens` tokens, when it has a
/// capacity factor; an error on the layer when the token count is dynamic.
mlir::FailureOr<std::optional<int64_t>> layerCapacity(LayerOp layer,
                                                      int64_t tokens);

/// The matrices of the layer's shared experts (null without them).
struct SharedExpertWeights {
  mlir::Value gate, up, down;
};
SharedExpertWeights sharedExpertWeights(LayerOp layer);

/// `routed` plus the layer's shared experts applied to `input`, or `routed`
/// itself when the layer has none. The partitioner passes its slices of the
/// shared experts' matrices as `weights`.
mlir::Value addSharedExperts(mlir::OpBuilder &builder, LayerOp layer,
                             mlir::Value input, mlir::Value routed,
                             const SharedExpertWeights &weights);

} // namespace moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_LAYERPARTS_H
