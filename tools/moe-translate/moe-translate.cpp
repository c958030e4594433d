//===- moe-translate.cpp - moe-compiler format translations ---------------===//
//
// Part of moe-compiler.
//
// Translates between external model formats and moe IR. Today: ONNX import.
//
//===----------------------------------------------------------------------===//

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "moe/Target/ONNX/ONNXImporter.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;

namespace {

llvm::cl::OptionCategory category("moe-translate options");

llvm::cl::opt<std::string> inputFile(llvm::cl::Positional,
                                     llvm::cl::desc("<model.onnx>"),
                                     llvm::cl::Required,
                                     llvm::cl::cat(category));

llvm::cl::opt<std::string> outputFile("o", llvm::cl::desc("Output file"),
                                      llvm::cl::value_desc("filename"),
                                      llvm::cl::init("-"),
                                      llvm::cl::cat(category));

llvm::cl::opt<bool>
    importONNX("import-onnx",
               llvm::cl::desc("Import an ONNX model into the moe dialect"),
               llvm::cl::cat(category));

moe::ONNXImportFlags importFlags(category);

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  llvm::cl::HideUnrelatedOptions(category);
  llvm::cl::ParseCommandLineOptions(
      argc, argv,
      "moe-translate: translate models into moe IR\n\n"
      "  moe-translate --import-onnx model.onnx -o model.mlir\n"
      "  moe-translate --import-onnx model.onnx "
      "--dim-params=batch=1,seq=128\n\n"
      "Weights are not copied: the IR refers to their bytes in the .onnx\n"
      "file or its external data files, so keep those next to the model.\n");

  if (!importONNX) {
    llvm::errs() << "moe-translate: choose a translation (--import-onnx)\n";
    return 1;
  }
  moe::ONNXImportOptions options;
  std::string error = importFlags.apply(options);
  if (!error.empty()) {
    llvm::errs() << "moe-translate: " << error << "\n";
    return 1;
  }

  DialectRegistry registry;
  moe::registerONNXImportDialects(registry);
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module =
      moe::importONNXFile(inputFile, context, options);
  if (!module)
    return 1;

  // Write to a temporary file that replaces the output only on success, so a
  // failure never leaves a partial file behind.
  auto output = openOutputFile(outputFile, &error);
  if (!output) {
    llvm::errs() << "moe-translate: " << error << "\n";
    return 1;
  }
  module->print(output->os());
  output->os() << "\n";
  output->keep();
  return 0;
}
