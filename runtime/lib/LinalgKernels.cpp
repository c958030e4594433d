//===- LinalgKernels.cpp - matrix products, reductions, normalisation -----===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Matrix products go to OpenBLAS's cblas_sgemm. Sums, means, products and the
// normalisation statistics accumulate in double, which costs little here and
// keeps long reductions within the 1e-5 the runtime promises against
// onnxruntime.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"

#include <cblas.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <type_traits>

using namespace moe::rt;
using namespace moe::rt::detail;

Status detail::sgemm(const std::string &op, bool transA, bool transB, int64_t m,
                     int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  if (m == 0 || n == 0)
    return Status::success();
  if (k == 0) {
    // op(A) * op(B) is all zeros; BLAS would reject the zero leading
    // dimension of an empty operand.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return Status::success();
  }
  constexpr int64_t blasLimit = std::numeric_limits<blasint>::max();
  for (int64_t value : {m, n, k, lda, ldb, ldc}) {
    if (value > blasLimit)
      return fail(op, "matrix dimension ", value, " exceeds BLAS's limit of ",
                  blasLimit);
  }
  if (m <= 4) {
    // A few rows (decoding, experts that got one or two tokens): sgemv per
    // row streams B once, where sgemm would first pack all of it.
    for (int64_t i = 0; i < m; ++i) {
      const float *row = transA ? a + i : a + i * lda;
      blasint rowStride = transA ? static_cast<blasint>(lda) : 1;
      if (transB)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(n),
                    static_cast<blasint>(k), alpha, b,
                    static_cast<blasint>(ldb), row, rowStride, beta,
                    c + i * ldc, 1);
      else
        cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(k),
                    static_cast<blasint>(n), alpha, b,
                    static_cast<blasint>(ldb), row, rowStride, beta,
                    c + i * ldc, 1);
    }
    return Status::success();
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
              transB ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
  return Status::success();
}

