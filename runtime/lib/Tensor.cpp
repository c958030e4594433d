//===- Tensor.cpp - runtime tensors ---------------------------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

using namespace moe::rt;

namespace {

/// The names of the program format are MLIR's element type spellings, so the
/// tool layer can print them straight from the IR.
struct DTypeInfo {
  DType dtype;
  const char *name;
  size_t size;
};

// In DType order, so that a DType indexes its entry.
constexpr DTypeInfo dtypeInfos[] = {
    {DType::F32, "f32", 4},   {DType::F64, "f64", 8}, {DType::F16, "f16", 2},
    {DType::BF16, "bf16", 2}, {DType::I64, "i64", 8}, {DType::I32, "i32", 4},
    {DType::I16, "i16", 2},   {DType::I8, "i8", 1},   {DType::U8, "ui8", 1},
    {DType::Bool, "i1", 1},
};

const DTypeInfo &infoOf(DType dtype) {
  return dtypeInfos[static_cast<size_t>(dtype)];
}

template <typename To, typename From> To bitCast(From from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

} // namespace

size_t moe::rt::dtypeSize(DType dtype) { return infoOf(dtype).size; }

const char *moe::rt::dtypeName(DType dtype) { return infoOf(dtype).name; }

bool moe::rt::parseDType(const std::string &name, DType &dtype) {
  for (const DTypeInfo &info : dtypeInfos) {
    if (name == info.name) {
      dtype = info.dtype;
      return true;
    }
  }
  return false;
}

int64_t moe::rt::numElements(const Shape &shape) {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

int64_t moe::rt::checkedNumElements(const Shape &shape, int64_t limit) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || (dim != 0 && count > limit / dim))
      return -1;
    count *= dim;
  }
  return count;
}

std::string moe::rt::formatShape(const Shape &shape) {
  if (shape.empty())
    return "scalar";
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      text += 'x';
    text += std::to_string(shape[i]);
  }
  return text;
}

//===----------------------------------------------------------------------===//
// Tensor
//===----------------------------------------------------------------------===//

Tensor::Tensor(DType dtype, Shape shape)
    : dtype_(dtype), shape_(std::move(shape)) {
  // 64-byte alignment suits vector loads and BLAS packing; at least one
  // block so that even an empty tensor has a valid data pointer.
  constexpr size_t alignment = 64;
  size_t bytes = (std::max<size_t>(sizeInBytes(), 1) + alignment - 1) /
                 alignment * alignment;
  void *data = std::aligned_alloc(alignment, bytes);
  // Out of memory: the tensor stays without data, which Executor checks.
  if (!data)
    return;
  std::memset(data, 0, bytes);
  storage_ = std::shared_ptr<void>(data, std::free);
  data_ = data;
}

Tensor::Tensor(DType dtype, Shape shape, void *data,
               std::shared_ptr<void> keepAlive)
    : dtype_(dtype), shape_(std::move(shape)), data_(data),
      storage_(std::move(keepAlive)) {}

Tensor Tensor::reshaped(Shape shape) const {
  Tensor result = *this;
  result.shape_ = std::move(shape);
  return result;
}

//===----------------------------------------------------------------------===//
// Half and bfloat16
//===----------------------------------------------------------------------===//

float moe::rt::halfToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0x1f)
    return bitCast<float>(sign | 0x7f800000 | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return bitCast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t moe::rt::floatToHalf(float value) {
  uint32_t bits = bitCast<uint32_t>(value);
  auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) {
    // NaN: keep the top payload bits and force a quiet NaN.
    return sign | 0x7e00 | ((magnitude >> 13) & 0x3ff);
  }
  // 65520 and above (and infinity) round to infinity.
  if (magnitude >= 0x477ff000)
    return sign | 0x7c00;
  if (magnitude >= 0x38800000) {
    // Normal half: rebias the exponent (127 -> 15) and round the 13 dropped
    // mantissa bits to nearest even; a carry correctly bumps the exponent.
    uint32_t rebased = magnitude - 0x38000000;
    rebased += 0xfff + ((rebased >> 13) & 1);
    return sign | static_cast<uint16_t>(rebased >> 13);
  }
  // 2^-25 and below round to zero (2^-25 itself ties to the even zero).
  if (magnitude <= 0x33000000)
    return sign;
  // Subnormal half: the value in units of 2^-24, rounded to nearest even.
  uint32_t exponent = magnitude >> 23;
  uint32_t mantissa = (magnitude & 0x7fffff) | 0x800000;
  uint32_t shift = 126 - exponent;
  uint32_t result = mantissa >> shift;
  uint32_t remainder = mantissa & ((1u << shift) - 1);
  uint32_t halfway = 1u << (shift - 1);
  if (remainder > halfway || (remainder == halfway && (result & 1)))
    ++result;
  return sign | static_cast<uint16_t>(result);
}

