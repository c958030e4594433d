//===- TensorProto.h - ONNX TensorProto files -------------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR, LLVM or protobuf
// dependency.
//
// Reads the tensors of ONNX test data sets (test_data_set_N/input_K.pb),
// which are serialized onnx.TensorProto messages, with a small bounds-checked
// reader of the protobuf wire format.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_TENSORPROTO_H
#define MOE_RUNTIME_TENSORPROTO_H

#include "moe/Runtime/Kernels.h"
#include "moe/Runtime/Tensor.h"

#include <string>
#include <vector>

namespace moe::rt {

/// Reads one serialized onnx.TensorProto (raw_data or the typed fields of
/// float, double, int32, int64 and bool tensors).
Status readTensorProto(const std::string &path, Tensor &tensor);

/// The files `prefix`_0.pb, `prefix`_1.pb, ... of `directory`, in order.
std::vector<std::string> listTestDataFiles(const std::string &directory,
                                           const std::string &prefix);

} // namespace moe::rt

#endif // MOE_RUNTIME_TENSORPROTO_H
