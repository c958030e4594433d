//===- KernelSupport.h - helpers shared by the CPU kernels ------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Private to runtime/lib. Operand and attribute checks that give every kernel
// the same error messages ("gather: index 7 is out of range ..."), numpy
// broadcasting, i64/i32 index access, the activation functions that the
// element-wise and MoE kernels share, and the row-major sgemm wrapper.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_LIB_KERNELSUPPORT_H
#define MOE_RUNTIME_LIB_KERNELSUPPORT_H

#include "moe/Runtime/Kernels.h"

#include <array>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <sstream>

namespace moe::rt::detail {

//===----------------------------------------------------------------------===//
// Registration
//===----------------------------------------------------------------------===//

using KernelTable = std::map<std::string, KernelFn>;

/// Each kernel file adds its kernels to the registry of Kernels.cpp.
void addElementwiseKernels(KernelTable &table);
void addLinalgKernels(KernelTable &table);
void addShapeKernels(KernelTable &table);
void addMoEKernels(KernelTable &table);
void addCollectiveKernels(KernelTable &table);

//===----------------------------------------------------------------------===//
// Errors and checks
//===----------------------------------------------------------------------===//

/// An error "<op>: <parts...>".
template <typename... Parts>
Status fail(const std::string &op, const Parts &...parts) {
  std::ostringstream os;
  os << op << ": ";
  (os << ... << parts);
  return Status::error(os.str());
}

/// Operand `index`, or nullptr when it is absent (an optional operand passed
/// as nullptr or left off the end of `inputs`).
inline const Tensor *operand(const std::vector<const Tensor *> &inputs,
                             size_t index) {
  return index < inputs.size() ? inputs[index] : nullptr;
}

/// Checks a call against the operation's signature: `operandNames` lists the
/// declared operands in order, a trailing '?' marking optional ones; every
/// non-optional operand must be present, and exactly `numResults` non-null
/// outputs must be given.
Status checkCall(const std::string &op,
                 const std::vector<const Tensor *> &inputs,
                 std::initializer_list<const char *> operandNames,
                 const std::vector<Tensor *> &outputs, size_t numResults);

Status expectDType(const std::string &op, const std::string &name,
                   const Tensor &tensor, DType dtype);
Status expectShape(const std::string &op, const std::string &name,
                   const Tensor &tensor, const Shape &shape);
/// Index operands may be i64 or i32, as ONNX allows.
Status expectIndexDType(const std::string &op, const std::string &name,
                        const Tensor &tensor);

/// Resolves an ONNX axis (negative counts from the back) against `rank`.
Status resolveAxis(const std::string &op, int64_t axis, int64_t rank,
                   int64_t &resolved);

/// Attributes the operation declares without a default.
Status requireInt(const std::string &op, const Attributes &attrs,
                  const std::string &name, int64_t &value);
Status requireFloat(const std::string &op, const Attributes &attrs,
                    const std::string &name, double &value);
Status requireString(const std::string &op, const Attributes &attrs,
                     const std::string &name, std::string &value);
Status requireArray(const std::string &op, const Attributes &attrs,
                    const std::string &name, std::vector<int64_t> &value);

//===----------------------------------------------------------------------===//
// Index tensors
//===----------------------------------------------------------------------===//

/// Element `i` of an i64 or i32 tensor.
inline int64_t loadIndex(const Tensor &tensor, int64_t i) {
  return tensor.dtype() == DType::I64 ? tensor.as<int64_t>()[i]
                                      : tensor.as<int32_t>()[i];
}

/// Stores into an i64 or i32 tensor (values fit: they are indices or counts
/// bounded by a dimension of another tensor).
inline void storeIndex(Tensor &tensor, int64_t i, int64_t value) {
  if (tensor.dtype() == DType::I64)
    tensor.as<int64_t>()[i] = value;
  else
    tensor.as<int32_t>()[i] = static_cast<int32_t>(value);
}

//===----------------------------------------------------------------------===//
// Shapes and iteration
//===----------------------------------------------------------------------===//

/// Row-major element strides of `shape`.
std::vector<int64_t> contiguousStrides(const Shape &shape);

/// ONNX Slice on one dimension: the first element and the element count of
/// `start, start + step, ...` before `end`. Negative bounds count from the
/// back, then clamp to [0, dim] (positive steps) or [-1, dim - 1] (negative
/// steps). Ends near INT64_MIN mean "before the first element" and must not
/// wrap; steps may be as large as INT64_MAX in magnitude.
void sliceDim(int64_t dim, int64_t start, int64_t end, int64_t step,
              int64_t &first, int64_t &count);

/// The numpy broadcast of `lhs` and `rhs`; false when they do not broadcast.
bool broadcastShapes(const Shape &lhs, const Shape &rhs, Shape &result);

/// Element strides for reading a tensor of shape `operand` at the indices of
/// the (larger) shape `shape` it broadcasts to: 0 along stretched and missing
/// dimensions.
std::vector<int64_t> broadcastStrides(const Shape &operand, const Shape &shape);

/// Calls `body(linear, offsets)` for every element of `shape` in row-major
/// order, where `linear` is the element's row-major position and
/// `offsets[n]` its offset under `strides[n]`. The innermost dimension runs
/// as a plain loop, so per-element overhead is an addition per operand.
template <size_t N, typename Body>
void forEachElement(const Shape &shape,
                    const std::array<std::vector<int64_t>, N> &strides,
                    Body &&body) {
  int64_t count = numElements(shape);
  std::array<int64_t, N> offsets{};
  if (count == 0)
    return;
  int64_t rank = static_cast<int64_t>(shape.size());
  if (rank == 0) {
    body(int64_t{0}, offsets);
    return;
  }
  int64_t inner = shape[rank - 1];
  std::array<int64_t, N> innerStrides;
  for (size_t n = 0; n < N; ++n)
    innerStrides[n] = strides[n][rank - 1];
  std::vector<int64_t> counter(rank, 0);
  for (int64_t start = 0; start < count; start += inner) {
    std::array<int64_t, N> current = offsets;
    for (int64_t i = 0; i < inner; ++i) {
      body(start + i, current);
      for (size_t n = 0; n < N; ++n)
        current[n] += innerStrides[n];
    }
    for (int64_t d = rank - 2; d >= 0; --d) {
      for (size_t n = 0; n < N; ++n)
        offsets[n] += strides[n][d];
      if (++counter[d] < shape[d])
        break;
      for (size_t n = 0; n < N; ++n)
        offsets[n] -= strides[n][d] * shape[d];
      counter[d] = 0;
    }
  }
}

/// Calls `fn(T{})` with an unsigned integer type of `size` bytes (1, 2, 4 or
/// 8, which covers every DType), for kernels that move elements without
/// looking at them.
template <typename Fn> void visitStorageType(size_t size, Fn &&fn) {
  switch (size) {
  case 1:
    return fn(uint8_t{});
  case 2:
    return fn(uint16_t{});
  case 4:
    return fn(uint32_t{});
  default:
    return fn(uint64_t{});
  }
}

//===----------------------------------------------------------------------===//
// Activations and matrix products
//===----------------------------------------------------------------------===//

inline float sigmoid(float x) {
  // Two forms so that exp never overflows.
  if (x >= 0.0f)
    return 1.0f / (1.0f + std::exp(-x));
  float e = std::exp(x);
  return e / (1.0f + e);
}

inline float silu(float x) { return x * sigmoid(x); }

inline float geluErf(float x) {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}

inline float geluTanh(float x) {
  constexpr float sqrtTwoOverPi = 0.79788456080286536f;
  return 0.5f * x *
         (1.0f + std::tanh(sqrtTwoOverPi * (x + 0.044715f * x * x * x)));
}

/// C = alpha * op(A) * op(B) + beta * C on row-major matrices through
/// OpenBLAS, where op(A) is m x k and op(B) is k x n. Empty products are
/// handled here (BLAS rejects zero leading dimensions); a dimension beyond
/// BLAS's 32-bit range is an error.
Status sgemm(const std::string &op, bool transA, bool transB, int64_t m,
             int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/// Orders the (token, slot) pairs of `selected` ([tokens, top_k], flat) by
/// expert, stably (a counting sort): `sources[r]` is the pair of row r, -1
/// for capacity padding. With capacity >= 0 expert e owns rows
/// [e*C, (e+1)*C) and keeps its earliest pairs. The CPU dispatch kernel and
/// the CUDA backend share it, so both order rows alike.
Status planDispatch(const char *op, const std::vector<int64_t> &selected,
                    int64_t numExperts, int64_t capacity,
                    std::vector<int64_t> &counts,
                    std::vector<int64_t> &sources);

} // namespace moe::rt::detail

#endif // MOE_RUNTIME_LIB_KERNELSUPPORT_H
