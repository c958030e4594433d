//===- ElementwiseKernels.cpp - element-wise kernels ----------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Unary math and activations, binary arithmetic, compare and where with numpy
// broadcasting, and cast. Floats compute in f32 and integers in i64; integer
// arithmetic wraps on overflow (as two's complement hardware does) instead of
// being undefined, and an integer division by zero is an error.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"

using namespace moe::rt;
using namespace moe::rt::detail;

namespace {

//===----------------------------------------------------------------------===//
// Unary
//===----------------------------------------------------------------------===//

// Each unary operation is a type with its name, whether it accepts i64 as
// well as f32, and `apply`.

struct NegOp {
  static constexpr const char *name = "neg";
  static constexpr bool acceptsIntegers = true;
  static float apply(float x) { return -x; }
  static int64_t apply(int64_t x) {
    return static_cast<int64_t>(0 - static_cast<uint64_t>(x));
  }
};

struct AbsOp {
  static constexpr const char *name = "abs";
  static constexpr bool acceptsIntegers = true;
  static float apply(float x) { return std::fabs(x); }
  static int64_t apply(int64_t x) { return x < 0 ? NegOp::apply(x) : x; }
};

struct ExpOp {
  static constexpr const char *name = "exp";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::exp(x); }
};

struct LogOp {
  static constexpr const char *name = "log";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::log(x); }
};

struct SqrtOp {
  static constexpr const char *name = "sqrt";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::sqrt(x); }
};

struct ReciprocalOp {
  static constexpr const char *name = "reciprocal";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return 1.0f / x; }
};

struct TanhOp {
  static constexpr const char *name = "tanh";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::tanh(x); }
};

struct CosOp {
  static constexpr const char *name = "cos";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::cos(x); }
};

struct SinOp {
  static constexpr const char *name = "sin";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::sin(x); }
};

struct ErfOp {
  static constexpr const char *name = "erf";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return std::erf(x); }
};

struct SigmoidOp {
  static constexpr const char *name = "sigmoid";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return sigmoid(x); }
};

struct ReluOp {
  static constexpr const char *name = "relu";
  static constexpr bool acceptsIntegers = false;
  // NaN stays NaN, as in onnxruntime.
  static float apply(float x) { return x < 0.0f ? 0.0f : x; }
};

struct SiluOp {
  static constexpr const char *name = "silu";
  static constexpr bool acceptsIntegers = false;
  static float apply(float x) { return silu(x); }
};

template <typename T, typename Fn>
void mapElements(const Tensor &input, Tensor &result, Fn &&fn) {
  const T *x = input.as<T>();
  T *y = result.as<T>();
  for (int64_t i = 0, e = input.numElements(); i < e; ++i)
    y[i] = fn(x[i]);
}

/// Checks the operand and result of a unary kernel: same type and shape,
/// f32 (or i64 when `acceptsIntegers`).
Status checkUnary(const char *op, bool acceptsIntegers,
                  const std::vector<const Tensor *> &inputs,
                  const std::vector<Tensor *> &outputs) {
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  bool supported = input.dtype() == DType::F32 ||
                   (acceptsIntegers && input.dtype() == DType::I64);
  if (!supported)
    return fail(op, "input has element type ", dtypeName(input.dtype()),
                acceptsIntegers ? "; expected f32 or i64" : "; expected f32");
  if (Status status = expectDType(op, "result", *outputs[0], input.dtype());
      !status)
    return status;
  return expectShape(op, "result", *outputs[0], input.shape());
}

template <typename Op>
Status
unaryKernel(const Attributes &attrs, const std::vector<const Tensor *> &inputs,
            const std::vector<Tensor *> &outputs, KernelContext &context) {
  if (Status status =
          checkUnary(Op::name, Op::acceptsIntegers, inputs, outputs);
      !status)
    return status;
  if constexpr (Op::acceptsIntegers) {
    if (inputs[0]->dtype() == DType::I64) {
      mapElements<int64_t>(*inputs[0], *outputs[0],
                           [](int64_t x) { return Op::apply(x); });
      return Status::success();
    }
  }
  mapElements<float>(*inputs[0], *outputs[0],
                     [](float x) { return Op::apply(x); });
  return Status::success();
}