namespace {

//===----------------------------------------------------------------------===//
// matmul and gemm
//===----------------------------------------------------------------------===//

Status matmulKernel(const Attributes &attrs,
                    const std::vector<const Tensor *> &inputs,
                    const std::vector<Tensor *> &outputs,
                    KernelContext &context) {
  const char *op = "matmul";
  if (Status status = checkCall(op, inputs, {"lhs", "rhs"}, outputs, 1);
      !status)
    return status;
  const Tensor &lhs = *inputs[0];
  const Tensor &rhs = *inputs[1];
  Tensor &result = *outputs[0];
  for (auto [name, tensor] :
       {std::pair<const char *, const Tensor *>{"lhs", &lhs},
        {"rhs", &rhs},
        {"result", &result}}) {
    if (Status status = expectDType(op, name, *tensor, DType::F32); !status)
      return status;
  }
  if (lhs.rank() == 0 || rhs.rank() == 0)
    return fail(op, "operands must have rank 1 or more, got ",
                formatShape(lhs.shape()), " and ", formatShape(rhs.shape()));

  // numpy promotes a 1-D left operand to a row and a 1-D right operand to a
  // column, and drops that dimension from the result.
  Shape a = lhs.shape(), b = rhs.shape();
  if (a.size() == 1)
    a.insert(a.begin(), 1);
  if (b.size() == 1)
    b.push_back(1);
  int64_t m = a[a.size() - 2], k = a.back(), n = b.back();
  if (b[b.size() - 2] != k)
    return fail(op, "contracting dimensions differ: ", formatShape(lhs.shape()),
                " times ", formatShape(rhs.shape()));
  Shape batchA(a.begin(), a.end() - 2), batchB(b.begin(), b.end() - 2);
  Shape batch;
  if (!broadcastShapes(batchA, batchB, batch))
    return fail(op, "batch dimensions of ", formatShape(lhs.shape()), " and ",
                formatShape(rhs.shape()), " do not broadcast");
  Shape expected = batch;
  if (lhs.rank() > 1)
    expected.push_back(m);
  if (rhs.rank() > 1)
    expected.push_back(n);
  if (Status status = expectShape(op, "result", result, expected); !status)
    return status;

  const float *x = lhs.as<float>();
  const float *w = rhs.as<float>();
  float *y = result.as<float>();
  // A right operand without batch dimensions (x @ W, the common case) is
  // one product over all rows of the left operand.
  if (batchB.empty())
    return sgemm(op, false, false, numElements(batchA) * m, n, k, 1.0f, x, k, w,
                 n, 0.0f, y, n);
  Status status = Status::success();
  forEachElement<2>(
      batch, {broadcastStrides(batchA, batch), broadcastStrides(batchB, batch)},
      [&](int64_t i, const std::array<int64_t, 2> &offsets) {
        if (status)
          status =
              sgemm(op, false, false, m, n, k, 1.0f, x + offsets[0] * m * k, k,
                    w + offsets[1] * k * n, n, 0.0f, y + i * m * n, n);
      });
  return status;
}

Status gemmKernel(const Attributes &attrs,
                  const std::vector<const Tensor *> &inputs,
                  const std::vector<Tensor *> &outputs,
                  KernelContext &context) {
  const char *op = "gemm";
  if (Status status = checkCall(op, inputs, {"a", "b", "c?"}, outputs, 1);
      !status)
    return status;
  const Tensor &a = *inputs[0];
  const Tensor &b = *inputs[1];
  const Tensor *c = operand(inputs, 2);
  Tensor &result = *outputs[0];
  for (auto [name, tensor] : {std::pair<const char *, const Tensor *>{"a", &a},
                              {"b", &b},
                              {"c", c},
                              {"result", &result}}) {
    if (!tensor)
      continue;
    if (Status status = expectDType(op, name, *tensor, DType::F32); !status)
      return status;
  }
  if (a.rank() != 2 || b.rank() != 2)
    return fail(op, "A and B must be matrices, got ", formatShape(a.shape()),
                " and ", formatShape(b.shape()));
  bool transA = attrs.getInt("trans_a"), transB = attrs.getInt("trans_b");
  int64_t m = transA ? a.dim(1) : a.dim(0);
  int64_t k = transA ? a.dim(0) : a.dim(1);
  int64_t n = transB ? b.dim(0) : b.dim(1);
  if ((transB ? b.dim(1) : b.dim(0)) != k)
    return fail(op, "contracting dimensions differ: op(A) has ", k,
                " columns but op(B) has ", transB ? b.dim(1) : b.dim(0),
                " rows");
  if (Status status = expectShape(op, "result", result, {m, n}); !status)
    return status;
  auto alpha = static_cast<float>(attrs.getFloat("alpha", 1.0));
  auto beta = static_cast<float>(attrs.getFloat("beta", 1.0));

  float *y = result.as<float>();
  if (c) {
    Shape shape;
    if (!broadcastShapes(c->shape(), {m, n}, shape) || shape != Shape{m, n})
      return fail(op, "C has shape ", formatShape(c->shape()),
                  ", which does not broadcast to ", formatShape({m, n}));
    const float *bias = c->as<float>();
    forEachElement<1>(shape, {broadcastStrides(c->shape(), shape)},
                      [&](int64_t i, const std::array<int64_t, 1> &offsets) {
                        y[i] = beta * bias[offsets[0]];
                      });
  }
  return sgemm(op, transA, transB, m, n, k, alpha, a.as<float>(), a.dim(1),
               b.as<float>(), b.dim(1), c ? 1.0f : 0.0f, y, n);
}

//===----------------------------------------------------------------------===//
// reduce
//===----------------------------------------------------------------------===//

enum class ReduceKind { Sum, Mean, Max, Min, Prod };

bool parseReduceKind(const std::string &name, ReduceKind &kind) {
  static const std::pair<const char *, ReduceKind> names[] = {
      {"sum", ReduceKind::Sum},
      {"mean", ReduceKind::Mean},
      {"max", ReduceKind::Max},
      {"min", ReduceKind::Min},
      {"prod", ReduceKind::Prod}};
  for (const auto &[text, value] : names) {
    if (name == text) {
      kind = value;
      return true;
    }
  }
  return false;
}

template <typename T> bool isNaN(T value) {
  if constexpr (std::is_floating_point_v<T>)
    return std::isnan(value);
  else
    return false;
}

/// Folds every input element into the accumulator of its output element;
/// `outputOffsets` maps input indices to output positions (stride 0 along
/// reduced axes). Max and min propagate NaN; integer sums and products wrap.
template <typename T, typename Acc>
void accumulate(ReduceKind kind, const Tensor &input,
                const std::vector<int64_t> &outputOffsets,
                std::vector<Acc> &acc) {
  const T *x = input.as<T>();
  forEachElement<1>(input.shape(), {outputOffsets},
                    [&](int64_t i, const std::array<int64_t, 1> &offsets) {
                      Acc &a = acc[offsets[0]];
                      Acc v = static_cast<Acc>(x[i]);
                      switch (kind) {
                      case ReduceKind::Sum:
                      case ReduceKind::Mean:
                        if constexpr (std::is_integral_v<Acc>)
                          a = static_cast<Acc>(static_cast<uint64_t>(a) +
                                               static_cast<uint64_t>(v));
                        else
                          a += v;
                        break;
                      case ReduceKind::Prod:
                        if constexpr (std::is_integral_v<Acc>)
                          a = static_cast<Acc>(static_cast<uint64_t>(a) *
                                               static_cast<uint64_t>(v));
                        else
                          a *= v;
                        break;
                      case ReduceKind::Max:
                        if (!isNaN(a) && (isNaN(v) || v > a))
                          a = v;
                        break;
                      case ReduceKind::Min:
                        if (!isNaN(a) && (isNaN(v) || v < a))
                          a = v;
                        break;
                      }
                    });
}

/// The accumulator start of each kind: ONNX reduces an empty set to 0 (sum),
/// 1 (prod), and the lowest or highest value (max, min).
template <typename Acc> Acc reduceInit(ReduceKind kind) {
  switch (kind) {
  case ReduceKind::Prod:
    return 1;
  case ReduceKind::Max:
    return std::numeric_limits<Acc>::has_infinity
               ? -std::numeric_limits<Acc>::infinity()
               : std::numeric_limits<Acc>::lowest();
  case ReduceKind::Min:
    return std::numeric_limits<Acc>::has_infinity
               ? std::numeric_limits<Acc>::infinity()
               : std::numeric_limits<Acc>::max();
  default:
    return 0;
  }
}

template <typename T, typename Acc>
void reduceInto(ReduceKind kind, const Tensor &input,
                const std::vector<int64_t> &outputOffsets, int64_t reducedCount,
                Tensor &result) {
  std::vector<Acc> acc(result.numElements(), reduceInit<Acc>(kind));
  accumulate<T>(kind, input, outputOffsets, acc);
  T *y = result.as<T>();
  for (size_t i = 0; i < acc.size(); ++i) {
    if (kind == ReduceKind::Mean)
      acc[i] /= static_cast<Acc>(reducedCount);
    y[i] = static_cast<T>(acc[i]);
  }
}

Status reduceKernel(const Attributes &attrs,
                    const std::vector<const Tensor *> &inputs,
                    const std::vector<Tensor *> &outputs,
                    KernelContext &context) {
  const char *op = "reduce";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  std::string kindName;
  std::vector<int64_t> axes;
  if (Status status = requireString(op, attrs, "kind", kindName); !status)
    return status;
  if (Status status = requireArray(op, attrs, "axes", axes); !status)
    return status;
  ReduceKind kind;
  if (!parseReduceKind(kindName, kind))
    return fail(op, "unknown kind '", kindName,
                "'; expected sum, mean, max, min or prod");
  if (input.dtype() != DType::F32 && input.dtype() != DType::I64)
    return fail(op, "input has element type ", dtypeName(input.dtype()),
                "; expected f32 or i64");
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;

  std::vector<bool> reduced(input.rank(), false);
  for (int64_t axis : axes) {
    int64_t resolved;
    if (Status status = resolveAxis(op, axis, input.rank(), resolved); !status)
      return status;
    if (reduced[resolved])
      return fail(op, "axis ", axis, " is listed twice");
    reduced[resolved] = true;
  }
  bool keepDims = attrs.getInt("keep_dims");
  Shape expected, kept;
  int64_t reducedCount = 1;
  for (int64_t d = 0; d < input.rank(); ++d) {
    if (reduced[d]) {
      reducedCount *= input.dim(d);
      kept.push_back(1);
      if (keepDims)
        expected.push_back(1);
    } else {
      kept.push_back(input.dim(d));
      expected.push_back(input.dim(d));
    }
  }
  if (Status status = expectShape(op, "result", result, expected); !status)
    return status;
  // The output with reduced dimensions kept as 1 has the same layout either
  // way; broadcasting it to the input shape maps inputs to outputs.
  std::vector<int64_t> outputOffsets = broadcastStrides(kept, input.shape());

  if (input.dtype() == DType::F32) {
    reduceInto<float, double>(kind, input, outputOffsets, reducedCount, result);
    return Status::success();
  }
  if (kind == ReduceKind::Mean && reducedCount == 0 && result.numElements() > 0)
    return fail(op, "integer mean over an empty set of values");
  reduceInto<int64_t, int64_t>(kind, input, outputOffsets, reducedCount,
                               result);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// softmax and top_k
//===----------------------------------------------------------------------===//

/// Splits a shape at `axis` into the element counts before it, along it and
/// after it: element (o, a, i) lives at (o * size + a) * inner + i.
struct AxisSplit {
  int64_t outer = 1, size = 1, inner = 1;
};

AxisSplit splitAt(const Shape &shape, int64_t axis) {
  AxisSplit split;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < axis)
      split.outer *= shape[d];
    else if (d == axis)
      split.size = shape[d];
    else
      split.inner *= shape[d];
  }
  return split;
}

