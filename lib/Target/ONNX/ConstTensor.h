//===- ConstTensor.h - compile-time tensors of the ONNX importer -*- C++
//-*-===//
//
// Part of moe-compiler.
//
// Exporters compute shapes at run time (Shape -> Gather -> Concat -> Reshape)
// even when every dimension is known. The importer evaluates such chains on
// small constant tensors so the imported graph has static shapes and no shape
// arithmetic.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_TARGET_ONNX_CONSTTENSOR_H
#define MOE_LIB_TARGET_ONNX_CONSTTENSOR_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/SmallVector.h"

#include <vector>

namespace moe::onnx_import {

/// A small tensor known while importing. Integer and bool elements live in
/// `ints`, floating-point elements in `floats` (as doubles).
struct ConstTensor {
  llvm::SmallVector<int64_t> shape;
  mlir::Type elementType;
  std::vector<int64_t> ints;
  std::vector<double> floats;

  bool isFloat() const { return llvm::isa<mlir::FloatType>(elementType); }
  int64_t numElements() const {
    return isFloat() ? static_cast<int64_t>(floats.size())
                     : static_cast<int64_t>(ints.size());
  }
  double asDouble(int64_t i) const {
    return isFloat() ? floats[i] : static_cast<double>(ints[i]);
  }
  int64_t asInt(int64_t i) const {
    return isFloat() ? static_cast<int64_t>(floats[i]) : ints[i];
  }

  /// A tensor of `shape` and `elementType` with zeroed elements.
  static ConstTensor zeros(llvm::ArrayRef<int64_t> shape,
                           mlir::Type elementType);
  /// A 1-D i64 tensor.
  static ConstTensor ofInts(llvm::ArrayRef<int64_t> values, mlir::Type i64Type);

  /// Sets element `i` from a double, converting to the element type
  /// (truncating toward zero for integers, 0/1 for bools).
  void set(int64_t i, double value);
  void setInt(int64_t i, int64_t value);

  mlir::RankedTensorType getType() const {
    return mlir::RankedTensorType::get(shape, elementType);
  }
  mlir::DenseElementsAttr toAttr() const;
};

/// Number of elements of `shape`, or -1 when a dimension is negative or the
/// product exceeds `limit`.
int64_t checkedNumElements(llvm::ArrayRef<int64_t> shape,
                           int64_t limit = int64_t(1) << 40);

/// Row-major strides of `shape`.
llvm::SmallVector<int64_t> stridesOf(llvm::ArrayRef<int64_t> shape);

} // namespace moe::onnx_import

#endif // MOE_LIB_TARGET_ONNX_CONSTTENSOR_H
