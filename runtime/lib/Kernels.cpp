//===- Kernels.cpp - kernel registry and shared kernel support ------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Kernels.h"

#include "KernelSupport.h"

using namespace moe::rt;
using namespace moe::rt::detail;

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

int64_t Attributes::getInt(const std::string &name, int64_t fallback) const {
  auto it = ints.find(name);
  return it == ints.end() ? fallback : it->second;
}

double Attributes::getFloat(const std::string &name, double fallback) const {
  auto it = floats.find(name);
  return it == floats.end() ? fallback : it->second;
}

const std::vector<int64_t> *
Attributes::getArray(const std::string &name) const {
  auto it = arrays.find(name);
  return it == arrays.end() ? nullptr : &it->second;
}

std::string Attributes::getString(const std::string &name,
                                  const std::string &fallback) const {
  auto it = strings.find(name);
  return it == strings.end() ? fallback : it->second;
}

bool Attributes::has(const std::string &name) const {
  return ints.count(name) || floats.count(name) || arrays.count(name) ||
         strings.count(name);
}

//===----------------------------------------------------------------------===//
// Registry
//===----------------------------------------------------------------------===//

static const KernelTable &kernelTable() {
  static const KernelTable table = [] {
    KernelTable kernels;
    addElementwiseKernels(kernels);
    addLinalgKernels(kernels);
    addShapeKernels(kernels);
    addMoEKernels(kernels);
    addCollectiveKernels(kernels);
    return kernels;
  }();
  return table;
}

KernelFn moe::rt::findKernel(const std::string &op) {
  auto it = kernelTable().find(op);
  return it == kernelTable().end() ? nullptr : it->second;
}

std::vector<std::string> moe::rt::kernelNames() {
  std::vector<std::string> names;
  for (const auto &entry : kernelTable())
    names.push_back(entry.first);
  return names;
}

//===----------------------------------------------------------------------===//
// Checks
//===----------------------------------------------------------------------===//

Status detail::checkCall(const std::string &op,
                         const std::vector<const Tensor *> &inputs,
                         std::initializer_list<const char *> operandNames,
                         const std::vector<Tensor *> &outputs,
                         size_t numResults) {
  if (inputs.size() > operandNames.size())
    return fail(op, "expected at most ", operandNames.size(), " operands, got ",
                inputs.size());
  size_t index = 0;
  for (const char *name : operandNames) {
    std::string text = name;
    bool optional = !text.empty() && text.back() == '?';
    if (!optional && !operand(inputs, index))
      return fail(op, "operand '", text, "' (#", index, ") is missing");
    ++index;
  }
  if (outputs.size() != numResults)
    return fail(op, "expected ", numResults, " outputs, got ", outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i])
      return fail(op, "output #", i, " is null");
  }
  return Status::success();
}

Status detail::expectDType(const std::string &op, const std::string &name,
                           const Tensor &tensor, DType dtype) {
  if (tensor.dtype() != dtype)
    return fail(op, name, " has element type ", dtypeName(tensor.dtype()),
                "; expected ", dtypeName(dtype));
  return Status::success();
}

Status detail::expectShape(const std::string &op, const std::string &name,
                           const Tensor &tensor, const Shape &shape) {
  if (tensor.shape() != shape)
    return fail(op, name, " has shape ", formatShape(tensor.shape()),
                "; expected ", formatShape(shape));
  return Status::success();
}

Status detail::expectIndexDType(const std::string &op, const std::string &name,
                                const Tensor &tensor) {
  if (tensor.dtype() != DType::I64 && tensor.dtype() != DType::I32)
    return fail(op, name, " has element type ", dtypeName(tensor.dtype()),
                "; expected i64 or i32");
  return Status::success();
}

Status detail::resolveAxis(const std::string &op, int64_t axis, int64_t rank,
                           int64_t &resolved) {
  if (axis < -rank || axis >= rank)
    return fail(op, "axis ", axis, " is out of range for rank ", rank);
  resolved = axis < 0 ? axis + rank : axis;
  return Status::success();
}

Status detail::requireInt(const std::string &op, const Attributes &attrs,
                          const std::string &name, int64_t &value) {
  auto it = attrs.ints.find(name);
  if (it == attrs.ints.end())
    return fail(op, "missing integer attribute '", name, "'");
  value = it->second;
  return Status::success();
}

Status detail::requireFloat(const std::string &op, const Attributes &attrs,
                            const std::string &name, double &value) {
  auto it = attrs.floats.find(name);
  if (it == attrs.floats.end())
    return fail(op, "missing float attribute '", name, "'");
  value = it->second;
  return Status::success();
}

Status detail::requireString(const std::string &op, const Attributes &attrs,
                             const std::string &name, std::string &value) {
  auto it = attrs.strings.find(name);
  if (it == attrs.strings.end())
    return fail(op, "missing attribute '", name, "'");
  value = it->second;
  return Status::success();
}

Status detail::requireArray(const std::string &op, const Attributes &attrs,
                            const std::string &name,
                            std::vector<int64_t> &value) {
  const std::vector<int64_t> *array = attrs.getArray(name);
  if (!array)
    return fail(op, "missing array attribute '", name, "'");
  value = *array;
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Shapes
//===----------------------------------------------------------------------===//

std::vector<int64_t> detail::contiguousStrides(const Shape &shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

bool detail::broadcastShapes(const Shape &lhs, const Shape &rhs,
                             Shape &result) {
  size_t rank = std::max(lhs.size(), rhs.size());
  Shape shape(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t a = i < rank - lhs.size() ? 1 : lhs[i - (rank - lhs.size())];
    int64_t b = i < rank - rhs.size() ? 1 : rhs[i - (rank - rhs.size())];
    if (a != b && a != 1 && b != 1)
      return false;
    shape[i] = a == 1 ? b : a;
  }
  result = std::move(shape);
  return true;
}

std::vector<int64_t> detail::broadcastStrides(const Shape &operand,
                                              const Shape &shape) {
  std::vector<int64_t> own = contiguousStrides(operand);
  std::vector<int64_t> strides(shape.size(), 0);
  size_t lead = shape.size() - operand.size();
  for (size_t i = 0; i < operand.size(); ++i)
    strides[lead + i] = operand[i] == 1 ? 0 : own[i];
  return strides;
}
