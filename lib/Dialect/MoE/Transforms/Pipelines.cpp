//===- Pipelines.cpp - named pass pipelines of moe-compiler ---------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void moe::buildLowerToRuntimePipeline(OpPassManager &pm) {
  // Raise exported MoE blocks to moe.layer, then decompose every layer: the
  // runtime has kernels for the decomposed parts, which are also the pieces
  // the partitioner distributes.
  pm.addPass(createRaiseLayersPass());
  pm.addPass(createDecomposeLayersPass());
  pm.addPass(createCSEPass());
}

void moe::registerMoEPipelines() {
  PassPipelineRegistration<>(
      "moe-lower-to-runtime",
      "Lowers imported moe IR to what the runtime executes (used by "
      "moe-compile before writing the program).",
      buildLowerToRuntimePipeline);
}
