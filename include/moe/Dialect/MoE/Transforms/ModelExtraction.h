//===- ModelExtraction.h - the planner's view of moe IR ---------*- C++ -*-===//
//
// Part of moe-compiler.
//
// Builds the planner's ModelDescription (include/moe/Plan) from a function
// of moe IR whose MoE blocks are raised to moe.layer: one MoE layer per
// moe.layer, attention sized from the score Softmax ops when there are some,
// the vocabulary from the embedding lookup. Only shapes are read, never
// weight bytes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_MODELEXTRACTION_H
#define MOE_DIALECT_MOE_TRANSFORMS_MODELEXTRACTION_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "moe/Plan/ModelDescription.h"

#include <string>
#include <vector>

namespace moe {

struct ExtractedModel {
  plan::ModelDescription model;
  /// What was assumed where the IR did not say, for the report.
  std::vector<std::string> notes;
};

/// Fails (with a diagnostic on `function`) when the function has no
/// moe.layer or a layer's shapes are not static.
mlir::FailureOr<ExtractedModel> extractModel(mlir::func::FuncOp function);

} // namespace moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_MODELEXTRACTION_H