float moe::rt::bfloat16ToFloat(uint16_t bits) {
  return bitCast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t moe::rt::floatToBfloat16(float value) {
  uint32_t bits = bitCast<uint32_t>(value);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

//===----------------------------------------------------------------------===//
// convert
//===----------------------------------------------------------------------===//

namespace {

// Storage types that are not C++ arithmetic types, so that overloads can tell
// a half from an i16 and a bool from a u8.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};
struct Bool {
  uint8_t value;
};

template <typename T>
constexpr bool isFloating =
    std::is_floating_point_v<T> || std::is_same_v<T, Half> ||
    std::is_same_v<T, BFloat16>;

template <typename T> double toDouble(T value) {
  if constexpr (std::is_same_v<T, Half>)
    return halfToFloat(value.bits);
  else if constexpr (std::is_same_v<T, BFloat16>)
    return bfloat16ToFloat(value.bits);
  else if constexpr (std::is_same_v<T, Bool>)
    return value.value;
  else
    return static_cast<double>(value);
}

template <typename T> int64_t toInt64(T value) {
  if constexpr (std::is_same_v<T, Bool>)
    return value.value;
  else
    return static_cast<int64_t>(value);
}

template <typename T> bool isNonZero(T value) {
  if constexpr (isFloating<T>)
    return toDouble(value) != 0.0;
  else
    return toInt64(value) != 0;
}

/// A double as float type `To` (double -> half goes through float, the
/// double rounding that onnxruntime's Cast also does).
template <typename To> To floatFromDouble(double value) {
  if constexpr (std::is_same_v<To, Half>)
    return Half{floatToHalf(static_cast<float>(value))};
  else if constexpr (std::is_same_v<To, BFloat16>)
    return BFloat16{floatToBfloat16(static_cast<float>(value))};
  else
    return static_cast<To>(value);
}

/// A double truncated toward zero into integer type `To`. C++ leaves NaN and
/// out-of-range conversions undefined, so NaN becomes 0 and the rest
/// saturates.
template <typename To> To integerFromDouble(double value) {
  if (std::isnan(value))
    return 0;
  constexpr To lowest = std::numeric_limits<To>::lowest();
  constexpr To highest = std::numeric_limits<To>::max();
  if (value <= static_cast<double>(lowest))
    return lowest;
  if (value >= static_cast<double>(highest))
    return highest;
  return static_cast<To>(value);
}

template <typename To, typename From> To convertElement(From value) {
  if constexpr (std::is_same_v<To, Bool>)
    return Bool{static_cast<uint8_t>(isNonZero(value))};
  else if constexpr (isFloating<To> && isFloating<From>)
    return floatFromDouble<To>(toDouble(value));
  else if constexpr (isFloating<To>)
    return floatFromDouble<To>(static_cast<double>(toInt64(value)));
  else if constexpr (isFloating<From>)
    return integerFromDouble<To>(toDouble(value));
  else
    return static_cast<To>(toInt64(value));
}

template <typename Fn> void visitElementType(DType dtype, Fn &&fn) {
  switch (dtype) {
  case DType::F32:
    return fn(float{});
  case DType::F64:
    return fn(double{});
  case DType::F16:
    return fn(Half{});
  case DType::BF16:
    return fn(BFloat16{});
  case DType::I64:
    return fn(int64_t{});
  case DType::I32:
    return fn(int32_t{});
  case DType::I16:
    return fn(int16_t{});
  case DType::I8:
    return fn(int8_t{});
  case DType::U8:
    return fn(uint8_t{});
  case DType::Bool:
    return fn(Bool{});
  }
}

} // namespace

void moe::rt::convert(const Tensor &from, Tensor &to) {
  // Mismatched counts are the caller's bug; converting only the common
  // prefix keeps it from writing out of bounds.
  int64_t count = std::min(from.numElements(), to.numElements());
  visitElementType(from.dtype(), [&](auto fromTag) {
    using From = decltype(fromTag);
    visitElementType(to.dtype(), [&](auto toTag) {
      using To = decltype(toTag);
      const From *source = static_cast<const From *>(from.data());
      To *target = static_cast<To *>(to.data());
      if constexpr (std::is_same_v<From, To>) {
        std::memcpy(target, source, count * sizeof(To));
      } else {
        for (int64_t i = 0; i < count; ++i)
          target[i] = convertElement<To>(source[i]);
      }
    });
  });
}
