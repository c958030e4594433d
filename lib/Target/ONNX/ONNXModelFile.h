//===- ONNXModelFile.h - reading untrusted ONNX files -----------*- C++ -*-===//
//
// Part of moe-compiler.
//
// Loads an ONNX protobuf and locates the bytes of every initializer without
// copying them: the offset of `raw_data` (or packed `float_data` /
// `double_data`) inside the .onnx file, or a validated range of an external
// data file. The importer references those ranges from moe.weight ops.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_TARGET_ONNX_ONNXMODELFILE_H
#define MOE_LIB_TARGET_ONNX_ONNXMODELFILE_H

#include "mlir/IR/Types.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <onnx/onnx_pb.h>

#include <memory>
#include <optional>
#include <string>

namespace moe::onnx_import {

/// Where the bytes of one initializer live.
struct TensorBytes {
  /// File relative to the model directory: the model file itself for data
  /// inside the protobuf, or the external data location.
  std::string file;
  int64_t offset = 0;
  int64_t length = 0;
};

/// A parsed, size-checked ONNX model file.
struct ModelFile {
  std::string path;
  /// Directory of `path`; external data paths are relative to it.
  std::string directory;
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  onnx::ModelProto model;
  /// Byte ranges of the protobuf fields that hold initializer data, by
  /// initializer index in graph().initializer().
  std::vector<std::optional<TensorBytes>> inlineBytes;
};

/// Reads and parses `path`. Errors name the file and what is wrong.
llvm::Expected<std::unique_ptr<ModelFile>> loadModelFile(llvm::StringRef path);

/// The MLIR element type of an ONNX TensorProto data type, or null for types
/// the compiler does not handle (strings, complex).
mlir::Type convertDataType(int32_t dataType, mlir::MLIRContext &context);

/// The ONNX name of a TensorProto data type, for messages.
llvm::StringRef dataTypeName(int32_t dataType);

/// Validates the external data reference of initializer `tensor` (GUIDE
/// section 7: relative path, no `..`, no symlinks or hardlinks, contained in
/// the model directory, offset + length within the file, length equal to
/// `expectedBytes`) and returns its byte range.
llvm::Expected<TensorBytes> resolveExternalData(const ModelFile &file,
                                                const onnx::TensorProto &tensor,
                                                int64_t expectedBytes);

} // namespace moe::onnx_import

#endif // MOE_LIB_TARGET_ONNX_ONNXMODELFILE_H
