//===- moe-opt.cpp - moe-compiler optimizer driver ------------------------===//
//
// Part of moe-compiler.
//
// The mlir-opt of this project: parses moe IR (with the upstream dialects the
// project uses), runs passes and prints the result. It also takes an .onnx
// model as input, imported as moe-translate --import-onnx would.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "moe/Dialect/MoE/IR/MoEDialect.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"
#include "moe/Target/ONNX/ONNXImporter.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

static moe::ONNXImportFlags importFlags(llvm::cl::getGeneralCategory());

/// Imports the ONNX model `input` and runs the mlir-opt driver on it.
static mlir::LogicalResult optimizeONNX(const std::string &input,
                                        const std::string &output,
                                        mlir::DialectRegistry &registry) {
  moe::ONNXImportOptions options;
  std::string error = importFlags.apply(options);
  if (!error.empty()) {
    llvm::errs() << "moe-opt: " << error << "\n";
    return mlir::failure();
  }
  std::string text;
  {
    mlir::MLIRContext context(registry);
    llvm::SourceMgr sourceMgr;
    mlir::SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
    mlir::OwningOpRef<mlir::ModuleOp> module =
        moe::importONNXFile(input, context, options);
    if (!module)
      return mlir::failure();
    llvm::raw_string_ostream os(text);
    module->print(os);
  }
  auto file = mlir::openOutputFile(output, &error);
  if (!file) {
    llvm::errs() << "moe-opt: " << error << "\n";
    return mlir::failure();
  }
  if (mlir::failed(mlir::MlirOptMain(
          file->os(), llvm::MemoryBuffer::getMemBufferCopy(text, input),
          registry, mlir::MlirOptMainConfig::createFromCLOptions())))
    return mlir::failure();
  file->keep();
  return mlir::success();
}

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
  auto [input, output] = mlir::registerAndParseCLIOptions(
      argc, argv,
      "moe-compiler optimizer: moe dialect passes and pipelines; takes moe "
      "IR or an .onnx model\n",
      registry);
  if (llvm::StringRef(input).ends_with(".onnx"))
    return mlir::asMainReturnCode(optimizeONNX(input, output, registry));
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, input, output, registry));
}
