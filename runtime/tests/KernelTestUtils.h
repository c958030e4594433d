//===- KernelTestUtils.h - helpers for the kernel unit tests ----*- C++ -*-===//
//
// Part of moe-compiler's runtime tests.
//
// Building tensors from literals, attributes in one expression, running a
// kernel by name, and comparing results with a tolerance.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_TESTS_KERNELTESTUTILS_H
#define MOE_RUNTIME_TESTS_KERNELTESTUTILS_H

#include "moe/Runtime/Kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace moe::rt::test {

/// A tensor of `dtype` and `shape` holding `values` (of the storage type).
template <typename T>
Tensor makeTensor(DType dtype, const Shape &shape,
                  const std::vector<T> &values) {
  Tensor tensor(dtype, shape);
  EXPECT_EQ(static_cast<int64_t>(values.size()), tensor.numElements())
      << "literal for a " << formatShape(shape) << " tensor";
  std::copy_n(values.begin(),
              std::min<size_t>(values.size(), tensor.numElements()),
              tensor.as<T>());
  return tensor;
}

inline Tensor f32(const Shape &shape, const std::vector<float> &values) {
  return makeTensor(DType::F32, shape, values);
}

inline Tensor i64(const Shape &shape, const std::vector<int64_t> &values) {
  return makeTensor(DType::I64, shape, values);
}

inline Tensor i1(const Shape &shape, const std::vector<uint8_t> &values) {
  return makeTensor(DType::Bool, shape, values);
}

/// The elements of `tensor` as its storage type T.
template <typename T> std::vector<T> contents(const Tensor &tensor) {
  return std::vector<T>(tensor.as<T>(), tensor.as<T>() + tensor.numElements());
}

/// Attributes built in one expression:
/// `Attrs().integer("axis", 1).string("kind", "sum")`.
struct Attrs : Attributes {
  Attrs &integer(const std::string &name, int64_t value) {
    ints[name] = value;
    return *this;
  }
  Attrs &real(const std::string &name, double value) {
    floats[name] = value;
    return *this;
  }
  Attrs &string(const std::string &name, const std::string &value) {
    strings[name] = value;
    return *this;
  }
  Attrs &array(const std::string &name, const std::vector<int64_t> &value) {
    arrays[name] = value;
    return *this;
  }
};

/// Runs the registered kernel of `op`.
inline Status runKernel(const std::string &op, const Attributes &attrs,
                        const std::vector<const Tensor *> &inputs,
                        const std::vector<Tensor *> &outputs) {
  KernelFn kernel = findKernel(op);
  if (!kernel)
    return Status::error("no kernel named " + op);
  KernelContext context;
  return kernel(attrs, inputs, outputs, context);
}

/// For ASSERT_TRUE / EXPECT_TRUE: success, or the error message.
inline ::testing::AssertionResult succeeds(const Status &status) {
  if (status)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status.message;
}

/// For EXPECT_TRUE: an error whose message contains `text`.
inline ::testing::AssertionResult failsWith(const Status &status,
                                            const std::string &text) {
  if (status)
    return ::testing::AssertionFailure() << "succeeded; expected an error";
  if (status.message.find(text) == std::string::npos)
    return ::testing::AssertionFailure()
           << "error '" << status.message << "' does not mention '" << text
           << "'";
  return ::testing::AssertionSuccess();
}

/// Checks an f32 tensor against `expected` element by element, within
/// `tolerance` relative to max(1, |expected|); NaN matches NaN and
/// infinities must be exact.
inline void expectValues(const Tensor &actual,
                         const std::vector<float> &expected,
                         float tolerance = 1e-5f) {
  ASSERT_EQ(actual.dtype(), DType::F32);
  ASSERT_EQ(actual.numElements(), static_cast<int64_t>(expected.size()));
  const float *values = actual.as<float>();
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(values[i])) << "element " << i;
      continue;
    }
    if (std::isinf(expected[i])) {
      EXPECT_EQ(values[i], expected[i]) << "element " << i;
      continue;
    }
    float bound = tolerance * std::max(1.0f, std::fabs(expected[i]));
    EXPECT_NEAR(values[i], expected[i], bound) << "element " << i;
  }
}

} // namespace moe::rt::test

#endif // MOE_RUNTIME_TESTS_KERNELTESTUTILS_H
