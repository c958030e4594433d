//===- ConstFolding.cpp - evaluating shape computations while importing ---===//
//
// Part of moe-compiler.
//
// Exporters emit Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains and
// constant masks (ConstantOfShape -> Trilu -> Where). When every input of
// such a node is known, the importer evaluates it here and the node never
// reaches the IR. Evaluation follows the ONNX reference semantics on small
// tensors (at most kMaxFoldElements elements).
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "moe/Dialect/MoE/IR/MoEOps.h"

#include <cmath>
#include <limits>

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace moe;
using namespace moe::onnx_import;

namespace {

/// Linear index into a tensor of `inShape` that broadcasts to `outShape`, for
/// the element at linear index `outIndex` of the output.
int64_t broadcastIndex(int64_t outIndex, ArrayRef<int64_t> outShape,
                       ArrayRef<int64_t> inShape) {
  int64_t inIndex = 0, inStride = 1;
  size_t offset = outShape.size() - inShape.size();
  for (int64_t d = static_cast<int64_t>(outShape.size()) - 1; d >= 0; --d) {
    int64_t coordinate = outIndex % outShape[d];
    outIndex /= outShape[d];
    if (d < static_cast<int64_t>(offset))
      continue;
    int64_t inDim = inShape[d - offset];
    if (inDim != 1)
      inIndex += coordinate * inStride;
    inStride *= inDim;
  }
  return inIndex;
}

bool isFoldableOp(StringRef type) {
  return llvm::StringSwitch<bool>(type)
      .Cases({"Constant", "Shape", "Size", "ConstantOfShape", "Range"}, true)
      .Cases({"Neg", "Abs", "Not", "Sqrt", "Reciprocal", "Cast"}, true)
      .Cases({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}, true)
      .Cases({"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"},
             true)
      .Cases({"And", "Or", "Where", "Gather", "GatherND", "Concat"}, true)
      .Cases({"Unsqueeze", "Squeeze", "Reshape", "Flatten", "Slice"}, true)
      .Cases({"Expand", "Trilu", "Identity", "OneHot"}, true)
      .Default(false);
}

bool isElementwiseOp(StringRef type) {
  return llvm::is_contained({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min",
                             "Equal", "Less", "LessOrEqual", "Greater",
                             "GreaterOrEqual", "And", "Or", "Where"},
                            type);
}

} // namespace

