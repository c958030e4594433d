//===- ONNXImporter.h - ONNX model to moe dialect ---------------*- C++ -*-===//
//
// Part of moe-compiler.
//
// Imports an ONNX model file into a module of the moe dialect: one func.func
// named after the graph, graph-level ops with ONNX semantics, initializers as
// moe.weight declarations that reference their bytes (in the .onnx file or its
// external data files) without copying them, and com.microsoft.MoE nodes as
// moe.layer. The file is untrusted input: every problem is reported as an
// error diagnostic that names the file and the offending node, initializer or
// input, and no module is returned.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_ONNX_ONNXIMPORTER_H
#define MOE_TARGET_ONNX_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/CommandLine.h"

namespace moe {

struct ONNXImportOptions {
  /// Values for symbolic dimensions (`dim_param`) of graph inputs, by name,
  /// e.g. {"batch": 1, "sequence": 128}.
  llvm::StringMap<int64_t> dimParams;
  /// Whole shapes for graph inputs, by input name; they override the model's
  /// declared shape and must have its rank.
  llvm::StringMap<llvm::SmallVector<int64_t>> inputShapes;
  /// Integer initializers with at most this many elements become
  /// arith.constant (shape constants); larger ones, and every float tensor
  /// with more than one element, stay moe.weight references.
  int64_t maxInlineElements = 64;
};

/// Parses "name=value,name=value" into `options.dimParams`. Returns an error
/// message, or an empty string on success.
std::string parseDimParams(llvm::StringRef text, ONNXImportOptions &options);

/// Parses "input=1x128,other=4x16x64" into `options.inputShapes`. Returns an
/// error message, or an empty string on success.
std::string parseInputShapes(llvm::StringRef text, ONNXImportOptions &options);

/// The --dim-params and --shape flags of every tool that imports ONNX.
/// Construct one at file scope, before the command line is parsed.
class ONNXImportFlags {
public:
  explicit ONNXImportFlags(llvm::cl::OptionCategory &category);
  /// Puts the flags' values into `options`; returns an error message, or an
  /// empty string on success.
  std::string apply(ONNXImportOptions &options) const;

private:
  llvm::cl::opt<std::string> dimParams;
  llvm::cl::opt<std::string> inputShapes;
};

/// Imports the ONNX model at `path`. Emits diagnostics on `context` and
/// returns null on any error.
mlir::OwningOpRef<mlir::ModuleOp>
importONNXFile(llvm::StringRef path, mlir::MLIRContext &context,
               const ONNXImportOptions &options = {});

/// Registers the dialects an imported module uses.
void registerONNXImportDialects(mlir::DialectRegistry &registry);

} // namespace moe

#endif // MOE_TARGET_ONNX_ONNXIMPORTER_H
