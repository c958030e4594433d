//===- moe-compile.cpp - ONNX model to runnable program -------------------===//
//
// Part of moe-compiler.
//
// The one-command driver, like iree-compile: imports an ONNX model, runs the
// lowering pipeline (moe-lower-to-runtime, which moe-opt also exposes) and
// writes the program moe-run executes. Pass-manager debugging flags such as
// --mlir-print-ir-after-all pass through.
//
//===----------------------------------------------------------------------===//

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"
#include "moe/Target/ONNX/ONNXImporter.h"
#include "moe/Target/Runtime/ProgramExport.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;

namespace {

enum class Target { CPU };
enum class Emit { Program, MLIR };

llvm::cl::OptionCategory category("moe-compile options");

llvm::cl::opt<std::string> inputFile(llvm::cl::Positional,
                                     llvm::cl::desc("<model.onnx>"),
                                     llvm::cl::Required,
                                     llvm::cl::cat(category));
llvm::cl::opt<std::string>
    outputFile("o", llvm::cl::desc("Output program (default: model.moe)"),
               llvm::cl::value_desc("filename"), llvm::cl::cat(category));
llvm::cl::opt<Target> target(
    "target", llvm::cl::desc("Where the program runs"),
    llvm::cl::values(clEnumValN(Target::CPU, "cpu", "CPU ranks (default)")),
    llvm::cl::init(Target::CPU), llvm::cl::cat(category));
llvm::cl::opt<Emit>
    emit("emit", llvm::cl::desc("What to write"),
         llvm::cl::values(clEnumValN(Emit::Program, "program",
                                     "the runtime program (default)"),
                          clEnumValN(Emit::MLIR, "mlir", "the lowered moe IR")),
         llvm::cl::init(Emit::Program), llvm::cl::cat(category));
llvm::cl::opt<std::string>
    dimParams("dim-params",
              llvm::cl::desc("Values for symbolic input dimensions, e.g. "
                             "--dim-params=batch=1,sequence=128"),
              llvm::cl::value_desc("name=N,..."), llvm::cl::cat(category));
llvm::cl::opt<std::string> inputShapes(
    "shape",
    llvm::cl::desc("Shapes for graph inputs, e.g. --shape=input_ids=1x128"),
    llvm::cl::value_desc("input=DxD...,..."), llvm::cl::cat(category));

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  llvm::cl::ParseCommandLineOptions(
      argc, argv,
      "moe-compile: compile an ONNX Mixture-of-Experts model for moe-run\n\n"
      "  moe-compile model.onnx -o model.moe\n"
      "  moe-compile model.onnx --dim-params=batch=1,seq=128 -o model.moe\n"
      "  moe-compile model.onnx --emit=mlir --mlir-print-ir-after-all\n\n"
      "The program refers to the model's weight bytes; keep the .onnx file\n"
      "(and its external data) where it is, or recompile after moving it.\n");

  moe::ONNXImportOptions options;
  std::string error = moe::parseDimParams(dimParams, options);
  if (error.empty())
    error = moe::parseInputShapes(inputShapes, options);
  if (!error.empty()) {
    llvm::errs() << "moe-compile: " << error << "\n";
    return 1;
  }
  std::string output = outputFile;
  if (output.empty()) {
    llvm::SmallString<256> path(inputFile);
    llvm::sys::path::replace_extension(path,
                                       emit == Emit::MLIR ? "mlir" : "moe");
    output = path.str().str();
  }

  DialectRegistry registry;
  moe::registerONNXImportDialects(registry);
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);

  llvm::errs() << "moe-compile: importing " << inputFile << "\n";
  OwningOpRef<ModuleOp> module =
      moe::importONNXFile(inputFile, context, options);
  if (!module)
    return 1;
  PassManager pm(&context);
  if (failed(applyPassManagerCLOptions(pm)))
    return 1;
  moe::buildLowerToRuntimePipeline(pm);
  llvm::errs() << "moe-compile: lowering for target cpu\n";
  if (failed(pm.run(*module)))
    return 1;

  std::string text;
  llvm::raw_string_ostream os(text);
  if (emit == Emit::MLIR) {
    module->print(os);
    os << "\n";
  } else {
    auto functions = module->getOps<func::FuncOp>();
    if (std::distance(functions.begin(), functions.end()) != 1) {
      llvm::errs() << "moe-compile: expected one function after import\n";
      return 1;
    }
    llvm::SmallString<256> modelDir(inputFile), outputDir(output);
    llvm::sys::path::remove_filename(modelDir);
    llvm::sys::path::remove_filename(outputDir);
    std::string weightsDir =
        moe::relativeDirectory(outputDir.empty() ? "." : outputDir.str(),
                               modelDir.empty() ? "." : modelDir.str());
    moe::rt::Program program;
    if (failed(moe::exportProgram(*functions.begin(), weightsDir, program)))
      return 1;
    os << moe::rt::printProgram(program);
    llvm::errs() << "moe-compile: " << program.operations.size()
                 << " operations, " << program.weights.size() << " weights\n";
  }
  // The output appears only when everything succeeded.
  auto file = openOutputFile(output, &error);
  if (!file) {
    llvm::errs() << "moe-compile: " << error << "\n";
    return 1;
  }
  file->os() << text;
  file->keep();
  llvm::errs() << "moe-compile: wrote " << output << "\n";
  return 0;
}
