//===- ShapeKernels.cpp - indexing and shape manipulation kernels ---------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Gather and scatter with ONNX index rules (negative indices count from the
// back; anything else out of range is an error, checked before any output is
// written), and the kernels that only move elements: reshape, transpose,
// expand, slice, concat, split, trilu. Those work on any element type through
// its size.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"

#include <algorithm>
#include <limits>
#include <type_traits>

using namespace moe::rt;
using namespace moe::rt::detail;

void detail::sliceDim(int64_t dim, int64_t start, int64_t end, int64_t step,
                      int64_t &first, int64_t &count) {
  if (start < 0)
    start += dim;
  if (end < 0 && end > std::numeric_limits<int64_t>::min() / 2)
    end += dim;
  int64_t span;
  if (step > 0) {
    first = std::clamp<int64_t>(start, 0, dim);
    span = std::clamp<int64_t>(end, 0, dim) - first;
  } else if (dim == 0) {
    first = span = 0;
  } else {
    first = std::clamp<int64_t>(start, 0, dim - 1);
    span = first - std::clamp<int64_t>(end, -1, dim - 1);
  }
  uint64_t stride =
      step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
  count = span > 0 ? static_cast<int64_t>((span - 1) / stride) + 1 : 0;
}

namespace {

/// Checks that `result` has the element type and shape of `data`.
Status checkSameAs(const char *op, const Tensor &result, const Tensor &data) {
  if (Status status = expectDType(op, "result", result, data.dtype()); !status)
    return status;
  return expectShape(op, "result", result, data.shape());
}

/// Resolves index `index` into an axis of `size`: negative values count from
/// the back; the rest out of range is an error.
Status resolveIndex(const char *op, int64_t index, int64_t size,
                    int64_t &resolved) {
  if (index < -size || index >= size)
    return fail(op, "index ", index,
                " is out of range for a dimension of size ", size);
  resolved = index < 0 ? index + size : index;
  return Status::success();
}

//===----------------------------------------------------------------------===//
// gather and gather_elements
//===----------------------------------------------------------------------===//

Status gatherKernel(const Attributes &attrs,
                    const std::vector<const Tensor *> &inputs,
                    const std::vector<Tensor *> &outputs,
                    KernelContext &context) {
  const char *op = "gather";
  if (Status status = checkCall(op, inputs, {"data", "indices"}, outputs, 1);
      !status)
    return status;
  const Tensor &data = *inputs[0];
  const Tensor &indices = *inputs[1];
  Tensor &result = *outputs[0];
  int64_t axisAttr, axis;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, data.rank(), axis); !status)
    return status;
  if (Status status = expectIndexDType(op, "indices", indices); !status)
    return status;
  Shape expected(data.shape().begin(), data.shape().begin() + axis);
  expected.insert(expected.end(), indices.shape().begin(),
                  indices.shape().end());
  expected.insert(expected.end(), data.shape().begin() + axis + 1,
                  data.shape().end());
  if (Status status = expectShape(op, "result", result, expected); !status)
    return status;
  if (Status status = expectDType(op, "result", result, data.dtype()); !status)
    return status;

  int64_t axisSize = data.dim(axis);
  int64_t count = indices.numElements();
  std::vector<int64_t> resolved(count);
  for (int64_t j = 0; j < count; ++j) {
    if (Status status =
            resolveIndex(op, loadIndex(indices, j), axisSize, resolved[j]);
        !status)
      return status;
  }
  int64_t outer =
      numElements(Shape(data.shape().begin(), data.shape().begin() + axis));
  size_t sliceBytes =
      numElements(Shape(data.shape().begin() + axis + 1, data.shape().end())) *
      dtypeSize(data.dtype());
  const auto *source = static_cast<const uint8_t *>(data.data());
  auto *target = static_cast<uint8_t *>(result.data());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < count; ++j) {
      std::memcpy(target + (o * count + j) * sliceBytes,
                  source + (o * axisSize + resolved[j]) * sliceBytes,
                  sliceBytes);
    }
  }
  return Status::success();
}

