//===- Passes.h - moe dialect passes ----------------------------*- C++ -*-===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_H
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "moe/Dialect/MoE/IR/MoEDialect.h"

namespace moe {

#define GEN_PASS_DECL
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"

/// Adds the passes that take imported moe IR to what the runtime executes.
void buildLowerToRuntimePipeline(mlir::OpPassManager &pm);

/// Whether moe-lower-elementwise-to-linalg rewrites `op` (its kind, types
/// and axes are ones the GPU kernel path generates code for).
bool lowersToLinalg(mlir::Operation *op);

/// Registers the named pipelines (moe-lower-to-runtime).
void registerMoEPipelines();

} // namespace moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_H