Status softmaxKernel(const Attributes &attrs,
                     const std::vector<const Tensor *> &inputs,
                     const std::vector<Tensor *> &outputs,
                     KernelContext &context) {
  const char *op = "softmax";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  int64_t axisAttr, axis;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, input.rank(), axis); !status)
    return status;
  if (Status status = expectDType(op, "input", input, DType::F32); !status)
    return status;
  if (Status status = expectDType(op, "result", result, DType::F32); !status)
    return status;
  if (Status status = expectShape(op, "result", result, input.shape()); !status)
    return status;

  AxisSplit split = splitAt(input.shape(), axis);
  const float *x = input.as<float>();
  float *y = result.as<float>();
  for (int64_t o = 0; o < split.outer; ++o) {
    for (int64_t i = 0; i < split.inner; ++i) {
      int64_t base = o * split.size * split.inner + i;
      auto at = [&](int64_t a) { return base + a * split.inner; };
      // Subtracting the maximum keeps exp from overflowing.
      float maximum = -std::numeric_limits<float>::infinity();
      for (int64_t a = 0; a < split.size; ++a)
        maximum = std::max(maximum, x[at(a)]);
      double sum = 0.0;
      for (int64_t a = 0; a < split.size; ++a) {
        y[at(a)] = std::exp(x[at(a)] - maximum);
        sum += y[at(a)];
      }
      auto scale = static_cast<float>(1.0 / sum);
      for (int64_t a = 0; a < split.size; ++a)
        y[at(a)] *= scale;
    }
  }
  return Status::success();
}