/// The common checks of gather_elements and scatter_elements: `indices` has
/// the rank of `data` and fits inside it off the axis. Produces the strides
/// that address `data` at the indices' positions, with 0 on the axis (its
/// offset comes from the index value) and the axis stride separately.
Status checkElementIndices(const char *op, const Attributes &attrs,
                           const Tensor &data, const Tensor &indices,
                           int64_t &axis, std::vector<int64_t> &strides,
                           int64_t &axisStride) {
  int64_t axisAttr;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, data.rank(), axis); !status)
    return status;
  if (Status status = expectIndexDType(op, "indices", indices); !status)
    return status;
  if (indices.rank() != data.rank())
    return fail(op, "indices have rank ", indices.rank(), " but data has rank ",
                data.rank());
  for (int64_t d = 0; d < data.rank(); ++d) {
    if (d != axis && indices.dim(d) > data.dim(d))
      return fail(op, "indices shape ", formatShape(indices.shape()),
                  " exceeds data shape ", formatShape(data.shape()),
                  " in dimension ", d);
  }
  strides = contiguousStrides(data.shape());
  axisStride = strides[axis];
  strides[axis] = 0;
  return Status::success();
}

Status gatherElementsKernel(const Attributes &attrs,
                            const std::vector<const Tensor *> &inputs,
                            const std::vector<Tensor *> &outputs,
                            KernelContext &context) {
  const char *op = "gather_elements";
  if (Status status = checkCall(op, inputs, {"data", "indices"}, outputs, 1);
      !status)
    return status;
  const Tensor &data = *inputs[0];
  const Tensor &indices = *inputs[1];
  Tensor &result = *outputs[0];
  int64_t axis, axisStride;
  std::vector<int64_t> strides;
  if (Status status = checkElementIndices(op, attrs, data, indices, axis,
                                          strides, axisStride);
      !status)
    return status;
  if (Status status = expectShape(op, "result", result, indices.shape());
      !status)
    return status;
  if (Status status = expectDType(op, "result", result, data.dtype()); !status)
    return status;
  Status status = Status::success();
  visitStorageType(dtypeSize(data.dtype()), [&](auto tag) {
    using T = decltype(tag);
    const T *x = data.as<T>();
    T *y = result.as<T>();
    forEachElement<1>(indices.shape(), {strides},
                      [&](int64_t i, const std::array<int64_t, 1> &offsets) {
                        int64_t index;
                        if (!status)
                          return;
                        status = resolveIndex(op, loadIndex(indices, i),
                                              data.dim(axis), index);
                        if (status)
                          y[i] = x[offsets[0] + index * axisStride];
                      });
  });
  return status;
}

//===----------------------------------------------------------------------===//
// scatter_elements and scatter_nd
//===----------------------------------------------------------------------===//

enum class Reduction { None, Add, Mul, Max, Min };

Status parseReduction(const char *op, const Attributes &attrs,
                      Reduction &reduction) {
  std::string name = attrs.getString("reduction", "none");
  static const std::pair<const char *, Reduction> names[] = {
      {"none", Reduction::None},
      {"add", Reduction::Add},
      {"mul", Reduction::Mul},
      {"max", Reduction::Max},
      {"min", Reduction::Min}};
  for (const auto &[text, value] : names) {
    if (name == text) {
      reduction = value;
      return Status::success();
    }
  }
  return fail(op, "unknown reduction '", name,
              "'; expected none, add, mul, max or min");
}

/// `a + b` or `a * b`; integers wrap instead of overflowing.
template <typename T> T arithmetic(bool multiply, T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using Unsigned = std::make_unsigned_t<T>;
    auto x = static_cast<Unsigned>(a), y = static_cast<Unsigned>(b);
    return static_cast<T>(multiply ? x * y : x + y);
  } else {
    return multiply ? a * b : a + b;
  }
}

template <typename T> void combine(Reduction reduction, T &target, T update) {
  switch (reduction) {
  case Reduction::None:
    target = update;
    break;
  case Reduction::Add:
    target = arithmetic(false, target, update);
    break;
  case Reduction::Mul:
    target = arithmetic(true, target, update);
    break;
  case Reduction::Max:
    target = std::max(target, update);
    break;
  case Reduction::Min:
    target = std::min(target, update);
    break;
  }
}

/// Calls `fn(T{})` with the type that scattering with `reduction` works in:
/// f32 or i64 for reductions, any element type by its size for plain
/// replacement.
template <typename Fn>
Status visitScatterType(const char *op, Reduction reduction, DType dtype,
                        Fn &&fn) {
  if (reduction == Reduction::None) {
    visitStorageType(dtypeSize(dtype), fn);
    return Status::success();
  }
  if (dtype == DType::F32) {
    fn(float{});
    return Status::success();
  }
  if (dtype == DType::I64) {
    fn(int64_t{});
    return Status::success();
  }
  return fail(op, "reductions need f32 or i64 data, got ", dtypeName(dtype));
}

