//===- moe-opt.cpp - moe-compiler optimizer driver ------------------------===//
//
// Part of moe-compiler.
//
// The mlir-opt of this project: parses moe IR (with the upstream dialects the
// project uses), runs passes and prints the result.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "moe/Dialect/MoE/IR/MoEDialect.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

int main(int argc, char **argv) {
  moe::registerMoEPasses();
  moe::registerMoEPipelines();
  // Generic cleanups users reach for between project passes.
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::registerSymbolDCEPass();

  mlir::DialectRegistry registry;
  registry.insert<moe::MoEDialect, mlir::arith::ArithDialect,
                  mlir::func::FuncDialect, mlir::shard::ShardDialect,
                  mlir::tensor::TensorDialect>();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moe-compiler optimizer: moe dialect passes and pipelines\n",
      registry));
}