/// Whether `a` ranks before `b` in a top-k: larger (or smaller) first, NaN
/// counting as the largest value.
template <typename T> bool ranksBefore(T a, T b, bool smallest) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b))
      return smallest ? !std::isnan(a) : !std::isnan(b);
  }
  return smallest ? a < b : a > b;
}

template <typename T>
void topK(const Tensor &input, AxisSplit split, int64_t k, bool smallest,
          Tensor &values, Tensor &indices) {
  const T *x = input.as<T>();
  T *v = values.as<T>();
  std::vector<int64_t> order(split.size);
  for (int64_t o = 0; o < split.outer; ++o) {
    for (int64_t i = 0; i < split.inner; ++i) {
      const T *line = x + o * split.size * split.inner + i;
      std::iota(order.begin(), order.end(), 0);
      // Equal values keep the lower index first, as ONNX TopK.
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int64_t lhs, int64_t rhs) {
                          T a = line[lhs * split.inner];
                          T b = line[rhs * split.inner];
                          if (ranksBefore(a, b, smallest))
                            return true;
                          if (ranksBefore(b, a, smallest))
                            return false;
                          return lhs < rhs;
                        });
      int64_t base = o * k * split.inner + i;
      for (int64_t j = 0; j < k; ++j) {
        v[base + j * split.inner] = line[order[j] * split.inner];
        storeIndex(indices, base + j * split.inner, order[j]);
      }
    }
  }
}

Status topKKernel(const Attributes &attrs,
                  const std::vector<const Tensor *> &inputs,
                  const std::vector<Tensor *> &outputs,
                  KernelContext &context) {
  const char *op = "top_k";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 2); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &values = *outputs[0];
  Tensor &indices = *outputs[1];
  int64_t k, axisAttr, axis;
  if (Status status = requireInt(op, attrs, "k", k); !status)
    return status;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, input.rank(), axis); !status)
    return status;
  if (k < 1 || k > input.dim(axis))
    return fail(op, "k = ", k, " must be in [1, ", input.dim(axis),
                "], the size of axis ", axisAttr);
  Shape expected = input.shape();
  expected[axis] = k;
  if (Status status = expectShape(op, "values", values, expected); !status)
    return status;
  if (Status status = expectShape(op, "indices", indices, expected); !status)
    return status;
  if (Status status = expectDType(op, "values", values, input.dtype()); !status)
    return status;
  if (Status status = expectIndexDType(op, "indices", indices); !status)
    return status;

  AxisSplit split = splitAt(input.shape(), axis);
  bool smallest = attrs.getInt("smallest");
  switch (input.dtype()) {
  case DType::F32:
    topK<float>(input, split, k, smallest, values, indices);
    return Status::success();
  case DType::I64:
    topK<int64_t>(input, split, k, smallest, values, indices);
    return Status::success();
  default:
    return fail(op, "input has element type ", dtypeName(input.dtype()),
                "; expected f32 or i64");
  }
}