Status scatterElementsKernel(const Attributes &attrs,
                             const std::vector<const Tensor *> &inputs,
                             const std::vector<Tensor *> &outputs,
                             KernelContext &context) {
  const char *op = "scatter_elements";
  if (Status status =
          checkCall(op, inputs, {"data", "indices", "updates"}, outputs, 1);
      !status)
    return status;
  const Tensor &data = *inputs[0];
  const Tensor &indices = *inputs[1];
  const Tensor &updates = *inputs[2];
  Tensor &result = *outputs[0];
  Reduction reduction;
  if (Status status = parseReduction(op, attrs, reduction); !status)
    return status;
  int64_t axis, axisStride;
  std::vector<int64_t> strides;
  if (Status status = checkElementIndices(op, attrs, data, indices, axis,
                                          strides, axisStride);
      !status)
    return status;
  if (Status status = expectShape(op, "updates", updates, indices.shape());
      !status)
    return status;
  if (Status status = expectDType(op, "updates", updates, data.dtype());
      !status)
    return status;
  if (Status status = checkSameAs(op, result, data); !status)
    return status;

  // Resolve every index before writing, so a bad one leaves no half-done
  // result behind.
  std::vector<int64_t> targets(indices.numElements());
  Status status = Status::success();
  forEachElement<1>(indices.shape(), {strides},
                    [&](int64_t i, const std::array<int64_t, 1> &offsets) {
                      int64_t index;
                      if (!status)
                        return;
                      status = resolveIndex(op, loadIndex(indices, i),
                                            data.dim(axis), index);
                      targets[i] = offsets[0] + index * axisStride;
                    });
  if (!status)
    return status;
  std::memcpy(result.data(), data.data(), data.sizeInBytes());
  // Updates apply in row-major order, so with repeated indices and no
  // reduction the last one wins.
  return visitScatterType(op, reduction, data.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T *y = result.as<T>();
    const T *u = updates.as<T>();
    for (size_t i = 0; i < targets.size(); ++i)
      combine(reduction, y[targets[i]], u[i]);
  });
}

Status scatterNDKernel(const Attributes &attrs,
                       const std::vector<const Tensor *> &inputs,
                       const std::vector<Tensor *> &outputs,
                       KernelContext &context) {
  const char *op = "scatter_nd";
  if (Status status =
          checkCall(op, inputs, {"data", "indices", "updates"}, outputs, 1);
      !status)
    return status;
  const Tensor &data = *inputs[0];
  const Tensor &indices = *inputs[1];
  const Tensor &updates = *inputs[2];
  Tensor &result = *outputs[0];
  Reduction reduction;
  if (Status status = parseReduction(op, attrs, reduction); !status)
    return status;
  if (Status status = expectIndexDType(op, "indices", indices); !status)
    return status;
  if (indices.rank() == 0)
    return fail(op, "indices must have rank 1 or more");
  int64_t tupleSize = indices.shape().back();
  if (tupleSize < 1 || tupleSize > data.rank())
    return fail(op, "index tuples have length ", tupleSize,
                " but data has rank ", data.rank());
  Shape expected(indices.shape().begin(), indices.shape().end() - 1);
  expected.insert(expected.end(), data.shape().begin() + tupleSize,
                  data.shape().end());
  if (Status status = expectShape(op, "updates", updates, expected); !status)
    return status;
  if (Status status = expectDType(op, "updates", updates, data.dtype());
      !status)
    return status;
  if (Status status = checkSameAs(op, result, data); !status)
    return status;

  std::vector<int64_t> strides = contiguousStrides(data.shape());
  int64_t sliceSize =
      numElements(Shape(data.shape().begin() + tupleSize, data.shape().end()));
  std::vector<int64_t> starts(indices.numElements() / tupleSize);
  for (size_t t = 0; t < starts.size(); ++t) {
    int64_t start = 0;
    for (int64_t j = 0; j < tupleSize; ++j) {
      int64_t index;
      if (Status status = resolveIndex(
              op, loadIndex(indices, t * tupleSize + j), data.dim(j), index);
          !status)
        return status;
      start += index * strides[j];
    }
    starts[t] = start;
  }
  std::memcpy(result.data(), data.data(), data.sizeInBytes());
  return visitScatterType(op, reduction, data.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T *y = result.as<T>();
    const T *u = updates.as<T>();
    for (size_t t = 0; t < starts.size(); ++t)
      for (int64_t s = 0; s < sliceSize; ++s)
        combine(reduction, y[starts[t] + s], u[t * sliceSize + s]);
  });
}

