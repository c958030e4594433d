//===- Npy.h - numpy .npy files ---------------------------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Reads and writes version 1.0 / 2.0 .npy files (little-endian, C order) of
// the runtime's element types, so moe-run exchanges tensors with numpy.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_NPY_H
#define MOE_RUNTIME_NPY_H

#include "moe/Runtime/Kernels.h"
#include "moe/Runtime/Tensor.h"

#include <string>

namespace moe::rt {

/// Reads `path`; errors name the file and what is wrong with it.
Status readNpy(const std::string &path, Tensor &tensor);

/// Writes `tensor` to `path` through a temporary file renamed at the end, so
/// a failure leaves no partial file.
Status writeNpy(const std::string &path, const Tensor &tensor);

} // namespace moe::rt

#endif // MOE_RUNTIME_NPY_H