//===----------------------------------------------------------------------===//
// layer_norm and rms_norm
//===----------------------------------------------------------------------===//

/// Checks a normalisation's operands and splits the input into rows of the
/// normalised trailing dimensions.
Status checkNormalization(
    const char *op, const Attributes &attrs, const Tensor &input,
    std::initializer_list<std::pair<const char *, const Tensor *>> params,
    const Tensor &result, int64_t &rows, int64_t &rowSize, float &epsilon) {
  int64_t axisAttr, axis;
  double epsilonAttr;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = requireFloat(op, attrs, "epsilon", epsilonAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, input.rank(), axis); !status)
    return status;
  Shape normalized(input.shape().begin() + axis, input.shape().end());
  for (auto [name, tensor] : params) {
    if (!tensor)
      continue;
    if (Status status = expectDType(op, name, *tensor, DType::F32); !status)
      return status;
    if (Status status = expectShape(op, name, *tensor, normalized); !status)
      return status;
  }
  if (Status status = expectDType(op, "input", input, DType::F32); !status)
    return status;
  if (Status status = expectDType(op, "result", result, DType::F32); !status)
    return status;
  if (Status status = expectShape(op, "result", result, input.shape()); !status)
    return status;
  rowSize = numElements(normalized);
  rows = rowSize == 0 ? 0 : input.numElements() / rowSize;
  epsilon = static_cast<float>(epsilonAttr);
  return Status::success();
}

Status layerNormKernel(const Attributes &attrs,
                       const std::vector<const Tensor *> &inputs,
                       const std::vector<Tensor *> &outputs,
                       KernelContext &context) {
  const char *op = "layer_norm";
  if (Status status =
          checkCall(op, inputs, {"input", "scale", "bias?"}, outputs, 1);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  const Tensor *bias = operand(inputs, 2);
  int64_t rows, rowSize;
  float epsilon;
  if (Status status = checkNormalization(op, attrs, input,
                                         {{"scale", inputs[1]}, {"bias", bias}},
                                         *outputs[0], rows, rowSize, epsilon);
      !status)
    return status;
  const float *scale = inputs[1]->as<float>();
  const float *shift = bias ? bias->as<float>() : nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    const float *x = input.as<float>() + r * rowSize;
    float *y = outputs[0]->as<float>() + r * rowSize;
    double sum = 0.0;
    for (int64_t i = 0; i < rowSize; ++i)
      sum += x[i];
    double mean = sum / rowSize;
    double squares = 0.0;
    for (int64_t i = 0; i < rowSize; ++i)
      squares += (x[i] - mean) * (x[i] - mean);
    double inverse = 1.0 / std::sqrt(squares / rowSize + epsilon);
    for (int64_t i = 0; i < rowSize; ++i) {
      auto normalized = static_cast<float>((x[i] - mean) * inverse);
      y[i] = normalized * scale[i] + (shift ? shift[i] : 0.0f);
    }
  }
  return Status::success();
}

Status rmsNormKernel(const Attributes &attrs,
                     const std::vector<const Tensor *> &inputs,
                     const std::vector<Tensor *> &outputs,
                     KernelContext &context) {
  const char *op = "rms_norm";
  if (Status status = checkCall(op, inputs, {"input", "scale"}, outputs, 1);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  int64_t rows, rowSize;
  float epsilon;
  if (Status status =
          checkNormalization(op, attrs, input, {{"scale", inputs[1]}},
                             *outputs[0], rows, rowSize, epsilon);
      !status)
    return status;
  const float *scale = inputs[1]->as<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float *x = input.as<float>() + r * rowSize;
    float *y = outputs[0]->as<float>() + r * rowSize;
    double squares = 0.0;
    for (int64_t i = 0; i < rowSize; ++i)
      squares += static_cast<double>(x[i]) * x[i];
    auto inverse =
        static_cast<float>(1.0 / std::sqrt(squares / rowSize + epsilon));
    for (int64_t i = 0; i < rowSize; ++i)
      y[i] = x[i] * inverse * scale[i];
  }
  return Status::success();
}

} // namespace

void detail::addLinalgKernels(KernelTable &table) {
  table["matmul"] = matmulKernel;
  table["gemm"] = gemmKernel;
  table["reduce"] = reduceKernel;
  table["softmax"] = softmaxKernel;
  table["top_k"] = topKKernel;
  table["layer_norm"] = layerNormKernel;
  table["rms_norm"] = rmsNormKernel;
}