//===----------------------------------------------------------------------===//
// reshape, transpose, expand, slice
//===----------------------------------------------------------------------===//

/// Checks the runtime shape operand of a reshape against the result shape,
/// with ONNX Reshape's conventions: 0 copies the input dimension and one -1
/// stands for whatever the element count leaves (which the caller's result
/// shape already fixed).
Status checkShapeOperand(const char *op, const Tensor &shapeOperand,
                         const Tensor &input, const Tensor &result) {
  if (Status status = expectIndexDType(op, "shape", shapeOperand); !status)
    return status;
  if (shapeOperand.rank() != 1 || shapeOperand.dim(0) != result.rank())
    return fail(op, "shape operand has shape ",
                formatShape(shapeOperand.shape()), "; expected ", result.rank(),
                " entries, one per result dimension");
  bool inferred = false;
  for (int64_t i = 0; i < result.rank(); ++i) {
    int64_t dim = loadIndex(shapeOperand, i);
    if (dim == -1 && !inferred) {
      inferred = true;
      continue;
    }
    if (dim == 0 && i < input.rank())
      dim = input.dim(i);
    if (dim != result.dim(i))
      return fail(op, "shape operand entry ", i, " is ",
                  loadIndex(shapeOperand, i), " but the result has shape ",
                  formatShape(result.shape()));
  }
  return Status::success();
}

Status reshapeKernel(const Attributes &attrs,
                     const std::vector<const Tensor *> &inputs,
                     const std::vector<Tensor *> &outputs,
                     KernelContext &context) {
  const char *op = "reshape";
  if (Status status = checkCall(op, inputs, {"input", "shape?"}, outputs, 1);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;
  if (result.numElements() != input.numElements())
    return fail(op, "cannot reshape ", formatShape(input.shape()), " into ",
                formatShape(result.shape()));
  if (const Tensor *shapeOperand = operand(inputs, 1)) {
    if (Status status = checkShapeOperand(op, *shapeOperand, input, result);
        !status)
      return status;
  }
  if (result.data() != input.data())
    std::memcpy(result.data(), input.data(), input.sizeInBytes());
  return Status::success();
}

/// Copies `input` into `result`, reading input element `base + offsets[0]`
/// for each result element under `strides`.
void gatherStrided(const Tensor &input, int64_t base,
                   const std::vector<int64_t> &strides, Tensor &result) {
  visitStorageType(dtypeSize(input.dtype()), [&](auto tag) {
    using T = decltype(tag);
    const T *x = input.as<T>() + base;
    T *y = result.as<T>();
    forEachElement<1>(result.shape(), {strides},
                      [&](int64_t i, const std::array<int64_t, 1> &offsets) {
                        y[i] = x[offsets[0]];
                      });
  });
}

Status transposeKernel(const Attributes &attrs,
                       const std::vector<const Tensor *> &inputs,
                       const std::vector<Tensor *> &outputs,
                       KernelContext &context) {
  const char *op = "transpose";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  std::vector<int64_t> permutation;
  if (Status status = requireArray(op, attrs, "permutation", permutation);
      !status)
    return status;
  if (static_cast<int64_t>(permutation.size()) != input.rank())
    return fail(op, "permutation has ", permutation.size(),
                " entries but the input has rank ", input.rank());
  std::vector<bool> seen(input.rank(), false);
  std::vector<int64_t> inputStrides = contiguousStrides(input.shape());
  std::vector<int64_t> strides;
  Shape expected;
  for (int64_t index : permutation) {
    if (index < 0 || index >= input.rank() || seen[index])
      return fail(op, "permutation must list each of 0 to ", input.rank() - 1,
                  " exactly once");
    seen[index] = true;
    expected.push_back(input.dim(index));
    strides.push_back(inputStrides[index]);
  }
  if (Status status = expectShape(op, "result", result, expected); !status)
    return status;
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;
  gatherStrided(input, 0, strides, result);
  return Status::success();
}

Status expandKernel(const Attributes &attrs,
                    const std::vector<const Tensor *> &inputs,
                    const std::vector<Tensor *> &outputs,
                    KernelContext &context) {
  const char *op = "expand";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  Shape shape;
  if (!broadcastShapes(input.shape(), result.shape(), shape) ||
      shape != result.shape())
    return fail(op, "input shape ", formatShape(input.shape()),
                " does not broadcast to the result shape ",
                formatShape(result.shape()));
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;
  gatherStrided(input, 0, broadcastStrides(input.shape(), shape), result);
  return Status::success();
}

Status sliceKernel(const Attributes &attrs,
                   const std::vector<const Tensor *> &inputs,
                   const std::vector<Tensor *> &outputs,
                   KernelContext &context) {
  const char *op = "slice";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  std::vector<int64_t> starts, ends, axes, steps;
  for (auto [name, array] :
       {std::pair<const char *, std::vector<int64_t> *>{"starts", &starts},
        {"ends", &ends},
        {"axes", &axes},
        {"steps", &steps}}) {
    if (Status status = requireArray(op, attrs, name, *array); !status)
      return status;
  }
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size())
    return fail(op,
                "starts, ends, axes and steps must have one entry per "
                "sliced axis, got ",
                starts.size(), ", ", ends.size(), ", ", axes.size(), " and ",
                steps.size());

  std::vector<int64_t> inputStrides = contiguousStrides(input.shape());
  std::vector<int64_t> strides = inputStrides;
  Shape expected = input.shape();
  std::vector<bool> sliced(input.rank(), false);
  int64_t base = 0;
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t axis;
    if (Status status = resolveAxis(op, axes[i], input.rank(), axis); !status)
      return status;
    if (sliced[axis])
      return fail(op, "axis ", axes[i], " is listed twice");
    sliced[axis] = true;
    if (steps[i] == 0)
      return fail(op, "step of axis ", axes[i], " is 0");
    int64_t first, count;
    sliceDim(input.dim(axis), starts[i], ends[i], steps[i], first, count);
    expected[axis] = count;
    // With one element the step is never taken; it may be huge.
    strides[axis] = count > 1 ? inputStrides[axis] * steps[i] : 0;
    base += first * inputStrides[axis];
  }
  if (Status status = expectShape(op, "result", result, expected); !status)
    return status;
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;
  // An empty slice may start one past the end of its dimension; reading
  // nothing, it must not form that pointer either.
  gatherStrided(input, result.numElements() ? base : 0, strides, result);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// concat, split, trilu
