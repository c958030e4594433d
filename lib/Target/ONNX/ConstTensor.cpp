//===- ConstTensor.cpp - compile-time tensors of the ONNX importer --------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "ConstTensor.h"

#include "llvm/ADT/APFloat.h"

using namespace mlir;
using namespace moe::onnx_import;

int64_t moe::onnx_import::checkedNumElements(ArrayRef<int64_t> shape,
                                             int64_t limit) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0)
      return -1;
    if (dim != 0 && count > limit / dim)
      return -1;
    count *= dim;
  }
  return count;
}

SmallVector<int64_t> moe::onnx_import::stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

ConstTensor ConstTensor::zeros(ArrayRef<int64_t> shape, Type elementType) {
  ConstTensor result;
  result.shape.assign(shape.begin(), shape.end());
  result.elementType = elementType;
  int64_t count = checkedNumElements(shape);
  if (result.isFloat())
    result.floats.assign(count, 0.0);
  else
    result.ints.assign(count, 0);
  return result;
}

ConstTensor ConstTensor::ofInts(ArrayRef<int64_t> values, Type i64Type) {
  ConstTensor result;
  result.shape = {static_cast<int64_t>(values.size())};
  result.elementType = i64Type;
  result.ints.assign(values.begin(), values.end());
  return result;
}

void ConstTensor::set(int64_t i, double value) {
  if (isFloat()) {
    floats[i] = value;
  } else if (elementType.isInteger(1)) {
    ints[i] = value != 0.0;
  } else {
    ints[i] = static_cast<int64_t>(value);
  }
}

void ConstTensor::setInt(int64_t i, int64_t value) {
  if (isFloat())
    floats[i] = static_cast<double>(value);
  else if (elementType.isInteger(1))
    ints[i] = value != 0;
  else
    ints[i] = value;
}

DenseElementsAttr ConstTensor::toAttr() const {
  RankedTensorType type = getType();
  if (auto floatType = dyn_cast<FloatType>(elementType)) {
    SmallVector<APFloat> values;
    values.reserve(floats.size());
    for (double value : floats) {
      APFloat converted(value);
      bool losesInfo;
      converted.convert(floatType.getFloatSemantics(),
                        APFloat::rmNearestTiesToEven, &losesInfo);
      values.push_back(converted);
    }
    return DenseElementsAttr::get(type, values);
  }
  if (elementType.isInteger(1)) {
    SmallVector<bool> values(ints.begin(), ints.end());
    return DenseElementsAttr::get(type, values);
  }
  unsigned width = elementType.getIntOrFloatBitWidth();
  SmallVector<APInt> values;
  values.reserve(ints.size());
  for (int64_t value : ints)
    values.push_back(APInt(width, static_cast<uint64_t>(value),
                           /*isSigned=*/true, /*implicitTrunc=*/true));
  return DenseElementsAttr::get(type, values);
}
