//===- Tensor.h - runtime tensors -------------------------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// A Tensor is a dense row-major array with an element type and a shape. It
// either owns its bytes or views bytes owned elsewhere (a memory-mapped weight
// file); kernels do not care which.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_TENSOR_H
#define MOE_RUNTIME_TENSOR_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moe::rt {

/// Element types. Kernels compute in F32 (floats) and I64 (indices); Bool is
/// one byte per element (0 or 1), as in ONNX. F16, BF16 and the integer types
/// appear in weights and inputs and are converted by `convert`.
enum class DType : uint8_t { F32, F64, F16, BF16, I64, I32, I16, I8, U8, Bool };

/// Bytes per element.
size_t dtypeSize(DType dtype);
/// "f32", "i64", ... (the names the program format uses).
const char *dtypeName(DType dtype);
/// Parses a dtype name; returns false for unknown names.
bool parseDType(const std::string &name, DType &dtype);

using Shape = std::vector<int64_t>;

/// Number of elements of `shape` (1 for a scalar).
int64_t numElements(const Shape &shape);
/// The same for a shape read from a file: -1 when a dimension is negative
/// or the count overflows or exceeds `limit`.
int64_t checkedNumElements(const Shape &shape, int64_t limit);
/// "2x3x4", or "scalar".
std::string formatShape(const Shape &shape);

class Tensor {
public:
  Tensor() = default;
  /// An owning, zero-initialised tensor.
  Tensor(DType dtype, Shape shape);
  /// A view of `data` kept alive by `keepAlive` (for example a mapping).
  Tensor(DType dtype, Shape shape, void *data, std::shared_ptr<void> keepAlive);

  DType dtype() const { return dtype_; }
  const Shape &shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const { return shape_[i]; }
  int64_t numElements() const { return moe::rt::numElements(shape_); }
  size_t sizeInBytes() const { return numElements() * dtypeSize(dtype_); }

  void *data() { return data_; }
  const void *data() const { return data_; }
  template <typename T> T *as() { return static_cast<T *>(data_); }
  template <typename T> const T *as() const {
    return static_cast<const T *>(data_);
  }

  /// The same bytes with another shape of the same element count.
  Tensor reshaped(Shape shape) const;

private:
  DType dtype_ = DType::F32;
  Shape shape_;
  void *data_ = nullptr;
  std::shared_ptr<void> storage_;
};

/// Converts every element of `from` into `to`, which must have the same
/// element count (float <-> float rounds to nearest even, float -> int
/// truncates toward zero, anything -> Bool compares with zero).
void convert(const Tensor &from, Tensor &to);

/// IEEE half and bfloat16 conversions.
float halfToFloat(uint16_t bits);
uint16_t floatToHalf(float value);
float bfloat16ToFloat(uint16_t bits);
uint16_t floatToBfloat16(float value);

} // namespace moe::rt

#endif // MOE_RUNTIME_TENSOR_H