//===----------------------------------------------------------------------===//

/// Checks that `part` matches `whole` in element type and in every dimension
/// but `axis`.
Status checkPart(const char *op, const char *what, size_t index,
                 const Tensor &part, const Tensor &whole, int64_t axis) {
  bool matches = part.rank() == whole.rank() && part.dtype() == whole.dtype();
  for (int64_t d = 0; matches && d < whole.rank(); ++d)
    matches = d == axis || part.dim(d) == whole.dim(d);
  if (!matches)
    return fail(op, what, " ", index, " (", dtypeName(part.dtype()), ", ",
                formatShape(part.shape()), ") does not match ",
                dtypeName(whole.dtype()), ", ", formatShape(whole.shape()),
                " outside axis ", axis);
  return Status::success();
}

/// Bytes of one slab of `tensor` at `axis`: its dimensions from `axis` on.
size_t slabBytes(const Tensor &tensor, int64_t axis) {
  return numElements(
             Shape(tensor.shape().begin() + axis, tensor.shape().end())) *
         dtypeSize(tensor.dtype());
}

Status concatKernel(const Attributes &attrs,
                    const std::vector<const Tensor *> &inputs,
                    const std::vector<Tensor *> &outputs,
                    KernelContext &context) {
  const char *op = "concat";
  if (outputs.size() != 1 || !outputs[0])
    return fail(op, "expected 1 output, got ", outputs.size());
  if (inputs.empty())
    return fail(op, "needs at least one input");
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i])
      return fail(op, "input ", i, " is missing");
  }
  Tensor &result = *outputs[0];
  int64_t axisAttr, axis;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, result.rank(), axis); !status)
    return status;
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (Status status = checkPart(op, "input", i, *inputs[i], result, axis);
        !status)
      return status;
    total += inputs[i]->dim(axis);
  }
  if (total != result.dim(axis))
    return fail(op, "inputs add up to ", total, " along axis ", axisAttr,
                " but the result has ", result.dim(axis));
  int64_t outer =
      numElements(Shape(result.shape().begin(), result.shape().begin() + axis));
  auto *target = static_cast<uint8_t *>(result.data());
  for (int64_t o = 0; o < outer; ++o) {
    for (const Tensor *input : inputs) {
      size_t bytes = slabBytes(*input, axis);
      std::memcpy(target,
                  static_cast<const uint8_t *>(input->data()) + o * bytes,
                  bytes);
      target += bytes;
    }
  }
  return Status::success();
}