Status isNaNKernel(const Attributes &attrs,
                   const std::vector<const Tensor *> &inputs,
                   const std::vector<Tensor *> &outputs,
                   KernelContext &context) {
  if (Status status = checkCall("is_nan", inputs, {"input"}, outputs, 1);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  if (input.dtype() != DType::F32)
    return fail("is_nan", "input has element type ", dtypeName(input.dtype()),
                "; expected f32");
  if (Status status = expectDType("is_nan", "result", *outputs[0], DType::Bool);
      !status)
    return status;
  if (Status status =
          expectShape("is_nan", "result", *outputs[0], input.shape());
      !status)
    return status;
  const float *x = input.as<float>();
  uint8_t *y = outputs[0]->as<uint8_t>();
  for (int64_t i = 0, e = input.numElements(); i < e; ++i)
    y[i] = std::isnan(x[i]) ? 1 : 0;
  return Status::success();
}

Status notKernel(const Attributes &attrs,
                 const std::vector<const Tensor *> &inputs,
                 const std::vector<Tensor *> &outputs, KernelContext &context) {
  if (Status status = checkCall("not", inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  if (input.dtype() != DType::Bool)
    return fail("not", "input has element type ", dtypeName(input.dtype()),
                "; expected i1");
  if (Status status = expectDType("not", "result", *outputs[0], DType::Bool);
      !status)
    return status;
  if (Status status = expectShape("not", "result", *outputs[0], input.shape());
      !status)
    return status;
  const uint8_t *x = input.as<uint8_t>();
  uint8_t *y = outputs[0]->as<uint8_t>();
  for (int64_t i = 0, e = input.numElements(); i < e; ++i)
    y[i] = x[i] ? 0 : 1;
  return Status::success();
}

Status geluKernel(const Attributes &attrs,
                  const std::vector<const Tensor *> &inputs,
                  const std::vector<Tensor *> &outputs,
                  KernelContext &context) {
  if (Status status = checkUnary("gelu", false, inputs, outputs); !status)
    return status;
  if (attrs.getInt("tanh"))
    mapElements<float>(*inputs[0], *outputs[0], geluTanh);
  else
    mapElements<float>(*inputs[0], *outputs[0], geluErf);
  return Status::success();
}

Status castKernel(const Attributes &attrs,
                  const std::vector<const Tensor *> &inputs,
                  const std::vector<Tensor *> &outputs,
                  KernelContext &context) {
  if (Status status = checkCall("cast", inputs, {"input"}, outputs, 1); !status)
    return status;
  if (Status status =
          expectShape("cast", "result", *outputs[0], inputs[0]->shape());
      !status)
    return status;
  convert(*inputs[0], *outputs[0]);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Binary
//===----------------------------------------------------------------------===//

// Each binary operation is a type with its name and `apply` for f32 and i64;
// `apply` sets `invalid` for an integer operation without a defined result.

int64_t wrap(uint64_t value) { return static_cast<int64_t>(value); }

struct AddOp {
  static constexpr const char *name = "add";
  static float apply(float a, float b, bool &) { return a + b; }
  static int64_t apply(int64_t a, int64_t b, bool &) {
    return wrap(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  }
};

struct SubOp {
  static constexpr const char *name = "sub";
  static float apply(float a, float b, bool &) { return a - b; }
  static int64_t apply(int64_t a, int64_t b, bool &) {
    return wrap(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
  }
};

struct MulOp {
  static constexpr const char *name = "mul";
  static float apply(float a, float b, bool &) { return a * b; }
  static int64_t apply(int64_t a, int64_t b, bool &) {
    return wrap(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
  }
};

struct DivOp {
  static constexpr const char *name = "div";
  static float apply(float a, float b, bool &) { return a / b; }
  // Integer division truncates toward zero, as onnxruntime's Div.
  static int64_t apply(int64_t a, int64_t b, bool &invalid) {
    if (b == 0) {
      invalid = true;
      return 0;
    }
    if (b == -1)
      return NegOp::apply(a);
    return a / b;
  }
};

struct PowOp {
  static constexpr const char *name = "pow";
  static float apply(float a, float b, bool &) { return std::pow(a, b); }
  // Exact by squaring (wrapping on overflow). A negative exponent gives the
  // real result truncated toward zero, which 0 has none of.
  static int64_t apply(int64_t base, int64_t exponent, bool &invalid) {
    if (exponent < 0) {
      if (base == 0)
        invalid = true;
      if (base == 1)
        return 1;
      if (base == -1)
        return exponent % 2 == 0 ? 1 : -1;
      return 0;
    }
    uint64_t result = 1, factor = static_cast<uint64_t>(base);
    for (uint64_t e = static_cast<uint64_t>(exponent); e; e >>= 1) {
      if (e & 1)
        result *= factor;
      factor *= factor;
    }
    return wrap(result);
  }
};

// Max and Min propagate NaN, as numpy's maximum and minimum do.
struct MaxOp {
  static constexpr const char *name = "max";
  static float apply(float a, float b, bool &) {
    return std::isnan(a) || a > b ? a : b;
  }
  static int64_t apply(int64_t a, int64_t b, bool &) { return a > b ? a : b; }
};

struct MinOp {
  static constexpr const char *name = "min";
  static float apply(float a, float b, bool &) {
    return std::isnan(a) || a < b ? a : b;
  }
  static int64_t apply(int64_t a, int64_t b, bool &) { return a < b ? a : b; }
};

/// Computes `result[i] = fn(lhs[i'], rhs[i''])` with numpy broadcasting,
/// where T is the operands' storage type and R the result's.
template <typename T, typename R, typename Fn>
void broadcastBinary(const Tensor &lhs, const Tensor &rhs, Tensor &result,
                     Fn &&fn) {
  const T *a = lhs.as<T>();
  const T *b = rhs.as<T>();
  R *y = result.as<R>();
  if (lhs.shape() == rhs.shape()) {
    for (int64_t i = 0, e = result.numElements(); i < e; ++i)
      y[i] = fn(a[i], b[i]);
    return;
  }
  const Shape &shape = result.shape();
  forEachElement<2>(shape,
                    {broadcastStrides(lhs.shape(), shape),
                     broadcastStrides(rhs.shape(), shape)},
                    [&](int64_t i, const std::array<int64_t, 2> &offsets) {
                      y[i] = fn(a[offsets[0]], b[offsets[1]]);
                    });
}

/// Checks that `lhs` and `rhs` share an element type and broadcast to the
/// shape of `result`.
Status checkBroadcast(const char *op, const Tensor &lhs, const Tensor &rhs,
                      const Tensor &result) {
  if (lhs.dtype() != rhs.dtype())
    return fail(op, "operands have element types ", dtypeName(lhs.dtype()),
                " and ", dtypeName(rhs.dtype()), "; they must be equal");
  Shape shape;
  if (!broadcastShapes(lhs.shape(), rhs.shape(), shape))
    return fail(op, "operand shapes ", formatShape(lhs.shape()), " and ",
                formatShape(rhs.shape()), " do not broadcast");
  return expectShape(op, "result", result, shape);
}

template <typename Op>
Status
binaryKernel(const Attributes &attrs, const std::vector<const Tensor *> &inputs,
             const std::vector<Tensor *> &outputs, KernelContext &context) {
  if (Status status = checkCall(Op::name, inputs, {"lhs", "rhs"}, outputs, 1);
      !status)
    return status;
  const Tensor &lhs = *inputs[0];
  const Tensor &rhs = *inputs[1];
  Tensor &result = *outputs[0];
  if (Status status = checkBroadcast(Op::name, lhs, rhs, result); !status)
    return status;
  if (Status status = expectDType(Op::name, "result", result, lhs.dtype());
      !status)
    return status;
  bool invalid = false;
  switch (lhs.dtype()) {
  case DType::F32:
    broadcastBinary<float, float>(lhs, rhs, result, [&](float a, float b) {
      return Op::apply(a, b, invalid);
    });
    return Status::success();
  case DType::I64:
    broadcastBinary<int64_t, int64_t>(
        lhs, rhs, result,
        [&](int64_t a, int64_t b) { return Op::apply(a, b, invalid); });
    if (invalid)
      return fail(Op::name, "integer operands have no defined result ",
                  "(division by zero or 0 to a negative power)");
    return Status::success();
  default:
    return fail(Op::name, "operands have element type ", dtypeName(lhs.dtype()),
                "; expected f32 or i64");
  }
}

//===----------------------------------------------------------------------===//
// Compare and where
//===----------------------------------------------------------------------===//

enum class Predicate { Eq, Ne, Lt, Le, Gt, Ge };

bool parsePredicate(const std::string &name, Predicate &predicate) {
  static const std::pair<const char *, Predicate> names[] = {
      {"eq", Predicate::Eq}, {"ne", Predicate::Ne}, {"lt", Predicate::Lt},
      {"le", Predicate::Le}, {"gt", Predicate::Gt}, {"ge", Predicate::Ge}};
  for (const auto &[text, value] : names) {
    if (name == text) {
      predicate = value;
      return true;
    }
  }
  return false;
}

template <typename T> bool comparePair(Predicate predicate, T a, T b) {
  switch (predicate) {
  case Predicate::Eq:
    return a == b;
  case Predicate::Ne:
    return a != b;
  case Predicate::Lt:
    return a < b;
  case Predicate::Le:
    return a <= b;
  case Predicate::Gt:
    return a > b;
  case Predicate::Ge:
    return a >= b;
  }
  return false;
}

template <typename T>
void compareTensors(Predicate predicate, const Tensor &lhs, const Tensor &rhs,
                    Tensor &result) {
  broadcastBinary<T, uint8_t>(lhs, rhs, result, [&](T a, T b) {
    return static_cast<uint8_t>(comparePair(predicate, a, b));
  });
}

Status compareKernel(const Attributes &attrs,
                     const std::vector<const Tensor *> &inputs,
                     const std::vector<Tensor *> &outputs,
                     KernelContext &context) {
  if (Status status = checkCall("compare", inputs, {"lhs", "rhs"}, outputs, 1);
      !status)
    return status;
  std::string name;
  if (Status status = requireString("compare", attrs, "predicate", name);
      !status)
    return status;
  Predicate predicate;
  if (!parsePredicate(name, predicate))
    return fail("compare", "unknown predicate '", name,
                "'; expected eq, ne, lt, le, gt or ge");
  const Tensor &lhs = *inputs[0];
  const Tensor &rhs = *inputs[1];
  Tensor &result = *outputs[0];
  if (Status status = checkBroadcast("compare", lhs, rhs, result); !status)
    return status;
  if (Status status = expectDType("compare", "result", result, DType::Bool);
      !status)
    return status;
  switch (lhs.dtype()) {
  case DType::F32:
    compareTensors<float>(predicate, lhs, rhs, result);
    return Status::success();
  case DType::I64:
    compareTensors<int64_t>(predicate, lhs, rhs, result);
    return Status::success();
  case DType::Bool:
    compareTensors<uint8_t>(predicate, lhs, rhs, result);
    return Status::success();
  default:
    return fail("compare", "operands have element type ",
                dtypeName(lhs.dtype()), "; expected f32, i64 or i1");
  }
}

/// and / or on i1 tensors with broadcasting.
template <bool IsAnd>
Status logicalKernel(const Attributes &attrs,
                     const std::vector<const Tensor *> &inputs,
                     const std::vector<Tensor *> &outputs,
                     KernelContext &context) {
  const char *op = IsAnd ? "and" : "or";
  if (Status status = checkCall(op, inputs, {"lhs", "rhs"}, outputs, 1);
      !status)
    return status;
  const Tensor &lhs = *inputs[0];
  const Tensor &rhs = *inputs[1];
  Tensor &result = *outputs[0];
  if (Status status = checkBroadcast(op, lhs, rhs, result); !status)
    return status;
  if (lhs.dtype() != DType::Bool)
    return fail(op, "operands have element type ", dtypeName(lhs.dtype()),
                "; expected i1");
  if (Status status = expectDType(op, "result", result, DType::Bool); !status)
    return status;
  broadcastBinary<uint8_t, uint8_t>(lhs, rhs, result, [](uint8_t a, uint8_t b) {
    return static_cast<uint8_t>(IsAnd ? (a && b) : (a || b));
  });
  return Status::success();
}

Status whereKernel(const Attributes &attrs,
                   const std::vector<const Tensor *> &inputs,
                   const std::vector<Tensor *> &outputs,
                   KernelContext &context) {
  if (Status status =
          checkCall("where", inputs, {"condition", "true_value", "false_value"},
                    outputs, 1);
      !status)
    return status;
  const Tensor &condition = *inputs[0];
  const Tensor &onTrue = *inputs[1];
  const Tensor &onFalse = *inputs[2];
  Tensor &result = *outputs[0];
  if (Status status = expectDType("where", "condition", condition, DType::Bool);
      !status)
    return status;
  if (onTrue.dtype() != onFalse.dtype() || onTrue.dtype() != result.dtype())
    return fail("where",
                "true_value, false_value and result have element "
                "types ",
                dtypeName(onTrue.dtype()), ", ", dtypeName(onFalse.dtype()),
                " and ", dtypeName(result.dtype()), "; they must be equal");
  Shape shape;
  if (!broadcastShapes(condition.shape(), onTrue.shape(), shape) ||
      !broadcastShapes(shape, onFalse.shape(), shape))
    return fail("where", "operand shapes ", formatShape(condition.shape()),
                ", ", formatShape(onTrue.shape()), " and ",
                formatShape(onFalse.shape()), " do not broadcast");
  if (Status status = expectShape("where", "result", result, shape); !status)
    return status;
  // Where only moves elements, so any element type works by its size.
  visitStorageType(dtypeSize(result.dtype()), [&](auto tag) {
    using T = decltype(tag);
    const uint8_t *c = condition.as<uint8_t>();
    const T *t = onTrue.as<T>();
    const T *f = onFalse.as<T>();
    T *y = result.as<T>();
    forEachElement<3>(shape,
                      {broadcastStrides(condition.shape(), shape),
                       broadcastStrides(onTrue.shape(), shape),
                       broadcastStrides(onFalse.shape(), shape)},
                      [&](int64_t i, const std::array<int64_t, 3> &offsets) {
                        y[i] = c[offsets[0]] ? t[offsets[1]] : f[offsets[2]];
                      });
  });
  return Status::success();
}

} // namespace

void detail::addElementwiseKernels(KernelTable &table) {
  table["neg"] = unaryKernel<NegOp>;
  table["abs"] = unaryKernel<AbsOp>;
  table["exp"] = unaryKernel<ExpOp>;
  table["log"] = unaryKernel<LogOp>;
  table["sqrt"] = unaryKernel<SqrtOp>;
  table["reciprocal"] = unaryKernel<ReciprocalOp>;
  table["tanh"] = unaryKernel<TanhOp>;
  table["erf"] = unaryKernel<ErfOp>;
  table["cos"] = unaryKernel<CosOp>;
  table["sin"] = unaryKernel<SinOp>;
  table["is_nan"] = isNaNKernel;
  table["not"] = notKernel;
  table["sigmoid"] = unaryKernel<SigmoidOp>;
  table["relu"] = unaryKernel<ReluOp>;
  table["silu"] = unaryKernel<SiluOp>;
  table["gelu"] = geluKernel;
  table["cast"] = castKernel;
  table["add"] = binaryKernel<AddOp>;
  table["sub"] = binaryKernel<SubOp>;
  table["mul"] = binaryKernel<MulOp>;
  table["div"] = binaryKernel<DivOp>;
  table["pow"] = binaryKernel<PowOp>;
  table["max"] = binaryKernel<MaxOp>;
  table["min"] = binaryKernel<MinOp>;
  table["compare"] = compareKernel;
  table["and"] = logicalKernel<true>;
  table["or"] = logicalKernel<false>;
  table["where"] = whereKernel;
}