LogicalResult GraphImporter::tryFold(const onnx::NodeProto &node,
                                     bool &folded) {
  folded = false;
  StringRef type = node.op_type();
  if (!isDefaultDomain(node.domain()) || !isFoldableOp(type) ||
      node.output_size() < 1)
    return success();
  Type i64 = builder.getI64Type();

  // Shape and Size need only a static input type, not known values.
  if (type == "Shape" || type == "Size") {
    ArrayRef<int64_t> shape;
    if (const ConstTensor *constant = getConst(node.input(0))) {
      shape = constant->shape;
    } else {
      auto it = values.find(node.input(0));
      if (it != values.end()) {
        shape = shapeOf(it->second);
      } else if (pendingWeights.count(node.input(0))) {
        const auto &tensor = file.model.graph().initializer(
            pendingWeights.lookup(node.input(0)));
        static thread_local SmallVector<int64_t> dims;
        dims.assign(tensor.dims().begin(), tensor.dims().end());
        shape = dims;
      } else {
        return success();
      }
    }
    if (llvm::any_of(shape, ShapedType::isDynamic))
      return success();
    if (type == "Size") {
      int64_t count = checkedNumElements(shape);
      if (count < 0)
        return success(); // Too large; the handler reports it.
      ConstTensor size = ConstTensor::zeros({}, i64);
      size.ints[0] = count;
      constants[node.output(0)] = size;
    } else {
      int64_t rank = shape.size();
      int64_t start = getIntAttr(node, "start", 0);
      int64_t end = getIntAttr(node, "end", rank);
      start = std::clamp<int64_t>(start < 0 ? start + rank : start, 0, rank);
      end = std::clamp<int64_t>(end < 0 ? end + rank : end, 0, rank);
      constants[node.output(0)] = ConstTensor::ofInts(
          shape.slice(start, std::max<int64_t>(end - start, 0)), i64);
    }
    folded = true;
    return success();
  }

  if (type == "Constant") {
    ConstTensor result;
    if (const onnx::AttributeProto *value = findAttr(node, "value")) {
      FailureOr<ConstTensor> decoded = decodeTensor(value->t(), "constant");
      if (failed(decoded))
        return failure();
      result = std::move(*decoded);
    } else if (const onnx::AttributeProto *value =
                   findAttr(node, "value_float")) {
      result = ConstTensor::zeros({}, builder.getF32Type());
      result.floats[0] = value->f();
    } else if (const onnx::AttributeProto *value =
                   findAttr(node, "value_floats")) {
      result = ConstTensor::zeros({value->floats_size()}, builder.getF32Type());
      for (int i = 0; i < value->floats_size(); ++i)
        result.floats[i] = value->floats(i);
    } else if (const onnx::AttributeProto *value =
                   findAttr(node, "value_int")) {
      result = ConstTensor::zeros({}, i64);
      result.ints[0] = value->i();
    } else if (const onnx::AttributeProto *value =
                   findAttr(node, "value_ints")) {
      result = ConstTensor::ofInts(
          SmallVector<int64_t>(value->ints().begin(), value->ints().end()),
          i64);
    } else {
      return success(); // The handler reports the unsupported form.
    }
    constants[node.output(0)] = std::move(result);
    folded = true;
    return success();
  }

  // Everything else folds only when all present inputs are known.
  SmallVector<const ConstTensor *> inputs;
  for (int i = 0; i < node.input_size(); ++i) {
    if (node.input(i).empty()) {
      inputs.push_back(nullptr);
      continue;
    }
    const ConstTensor *constant = getConst(node.input(i));
    if (!constant)
      return success();
    inputs.push_back(constant);
  }
  // A node missing a required input is left to its handler, which reports
  // it; the evaluation below may then index every required input.
  size_t required = llvm::StringSwitch<size_t>(type)
                        .Cases({"Range", "OneHot", "Where", "Slice"}, 3)
                        .Cases({"Gather", "GatherND", "Expand", "Reshape"}, 2)
                        .Default(isElementwiseOp(type) ? 2 : 1);
  if (inputs.size() < required ||
      llvm::is_contained(ArrayRef(inputs).take_front(required), nullptr) ||
      (type == "Concat" && llvm::is_contained(inputs, nullptr)))
    return success();
  auto readInts = [](const ConstTensor *tensor) {
    SmallVector<int64_t> result;
    for (int64_t i = 0; i < tensor->numElements(); ++i)
      result.push_back(tensor->asInt(i));
    return result;
  };
  auto tooLarge = [&](ArrayRef<int64_t> shape) {
    int64_t count = checkedNumElements(shape);
    return count < 0 || count > kMaxFoldElements;
  };

  ConstTensor result;
  if (type == "ConstantOfShape") {
    SmallVector<int64_t> shape = readInts(inputs[0]);
    if (tooLarge(shape))
      return nodeError(node)
             << "creates a tensor of shape [" << llvm::interleaved(shape)
             << "], too large to build while compiling";
    ConstTensor fill = ConstTensor::zeros({}, builder.getF32Type());
    if (const onnx::AttributeProto *value = findAttr(node, "value")) {
      FailureOr<ConstTensor> decoded = decodeTensor(value->t(), "value");
      if (failed(decoded))
        return failure();
      if (decoded->numElements() != 1)
        return nodeError(node) << "value must hold one element";
      fill = std::move(*decoded);
    }
    result = ConstTensor::zeros(shape, fill.elementType);
    for (int64_t i = 0; i < result.numElements(); ++i)
      result.set(i, fill.asDouble(0));
    if (!fill.isFloat())
      for (int64_t i = 0; i < result.numElements(); ++i)
        result.setInt(i, fill.asInt(0));
  } else if (type == "Range") {
    const ConstTensor *start = inputs[0], *limit = inputs[1],
                      *delta = inputs[2];
    if (start->numElements() != 1 || limit->numElements() != 1 ||
        delta->numElements() != 1)
      return nodeError(node) << "start, limit and delta must be scalars";
    double s = start->asDouble(0), l = limit->asDouble(0),
           d = delta->asDouble(0);
    if (d == 0)
      return nodeError(node) << "delta is 0";
    double steps = std::ceil((l - s) / d);
    if (!(steps <= kMaxFoldElements))
      return success(); // Too large (or not finite) to build here.
    int64_t count = std::max<int64_t>(static_cast<int64_t>(steps), 0);
    result = ConstTensor::zeros({count}, start->elementType);
    for (int64_t i = 0; i < count; ++i) {
      if (result.isFloat())
        result.floats[i] = s + i * d;
      else
        result.ints[i] = start->asInt(0) + i * delta->asInt(0);
    }
  } else if (type == "Identity") {
    result = *inputs[0];
  } else if (type == "Neg" || type == "Abs" || type == "Not" ||
             type == "Sqrt" || type == "Reciprocal" || type == "Cast") {
    const ConstTensor *input = inputs[0];
    Type elementType = input->elementType;
    if (type == "Cast") {
      elementType = convertDataType(getIntAttr(node, "to", -1), context);
      if (!elementType)
        return success();
    }
    result = ConstTensor::zeros(input->shape, elementType);
    for (int64_t i = 0; i < input->numElements(); ++i) {
      if (!input->isFloat() && !result.isFloat() && type != "Sqrt" &&
          type != "Reciprocal") {
        int64_t v = input->asInt(i);
        // Negation wraps like two's complement instead of overflowing.
        int64_t negated = static_cast<int64_t>(0ULL - static_cast<uint64_t>(v));
        result.setInt(i, type == "Neg"   ? negated
                         : type == "Abs" ? (v < 0 ? negated : v)
                         : type == "Not" ? !v
                                         : v);
        continue;
      }
      double v = input->asDouble(i);
      result.set(i, type == "Neg"          ? -v
                    : type == "Abs"        ? std::fabs(v)
                    : type == "Not"        ? (v == 0.0)
                    : type == "Sqrt"       ? std::sqrt(v)
                    : type == "Reciprocal" ? 1.0 / v
                                           : v);
    }
  } else if (isElementwiseOp(type)) {
    // Binary arithmetic, comparison, logic and three-way Where share the
    // broadcasting index computation.
    {
      SmallVector<int64_t> shape = inputs[0]->shape;
      for (const ConstTensor *input : llvm::drop_begin(inputs)) {
        FailureOr<SmallVector<int64_t>> broadcast =
            broadcastShapes(shape, input->shape);
        if (failed(broadcast))
          return nodeError(node) << "operand shapes do not broadcast";
        shape = *broadcast;
      }
      if (tooLarge(shape))
        return success();
      bool compare =
          llvm::is_contained({"Equal", "Less", "LessOrEqual", "Greater",
                              "GreaterOrEqual", "And", "Or"},
                             type);
      Type elementType = compare           ? builder.getI1Type()
                         : type == "Where" ? inputs[1]->elementType
                                           : inputs[0]->elementType;
      result = ConstTensor::zeros(shape, elementType);
      for (int64_t i = 0; i < result.numElements(); ++i) {
        auto at = [&](int operand) {
          return broadcastIndex(i, shape, inputs[operand]->shape);
        };
        if (type == "Where") {
          bool condition = inputs[0]->asInt(at(0)) != 0;
          const ConstTensor *chosen = condition ? inputs[1] : inputs[2];
          int64_t index = condition ? at(1) : at(2);
          if (result.isFloat())
            result.floats[i] = chosen->asDouble(index);
          else
            result.ints[i] = chosen->asInt(index);
          continue;
        }
        const ConstTensor *lhs = inputs[0], *rhs = inputs[1];
        if (!lhs->isFloat() && !rhs->isFloat()) {
          int64_t a = lhs->asInt(at(0)), b = rhs->asInt(at(1));
          if (type == "Div" &&
              (b == 0 || (a == std::numeric_limits<int64_t>::min() && b == -1)))
            return nodeError(node) << "integer division by zero or overflow";
          int64_t checked = 0;
          if ((type == "Add" && llvm::AddOverflow(a, b, checked)) ||
              (type == "Sub" && llvm::SubOverflow(a, b, checked)) ||
              (type == "Mul" && llvm::MulOverflow(a, b, checked)))
            return nodeError(node) << "integer " << type << " of " << a
                                   << " and " << b << " overflows";
          int64_t value = type == "Add" || type == "Sub" || type == "Mul"
                              ? checked
                          : type == "Div" ? a / b
                          : type == "Pow" ? static_cast<int64_t>(std::pow(a, b))
                          : type == "Max" ? std::max(a, b)
                          : type == "Min" ? std::min(a, b)
                          : type == "Equal"          ? a == b
                          : type == "Less"           ? a < b
                          : type == "LessOrEqual"    ? a <= b
                          : type == "Greater"        ? a > b
                          : type == "GreaterOrEqual" ? a >= b
                          : type == "And"            ? (a && b)
                                                     : (a || b);
          result.setInt(i, value);
          continue;
        }
        double a = lhs->asDouble(at(0)), b = rhs->asDouble(at(1));
        double value = type == "Add"              ? a + b
                       : type == "Sub"            ? a - b
                       : type == "Mul"            ? a * b
                       : type == "Div"            ? a / b
                       : type == "Pow"            ? std::pow(a, b)
                       : type == "Max"            ? std::max(a, b)
                       : type == "Min"            ? std::min(a, b)
                       : type == "Equal"          ? a == b
                       : type == "Less"           ? a < b
                       : type == "LessOrEqual"    ? a <= b
                       : type == "Greater"        ? a > b
                       : type == "GreaterOrEqual" ? a >= b
                       : type == "And"            ? (a != 0 && b != 0)
                                                  : (a != 0 || b != 0);
        result.set(i, value);
      }
    }
  } else {
    const ConstTensor *data = inputs[0];
    if (type == "Gather") {
      const ConstTensor *indices = inputs[1];
      int64_t rank = data->shape.size();
      FailureOr<int64_t> axis =
          resolveAxis(node, getIntAttr(node, "axis", 0), rank);
      if (failed(axis))
        return failure();
      SmallVector<int64_t> shape(ArrayRef(data->shape).take_front(*axis));
      llvm::append_range(shape, indices->shape);
      llvm::append_range(shape, ArrayRef(data->shape).drop_front(*axis + 1));
      if (tooLarge(shape))
        return success();
      int64_t outer =
          checkedNumElements(ArrayRef(data->shape).take_front(*axis));
      int64_t inner =
          checkedNumElements(ArrayRef(data->shape).drop_front(*axis + 1));
      int64_t axisSize = data->shape[*axis];
      result = ConstTensor::zeros(shape, data->elementType);
      int64_t out = 0;
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t j = 0; j < indices->numElements(); ++j) {
          int64_t index = indices->asInt(j);
          if (index < 0)
            index += axisSize;
          if (index < 0 || index >= axisSize)
            return nodeError(node) << "index " << indices->asInt(j)
                                   << " is out of range for size " << axisSize;
          for (int64_t k = 0; k < inner; ++k, ++out) {
            int64_t from = (o * axisSize + index) * inner + k;
            if (result.isFloat())
              result.floats[out] = data->floats[from];
            else
              result.ints[out] = data->ints[from];
          }
        }
      }
    } else if (type == "GatherND") {
      const ConstTensor *indices = inputs[1];
      if (getIntAttr(node, "batch_dims", 0) != 0 || indices->shape.empty())
        return success();
      int64_t q = indices->shape.back();
      int64_t rank = data->shape.size();
      if (q < 1 || q > rank)
        return nodeError(node) << "index tuples of length " << q
                               << " do not fit data of rank " << rank;
      SmallVector<int64_t> shape(ArrayRef(indices->shape).drop_back());
      llvm::append_range(shape, ArrayRef(data->shape).drop_front(q));
      if (tooLarge(shape))
        return success();
      int64_t slice = checkedNumElements(ArrayRef(data->shape).drop_front(q));
      SmallVector<int64_t> strides = stridesOf(data->shape);
      result = ConstTensor::zeros(shape, data->elementType);
      int64_t tuples = indices->numElements() / q;
      for (int64_t t = 0; t < tuples; ++t) {
        int64_t offset = 0;
        for (int64_t d = 0; d < q; ++d) {
          int64_t index = indices->asInt(t * q + d);
          if (index < 0)
            index += data->shape[d];
          if (index < 0 || index >= data->shape[d])
            return nodeError(node)
                   << "index " << indices->asInt(t * q + d)
                   << " is out of range for size " << data->shape[d];
          offset += index * strides[d];
        }
        for (int64_t k = 0; k < slice; ++k) {
          if (result.isFloat())
            result.floats[t * slice + k] = data->floats[offset + k];
          else
            result.ints[t * slice + k] = data->ints[offset + k];
        }
      }
    } else if (type == "OneHot") {
      // OneHot(indices, depth, values = [off, on]) along `axis`.
      const ConstTensor *depthTensor = inputs[1], *valuesTensor = inputs[2];
      if (depthTensor->numElements() != 1 || valuesTensor->numElements() != 2)
        return nodeError(node) << "depth must hold one value and values two";
      int64_t depth = depthTensor->asInt(0);
      int64_t rank = data->shape.size() + 1;
      FailureOr<int64_t> axis =
          resolveAxis(node, getIntAttr(node, "axis", -1), rank);
      if (failed(axis))
        return failure();
      if (depth < 0)
        return nodeError(node) << "depth " << depth << " is negative";
      SmallVector<int64_t> shape(ArrayRef(data->shape).take_front(*axis));
      shape.push_back(depth);
      llvm::append_range(shape, ArrayRef(data->shape).drop_front(*axis));
      if (tooLarge(shape))
        return success();
      result = ConstTensor::zeros(shape, valuesTensor->elementType);
      int64_t inner =
          checkedNumElements(ArrayRef(data->shape).drop_front(*axis));
      for (int64_t i = 0; i < result.numElements(); ++i) {
        int64_t position = (i / inner) % depth;
        int64_t source = (i / (inner * depth)) * inner + i % inner;
        int64_t index = data->asInt(source);
        if (index < 0)
          index += depth;
        bool on = index == position;
        if (result.isFloat())
          result.floats[i] = valuesTensor->asDouble(on ? 1 : 0);
        else
          result.ints[i] = valuesTensor->asInt(on ? 1 : 0);
      }
    } else if (type == "Concat") {
      int64_t rank = data->shape.size();
      FailureOr<int64_t> axis =
          resolveAxis(node, getIntAttr(node, "axis", 0), rank);
      if (failed(axis))
        return failure();
      SmallVector<int64_t> shape = data->shape;
      shape[*axis] = 0;
      for (const ConstTensor *input : inputs) {
        if (input->shape.size() != data->shape.size() ||
            input->elementType != data->elementType)
          return nodeError(node) << "inputs differ in rank or type";
        for (int64_t d = 0; d < rank; ++d)
          if (d != *axis && input->shape[d] != data->shape[d])
            return nodeError(node)
                   << "inputs differ outside the concatenation axis";
        shape[*axis] += input->shape[*axis];
      }
      if (tooLarge(shape))
        return success();
      result = ConstTensor::zeros(shape, data->elementType);
      int64_t outer = checkedNumElements(ArrayRef(shape).take_front(*axis));
      int64_t out = 0;
      for (int64_t o = 0; o < outer; ++o) {
        for (const ConstTensor *input : inputs) {
          int64_t chunk =
              checkedNumElements(ArrayRef(input->shape).drop_front(*axis));
          for (int64_t k = 0; k < chunk; ++k, ++out) {
            if (result.isFloat())
              result.floats[out] = input->floats[o * chunk + k];
            else
              result.ints[out] = input->ints[o * chunk + k];
          }
        }
      }
    } else if (type == "Unsqueeze" || type == "Squeeze" || type == "Reshape" ||
               type == "Flatten") {
      FailureOr<SmallVector<int64_t>> shape = reshapeTarget(node, data->shape);
      if (failed(shape))
        return failure();
      if (checkedNumElements(*shape) != data->numElements())
        return nodeError(node)
               << "cannot reshape [" << llvm::interleaved(data->shape)
               << "] into [" << llvm::interleaved(*shape) << "]";
      result = *data;
      result.shape = *shape;
    } else if (type == "Expand") {
      FailureOr<SmallVector<int64_t>> shape =
          broadcastShapes(data->shape, readInts(inputs[1]));
      if (failed(shape))
        return nodeError(node) << "input does not broadcast to the shape";
      if (tooLarge(*shape))
        return success();
      result = ConstTensor::zeros(*shape, data->elementType);
      for (int64_t i = 0; i < result.numElements(); ++i) {
        int64_t from = broadcastIndex(i, *shape, data->shape);
        if (result.isFloat())
          result.floats[i] = data->floats[from];
        else
          result.ints[i] = data->ints[from];
      }
    } else if (type == "Trilu") {
      if (data->shape.size() < 2)
        return nodeError(node) << "input must have rank 2 or more";
      if (inputs.size() > 1 && inputs[1] && inputs[1]->numElements() != 1)
        return nodeError(node) << "k must hold one value";
      int64_t k = inputs.size() > 1 && inputs[1] ? inputs[1]->asInt(0) : 0;
      bool upper = getIntAttr(node, "upper", 1) != 0;
      result = *data;
      int64_t rows = data->shape[data->shape.size() - 2];
      int64_t cols = data->shape.back();
      for (int64_t i = 0; i < result.numElements(); ++i) {
        int64_t col = i % cols, row = (i / cols) % rows;
        bool keep = upper ? col - row >= k : col - row <= k;
        if (!keep)
          result.set(i, 0.0);
      }
    } else if (type == "Slice") {
      // Only 1-D slices appear in shape computations.
      if (data->shape.size() != 1 || node.input_size() > 5)
        return success();
      SmallVector<int64_t> starts = readInts(inputs[1]),
                           ends = readInts(inputs[2]);
      SmallVector<int64_t> steps = inputs.size() > 4 && inputs[4]
                                       ? readInts(inputs[4])
                                       : SmallVector<int64_t>{1};
      if (starts.size() != 1 || ends.size() != 1 || steps.size() != 1 ||
          steps[0] == 0)
        return success();
      int64_t dim = data->shape[0];
      int64_t count = sliceDimSize(dim, starts[0], ends[0], steps[0]);
      int64_t start = starts[0] < 0 ? starts[0] + dim : starts[0];
      start = steps[0] > 0 ? std::clamp<int64_t>(start, 0, dim)
                           : std::clamp<int64_t>(start, 0, dim - 1);
      result = ConstTensor::zeros({count}, data->elementType);
      for (int64_t i = 0; i < count; ++i) {
        int64_t from = start + i * steps[0];
        if (result.isFloat())
          result.floats[i] = data->floats[from];
        else
          result.ints[i] = data->ints[from];
      }
    } else {
      return success();
    }
  }
  constants[node.output(0)] = std::move(result);
  folded = true;
  return success();
}