Status splitKernel(const Attributes &attrs,
                   const std::vector<const Tensor *> &inputs,
                   const std::vector<Tensor *> &outputs,
                   KernelContext &context) {
  const char *op = "split";
  if (outputs.empty())
    return fail(op, "needs at least one result");
  if (Status status = checkCall(op, inputs, {"input"}, outputs, outputs.size());
      !status)
    return status;
  const Tensor &input = *inputs[0];
  int64_t axisAttr, axis;
  if (Status status = requireInt(op, attrs, "axis", axisAttr); !status)
    return status;
  if (Status status = resolveAxis(op, axisAttr, input.rank(), axis); !status)
    return status;
  int64_t total = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (Status status = checkPart(op, "result", i, *outputs[i], input, axis);
        !status)
      return status;
    total += outputs[i]->dim(axis);
  }
  if (total != input.dim(axis))
    return fail(op, "results add up to ", total, " along axis ", axisAttr,
                " but the input has ", input.dim(axis));
  int64_t outer =
      numElements(Shape(input.shape().begin(), input.shape().begin() + axis));
  const auto *source = static_cast<const uint8_t *>(input.data());
  for (int64_t o = 0; o < outer; ++o) {
    for (Tensor *output : outputs) {
      size_t bytes = slabBytes(*output, axis);
      std::memcpy(static_cast<uint8_t *>(output->data()) + o * bytes, source,
                  bytes);
      source += bytes;
    }
  }
  return Status::success();
}

Status triluKernel(const Attributes &attrs,
                   const std::vector<const Tensor *> &inputs,
                   const std::vector<Tensor *> &outputs,
                   KernelContext &context) {
  const char *op = "trilu";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  int64_t k;
  if (Status status = requireInt(op, attrs, "k", k); !status)
    return status;
  if (input.rank() < 2)
    return fail(op, "input must have rank 2 or more, got ",
                formatShape(input.shape()));
  if (Status status = checkSameAs(op, result, input); !status)
    return status;
  bool upper = attrs.getInt("upper");
  int64_t rows = input.dim(input.rank() - 2);
  int64_t cols = input.dim(input.rank() - 1);
  // Diagonals beyond the matrix all mean "everything" or "nothing"; clamping
  // keeps i + k from overflowing.
  k = std::clamp<int64_t>(k, -rows - 1, cols + 1);
  size_t elementSize = dtypeSize(input.dtype());
  int64_t matrices = rows * cols == 0 ? 0 : input.numElements() / (rows * cols);
  const auto *source = static_cast<const uint8_t *>(input.data());
  auto *target = static_cast<uint8_t *>(result.data());
  for (int64_t m = 0; m < matrices; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      // Row i keeps columns j with j - i >= k (upper) or j - i <= k (lower);
      // the other columns become zero, all-zero bytes in every type.
      int64_t boundary =
          std::clamp<int64_t>(upper ? i + k : i + k + 1, 0, cols);
      int64_t keepBegin = upper ? boundary : 0;
      int64_t keepEnd = upper ? cols : boundary;
      size_t row = ((m * rows) + i) * cols * elementSize;
      std::memset(target + row, 0, cols * elementSize);
      std::memcpy(target + row + keepBegin * elementSize,
                  source + row + keepBegin * elementSize,
                  (keepEnd - keepBegin) * elementSize);
    }
  }
  return Status::success();
}

} // namespace

void detail::addShapeKernels(KernelTable &table) {
  table["gather"] = gatherKernel;
  table["gather_elements"] = gatherElementsKernel;
  table["scatter_elements"] = scatterElementsKernel;
  table["scatter_nd"] = scatterNDKernel;
  table["reshape"] = reshapeKernel;
  table["transpose"] = transposeKernel;
  table["expand"] = expandKernel;
  table["slice"] = sliceKernel;
  table["concat"] = concatKernel;
  table["split"] = splitKernel;
  table["trilu"] = triluKernel;
}
