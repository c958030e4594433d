//===- ONNXOpConversions.cpp - ONNX nodes to moe ops ----------------------===//
//
// Part of moe-compiler.
//
// One handler per ONNX op (or family). Each computes its result types with
// the ONNX shape rules, checks what the op's verifier would reject so the
// error names the node, and creates the moe op.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "llvm/ADT/SmallSet.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace moe;
using namespace moe::onnx_import;

namespace {

template <typename OpTy>
Value createUnary(OpBuilder &builder, Location loc, Value input) {
  return OpTy::create(builder, loc, input.getType(), input);
}

template <typename OpTy>
Value createBinary(OpBuilder &builder, Location loc, Type type, Value lhs,
                   Value rhs) {
  return OpTy::create(builder, loc, type, lhs, rhs);
}

} // namespace

LogicalResult GraphImporter::convertUnary(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  bool isFloat = isa<FloatType>(elementTypeOf(*input));
  StringRef type = node.op_type();
  if (type == "Not") {
    if (!elementTypeOf(*input).isInteger(1))
      return nodeError(node) << "needs a bool input, got " << input->getType();
    setResult(node, 0, NotOp::create(builder, nodeLoc(node), *input));
    return success();
  }
  if (!isFloat && type != "Neg" && type != "Abs")
    return nodeError(node) << "needs a floating-point input, got "
                           << input->getType();
  Location loc = nodeLoc(node);
  using Create = Value (*)(OpBuilder &, Location, Value);
  Create create = llvm::StringSwitch<Create>(type)
                      .Case("Neg", createUnary<NegOp>)
                      .Case("Abs", createUnary<AbsOp>)
                      .Case("Exp", createUnary<ExpOp>)
                      .Case("Log", createUnary<LogOp>)
                      .Case("Sqrt", createUnary<SqrtOp>)
                      .Case("Reciprocal", createUnary<ReciprocalOp>)
                      .Case("Tanh", createUnary<TanhOp>)
                      .Case("Erf", createUnary<ErfOp>)
                      .Case("Cos", createUnary<CosOp>)
                      .Case("Sin", createUnary<SinOp>)
                      .Case("Sigmoid", createUnary<SigmoidOp>)
                      .Case("Relu", createUnary<ReluOp>);
  setResult(node, 0, create(builder, loc, *input));
  return success();
}

LogicalResult GraphImporter::convertBinary(const onnx::NodeProto &node) {
  FailureOr<Value> lhs = getValue(node, 0);
  FailureOr<Value> rhs = getValue(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  if (elementTypeOf(*lhs) != elementTypeOf(*rhs))
    return nodeError(node) << "operands have different element types "
                           << elementTypeOf(*lhs) << " and "
                           << elementTypeOf(*rhs);
  FailureOr<SmallVector<int64_t>> shape =
      broadcastShapes(shapeOf(*lhs), shapeOf(*rhs));
  if (failed(shape))
    return nodeError(node) << "operand shapes " << formatShape(shapeOf(*lhs))
                           << " and " << formatShape(shapeOf(*rhs))
                           << " do not broadcast";
  auto type = RankedTensorType::get(*shape, elementTypeOf(*lhs));
  using Create = Value (*)(OpBuilder &, Location, Type, Value, Value);
  Create create = llvm::StringSwitch<Create>(node.op_type())
                      .Case("Add", createBinary<AddOp>)
                      .Case("Sub", createBinary<SubOp>)
                      .Case("Mul", createBinary<MulOp>)
                      .Case("Div", createBinary<DivOp>)
                      .Case("Pow", createBinary<PowOp>)
                      .Case("Max", createBinary<MaxOp>)
                      .Case("Min", createBinary<MinOp>);
  if (node.op_type() == "Pow" || node.op_type() == "Max" ||
      node.op_type() == "Min") {
    if (node.input_size() != 2)
      return nodeError(node) << "only the two-operand form is supported";
  }
  setResult(node, 0, create(builder, nodeLoc(node), type, *lhs, *rhs));
  return success();
}

LogicalResult GraphImporter::convertCompare(const onnx::NodeProto &node) {
  FailureOr<Value> lhs = getValue(node, 0);
  FailureOr<Value> rhs = getValue(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  FailureOr<SmallVector<int64_t>> shape =
      broadcastShapes(shapeOf(*lhs), shapeOf(*rhs));
  if (failed(shape) || elementTypeOf(*lhs) != elementTypeOf(*rhs))
    return nodeError(node) << "operands " << lhs->getType() << " and "
                           << rhs->getType()
                           << " do not broadcast or differ in element type";
  ComparePredicate predicate =
      llvm::StringSwitch<ComparePredicate>(node.op_type())
          .Case("Equal", ComparePredicate::eq)
          .Case("Less", ComparePredicate::lt)
          .Case("LessOrEqual", ComparePredicate::le)
          .Case("Greater", ComparePredicate::gt)
          .Case("GreaterOrEqual", ComparePredicate::ge);
  auto type = RankedTensorType::get(*shape, builder.getI1Type());
  setResult(
      node, 0,
      CompareOp::create(builder, nodeLoc(node), type, predicate, *lhs, *rhs));
  return success();
}

LogicalResult GraphImporter::convertLogical(const onnx::NodeProto &node) {
  FailureOr<Value> lhs = getValue(node, 0);
  FailureOr<Value> rhs = getValue(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  FailureOr<SmallVector<int64_t>> shape =
      broadcastShapes(shapeOf(*lhs), shapeOf(*rhs));
  if (failed(shape) || !elementTypeOf(*lhs).isInteger(1) ||
      !elementTypeOf(*rhs).isInteger(1))
    return nodeError(node) << "operands " << lhs->getType() << " and "
                           << rhs->getType()
                           << " must be bool tensors that broadcast";
  auto type = RankedTensorType::get(*shape, builder.getI1Type());
  Operation *op = node.op_type() == "And"
                      ? AndOp::create(builder, nodeLoc(node), type, *lhs, *rhs)
                            .getOperation()
                      : OrOp::create(builder, nodeLoc(node), type, *lhs, *rhs)
                            .getOperation();
  setResult(node, 0, op->getResult(0));
  return success();
}

LogicalResult GraphImporter::convertWhere(const onnx::NodeProto &node) {
  FailureOr<Value> condition = getValue(node, 0);
  FailureOr<Value> trueValue = getValue(node, 1);
  FailureOr<Value> falseValue = getValue(node, 2);
  if (failed(condition) || failed(trueValue) || failed(falseValue))
    return failure();
  FailureOr<SmallVector<int64_t>> shape =
      broadcastShapes(shapeOf(*condition), shapeOf(*trueValue));
  if (succeeded(shape))
    shape = broadcastShapes(*shape, shapeOf(*falseValue));
  if (failed(shape) || elementTypeOf(*trueValue) != elementTypeOf(*falseValue))
    return nodeError(node) << "operands do not broadcast or the two values "
                              "differ in element type";
  auto type = RankedTensorType::get(*shape, elementTypeOf(*trueValue));
  setResult(node, 0,
            WhereOp::create(builder, nodeLoc(node), type, *condition,
                            *trueValue, *falseValue));
  return success();
}

LogicalResult GraphImporter::convertCast(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  int64_t to = getIntAttr(node, "to", -1);
  Type elementType = convertDataType(to, context);
  if (!elementType)
    return nodeError(node) << "casts to unsupported type " << dataTypeName(to);
  if (elementType == elementTypeOf(*input)) {
    setResult(node, 0, *input);
    return success();
  }
  auto type = RankedTensorType::get(shapeOf(*input), elementType);
  setResult(node, 0, CastOp::create(builder, nodeLoc(node), type, *input));
  return success();
}

LogicalResult GraphImporter::convertGelu(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  std::string approximate = getStringAttr(node, "approximate", "none");
  if (approximate != "none" && approximate != "tanh")
    return nodeError(node) << "approximate must be 'none' or 'tanh', got '"
                           << approximate << "'";
  setResult(node, 0,
            GeluOp::create(builder, nodeLoc(node), input->getType(), *input,
                           approximate == "tanh"));
  return success();
}

LogicalResult GraphImporter::convertMatMul(const onnx::NodeProto &node) {
  FailureOr<Value> lhs = getValue(node, 0);
  FailureOr<Value> rhs = getValue(node, 1);
  if (failed(lhs) || failed(rhs))
    return failure();
  if (elementTypeOf(*lhs) != elementTypeOf(*rhs))
    return nodeError(node) << "operands have different element types "
                           << elementTypeOf(*lhs) << " and "
                           << elementTypeOf(*rhs);
  std::string reason;
  llvm::raw_string_ostream whyNot(reason);
  FailureOr<SmallVector<int64_t>> shape =
      inferMatMulShape(shapeOf(*lhs), shapeOf(*rhs), whyNot);
  if (failed(shape))
    return nodeError(node) << reason;
  auto type = RankedTensorType::get(*shape, elementTypeOf(*lhs));
  setResult(node, 0,
            MatMulOp::create(builder, nodeLoc(node), type, *lhs, *rhs));
  return success();
}

LogicalResult GraphImporter::convertGemm(const onnx::NodeProto &node) {
  FailureOr<Value> a = getValue(node, 0);
  FailureOr<Value> b = getValue(node, 1);
  if (failed(a) || failed(b))
    return failure();
  FailureOr<Value> c = getOptionalValue(node, 2);
  if (failed(c))
    return failure();
  ArrayRef<int64_t> aShape = shapeOf(*a), bShape = shapeOf(*b);
  if (aShape.size() != 2 || bShape.size() != 2)
    return nodeError(node) << "A and B must be matrices, got "
                           << formatShape(aShape) << " and "
                           << formatShape(bShape);
  bool transA = getIntAttr(node, "transA", 0) != 0;
  bool transB = getIntAttr(node, "transB", 0) != 0;
  int64_t m = transA ? aShape[1] : aShape[0];
  int64_t n = transB ? bShape[0] : bShape[1];
  auto type = RankedTensorType::get({m, n}, elementTypeOf(*a));
  auto gemm =
      GemmOp::create(builder, nodeLoc(node), type, *a, *b, *c,
                     builder.getF32FloatAttr(getFloatAttr(node, "alpha", 1.0f)),
                     builder.getF32FloatAttr(getFloatAttr(node, "beta", 1.0f)),
                     transA ? builder.getUnitAttr() : nullptr,
                     transB ? builder.getUnitAttr() : nullptr);
  setResult(node, 0, gemm);
  return success();
}

LogicalResult GraphImporter::convertReduce(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  int64_t rank = shapeOf(*input).size();
  // ReduceSum takes axes as an input from opset 13, the others from 18.
  bool axesAsInput = node.op_type() == "ReduceSum" || opset >= 18;
  SmallVector<int64_t> axes;
  if (axesAsInput && hasInput(node, 1)) {
    FailureOr<const ConstTensor *> value = requireConst(node, 1, "axes");
    if (failed(value))
      return failure();
    for (int64_t i = 0; i < (*value)->numElements(); ++i)
      axes.push_back((*value)->asInt(i));
  } else if (!axesAsInput) {
    if (std::optional<SmallVector<int64_t>> attr = getIntsAttr(node, "axes"))
      axes = *attr;
  }
  if (axes.empty()) {
    if (getIntAttr(node, "noop_with_empty_axes", 0)) {
      setResult(node, 0, *input);
      return success();
    }
    for (int64_t i = 0; i < rank; ++i)
      axes.push_back(i);
  }
  bool keepDims = getIntAttr(node, "keepdims", 1) != 0;
  llvm::SmallSet<int64_t, 4> reduced;
  for (int64_t axis : axes) {
    FailureOr<int64_t> resolved = resolveAxis(node, axis, rank);
    if (failed(resolved))
      return failure();
    reduced.insert(*resolved);
  }
  SmallVector<int64_t> shape;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced.contains(i))
      shape.push_back(shapeOf(*input)[i]);
    else if (keepDims)
      shape.push_back(1);
  }
  ReduceKind kind = llvm::StringSwitch<ReduceKind>(node.op_type())
                        .Case("ReduceSum", ReduceKind::sum)
                        .Case("ReduceMean", ReduceKind::mean)
                        .Case("ReduceMax", ReduceKind::max)
                        .Case("ReduceMin", ReduceKind::min)
                        .Case("ReduceProd", ReduceKind::prod);
  auto type = RankedTensorType::get(shape, elementTypeOf(*input));
  setResult(node, 0,
            ReduceOp::create(builder, nodeLoc(node), type, kind, *input, axes,
                             keepDims));
  return success();
}

LogicalResult GraphImporter::convertSoftmax(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  int64_t axis = getIntAttr(node, "axis", -1);
  if (failed(resolveAxis(node, axis, shapeOf(*input).size())))
    return failure();
  setResult(node, 0,
            SoftmaxOp::create(builder, nodeLoc(node), input->getType(), *input,
                              axis));
  return success();
}

LogicalResult GraphImporter::convertTopK(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<const ConstTensor *> k = requireConst(node, 1, "k");
  if (failed(input) || failed(k))
    return failure();
  if ((*k)->numElements() != 1)
    return nodeError(node) << "k must hold one value";
  int64_t kValue = (*k)->asInt(0);
  ArrayRef<int64_t> shape = shapeOf(*input);
  int64_t axisAttr = getIntAttr(node, "axis", -1);
  FailureOr<int64_t> axis = resolveAxis(node, axisAttr, shape.size());
  if (failed(axis))
    return failure();
  if (kValue < 1 ||
      (!ShapedType::isDynamic(shape[*axis]) && kValue > shape[*axis]))
    return nodeError(node) << "k = " << kValue << " must be in [1, "
                           << shape[*axis] << "]";
  SmallVector<int64_t> resultShape(shape);
  resultShape[*axis] = kValue;
  auto values = RankedTensorType::get(resultShape, elementTypeOf(*input));
  auto indices = RankedTensorType::get(resultShape, builder.getI64Type());
  bool largest = getIntAttr(node, "largest", 1) != 0;
  auto op = TopKOp::create(builder, nodeLoc(node), values, indices, *input,
                           kValue, axisAttr, !largest);
  setResult(node, 0, op.getValues());
  setResult(node, 1, op.getIndices());
  return success();
}

LogicalResult GraphImporter::convertLayerNorm(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<Value> scale = getValue(node, 1);
  if (failed(input) || failed(scale))
    return failure();
  FailureOr<Value> bias = getOptionalValue(node, 2);
  if (failed(bias))
    return failure();
  if (node.output_size() > 1 &&
      llvm::any_of(llvm::drop_begin(node.output()),
                   [](const std::string &name) { return !name.empty(); }))
    return nodeError(node) << "the Mean and InvStdDev outputs are not "
                              "supported (they are for training)";
  int64_t axis = getIntAttr(node, "axis", -1);
  if (failed(resolveAxis(node, axis, shapeOf(*input).size())))
    return failure();
  setResult(node, 0,
            LayerNormOp::create(
                builder, nodeLoc(node), input->getType(), *input, *scale, *bias,
                builder.getI64IntegerAttr(axis),
                builder.getF32FloatAttr(getFloatAttr(node, "epsilon", 1e-5f))));
  return success();
}

FailureOr<Value> GraphImporter::emitRMSNorm(const onnx::NodeProto &node,
                                            Value input, Value scale,
                                            int64_t axis, float epsilon) {
  if (failed(resolveAxis(node, axis, shapeOf(input).size())))
    return failure();
  return RMSNormOp::create(builder, nodeLoc(node), input.getType(), input,
                           scale, builder.getI64IntegerAttr(axis),
                           builder.getF32FloatAttr(epsilon))
      .getResult();
}

LogicalResult
GraphImporter::convertSimplifiedLayerNorm(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<Value> scale = getValue(node, 1);
  if (failed(input) || failed(scale))
    return failure();
  FailureOr<Value> result =
      emitRMSNorm(node, *input, *scale, getIntAttr(node, "axis", -1),
                  getFloatAttr(node, "epsilon", 1e-5f));
  if (failed(result))
    return failure();
  setResult(node, 0, *result);
  return success();
}

LogicalResult
GraphImporter::convertSkipSimplifiedLayerNorm(const onnx::NodeProto &node) {
  // output = RMSNorm(input + skip + bias); output 3 is that sum.
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<Value> skip = getValue(node, 1);
  FailureOr<Value> scale = getValue(node, 2);
  if (failed(input) || failed(skip) || failed(scale))
    return failure();
  if (input->getType() != skip->getType())
    return nodeError(node) << "input " << input->getType() << " and skip "
                           << skip->getType() << " must have one type";
  Location loc = nodeLoc(node);
  Value sum = AddOp::create(builder, loc, input->getType(), *input, *skip);
  if (hasInput(node, 3)) {
    FailureOr<Value> bias = getValue(node, 3);
    if (failed(bias))
      return failure();
    sum = AddOp::create(builder, loc, input->getType(), sum, *bias);
  }
  if (node.output_size() > 1 &&
      (!node.output(1).empty() ||
       (node.output_size() > 2 && !node.output(2).empty())))
    return nodeError(node) << "the mean and inverse standard deviation "
                              "outputs are not supported";
  FailureOr<Value> result =
      emitRMSNorm(node, sum, *scale, -1, getFloatAttr(node, "epsilon", 1e-5f));
  if (failed(result))
    return failure();
  setResult(node, 0, *result);
  setResult(node, 3, sum);
  return success();
}

LogicalResult GraphImporter::convertGather(const onnx::NodeProto &node) {
  FailureOr<Value> data = getValue(node, 0);
  FailureOr<Value> indices = getValue(node, 1);
  if (failed(data) || failed(indices))
    return failure();
  if (!isa<IntegerType>(elementTypeOf(*indices)))
    return nodeError(node) << "indices must be integers";
  ArrayRef<int64_t> dataShape = shapeOf(*data);
  int64_t axisAttr = getIntAttr(node, "axis", 0);
  FailureOr<int64_t> axis = resolveAxis(node, axisAttr, dataShape.size());
  if (failed(axis))
    return failure();
  SmallVector<int64_t> shape(dataShape.take_front(*axis));
  llvm::append_range(shape, shapeOf(*indices));
  llvm::append_range(shape, dataShape.drop_front(*axis + 1));
  auto type = RankedTensorType::get(shape, elementTypeOf(*data));
  setResult(node, 0,
            GatherOp::create(builder, nodeLoc(node), type, *data, *indices,
                             axisAttr));
  return success();
}

LogicalResult GraphImporter::convertIsNaN(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  if (!isa<FloatType>(elementTypeOf(*input)))
    return nodeError(node) << "needs a floating-point input, got "
                           << input->getType();
  auto type = RankedTensorType::get(shapeOf(*input), builder.getI1Type());
  setResult(node, 0, IsNaNOp::create(builder, nodeLoc(node), type, *input));
  return success();
}

LogicalResult GraphImporter::convertGatherND(const onnx::NodeProto &node) {
  // Exporters write row lookups as GatherND with index tuples of length 1;
  // that is Gather on axis 0 with the tuple dimension dropped.
  FailureOr<Value> data = getValue(node, 0);
  FailureOr<Value> indices = getValue(node, 1);
  if (failed(data) || failed(indices))
    return failure();
  ArrayRef<int64_t> indexShape = shapeOf(*indices);
  if (getIntAttr(node, "batch_dims", 0) != 0 || indexShape.empty() ||
      indexShape.back() != 1)
    return nodeError(node) << "only GatherND with batch_dims = 0 and index "
                              "tuples of length 1 is supported, got indices "
                           << formatShape(indexShape);
  Location loc = nodeLoc(node);
  Value rows = emitReshape(loc, *indices, indexShape.drop_back());
  ArrayRef<int64_t> dataShape = shapeOf(*data);
  SmallVector<int64_t> shape(indexShape.drop_back());
  llvm::append_range(shape, dataShape.drop_front());
  auto type = RankedTensorType::get(shape, elementTypeOf(*data));
  setResult(node, 0, GatherOp::create(builder, loc, type, *data, rows, 0));
  return success();
}

LogicalResult
GraphImporter::convertGatherElements(const onnx::NodeProto &node) {
  FailureOr<Value> data = getValue(node, 0);
  FailureOr<Value> indices = getValue(node, 1);
  if (failed(data) || failed(indices))
    return failure();
  int64_t axis = getIntAttr(node, "axis", 0);
  if (failed(resolveAxis(node, axis, shapeOf(*data).size())))
    return failure();
  auto type = RankedTensorType::get(shapeOf(*indices), elementTypeOf(*data));
  setResult(node, 0,
            GatherElementsOp::create(builder, nodeLoc(node), type, *data,
                                     *indices, axis));
  return success();
}

static FailureOr<ScatterReduction> scatterReduction(StringRef name) {
  return llvm::StringSwitch<FailureOr<ScatterReduction>>(name)
      .Case("none", ScatterReduction::none)
      .Case("add", ScatterReduction::add)
      .Case("mul", ScatterReduction::mul)
      .Case("max", ScatterReduction::max)
      .Case("min", ScatterReduction::min)
      .Default(failure());
}

LogicalResult
GraphImporter::convertScatterElements(const onnx::NodeProto &node) {
  FailureOr<Value> data = getValue(node, 0);
  FailureOr<Value> indices = getValue(node, 1);
  FailureOr<Value> updates = getValue(node, 2);
  if (failed(data) || failed(indices) || failed(updates))
    return failure();
  std::string name = getStringAttr(node, "reduction", "none");
  FailureOr<ScatterReduction> reduction = scatterReduction(name);
  if (failed(reduction))
    return nodeError(node) << "unknown reduction '" << name << "'";
  int64_t axis = getIntAttr(node, "axis", 0);
  if (failed(resolveAxis(node, axis, shapeOf(*data).size())))
    return failure();
  setResult(node, 0,
            ScatterElementsOp::create(builder, nodeLoc(node), data->getType(),
                                      *data, *indices, *updates, axis,
                                      *reduction));
  return success();
}

LogicalResult GraphImporter::convertScatterND(const onnx::NodeProto &node) {
  FailureOr<Value> data = getValue(node, 0);
  FailureOr<Value> indices = getValue(node, 1);
  FailureOr<Value> updates = getValue(node, 2);
  if (failed(data) || failed(indices) || failed(updates))
    return failure();
  std::string name = getStringAttr(node, "reduction", "none");
  FailureOr<ScatterReduction> reduction = scatterReduction(name);
  if (failed(reduction))
    return nodeError(node) << "unknown reduction '" << name << "'";
  setResult(node, 0,
            ScatterNDOp::create(builder, nodeLoc(node), data->getType(), *data,
                                *indices, *updates, *reduction));
  return success();
}

FailureOr<SmallVector<int64_t>>
GraphImporter::reshapeTarget(const onnx::NodeProto &node,
                             ArrayRef<int64_t> input) {
  StringRef type = node.op_type();
  int64_t rank = input.size();
  if (type == "Flatten") {
    int64_t axisAttr = getIntAttr(node, "axis", 1);
    if (axisAttr < -rank || axisAttr > rank)
      return nodeError(node)
             << "axis " << axisAttr << " is out of range for rank " << rank;
    int64_t axis = axisAttr < 0 ? axisAttr + rank : axisAttr;
    int64_t outer = checkedNumElements(input.take_front(axis));
    int64_t inner = checkedNumElements(input.drop_front(axis));
    if (outer < 0 || inner < 0)
      return nodeError(node)
             << "input " << formatShape(input) << " is too large to flatten";
    return SmallVector<int64_t>{outer, inner};
  }
  if (type == "Unsqueeze" || type == "Squeeze") {
    SmallVector<int64_t> axes;
    if (hasInput(node, 1)) {
      FailureOr<const ConstTensor *> value = requireConst(node, 1, "axes");
      if (failed(value))
        return failure();
      for (int64_t i = 0; i < (*value)->numElements(); ++i)
        axes.push_back((*value)->asInt(i));
    }
    if (type == "Unsqueeze") {
      int64_t outRank = rank + axes.size();
      SmallVector<bool> inserted(outRank, false);
      for (int64_t axis : axes) {
        FailureOr<int64_t> resolved = resolveAxis(node, axis, outRank);
        if (failed(resolved))
          return failure();
        if (inserted[*resolved])
          return nodeError(node) << "axis " << axis << " is repeated";
        inserted[*resolved] = true;
      }
      SmallVector<int64_t> shape;
      const int64_t *next = input.begin();
      for (int64_t i = 0; i < outRank; ++i)
        shape.push_back(inserted[i] ? 1 : *next++);
      return shape;
    }
    llvm::SmallSet<int64_t, 4> removed;
    for (int64_t axis : axes) {
      FailureOr<int64_t> resolved = resolveAxis(node, axis, rank);
      if (failed(resolved))
        return failure();
      if (input[*resolved] != 1)
        return nodeError(node) << "cannot squeeze axis " << axis << " of size "
                               << input[*resolved];
      removed.insert(*resolved);
    }
    SmallVector<int64_t> shape;
    for (int64_t i = 0; i < rank; ++i)
      if (!(axes.empty() ? input[i] == 1 : removed.contains(i)))
        shape.push_back(input[i]);
    return shape;
  }
  // Reshape: 0 copies the input dimension (unless allowzero), -1 is inferred.
  FailureOr<const ConstTensor *> target = requireConst(node, 1, "shape");
  if (failed(target))
    return failure();
  bool allowZero = getIntAttr(node, "allowzero", 0) != 0;
  SmallVector<int64_t> shape;
  int64_t inferred = -1;
  for (int64_t i = 0; i < (*target)->numElements(); ++i) {
    int64_t dim = (*target)->asInt(i);
    if (dim == 0 && !allowZero) {
      if (i >= rank)
        return nodeError(node)
               << "shape entry " << i << " is 0 (copy) but the input has rank "
               << rank;
      dim = input[i];
    } else if (dim == -1) {
      if (inferred >= 0)
        return nodeError(node) << "shape has more than one -1";
      inferred = i;
      dim = 1;
    } else if (dim < 0) {
      return nodeError(node) << "shape entry " << i << " is " << dim;
    }
    shape.push_back(dim);
  }
  int64_t inputCount = checkedNumElements(input);
  int64_t known = checkedNumElements(shape);
  if (inferred >= 0) {
    if (known == 0 || inputCount % known != 0)
      return nodeError(node) << "cannot infer the -1 entry: " << inputCount
                             << " elements do not divide by " << known;
    shape[inferred] = inputCount / known;
  }
  return shape;
}

LogicalResult GraphImporter::convertReshapeLike(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  auto inputType = cast<RankedTensorType>(input->getType());
  if (!inputType.hasStaticShape())
    return nodeError(node) << "input " << inputType
                           << " has dynamic dimensions; bind them with "
                              "--dim-params or --shape";
  FailureOr<SmallVector<int64_t>> shape =
      reshapeTarget(node, inputType.getShape());
  if (failed(shape))
    return failure();
  if (checkedNumElements(*shape) != inputType.getNumElements())
    return nodeError(node) << "cannot reshape "
                           << formatShape(inputType.getShape()) << " into "
                           << formatShape(*shape);
  auto type = RankedTensorType::get(*shape, inputType.getElementType());
  if (type == inputType) {
    setResult(node, 0, *input);
    return success();
  }
  setResult(node, 0,
            ReshapeOp::create(builder, nodeLoc(node), type, *input, Value()));
  return success();
}

LogicalResult GraphImporter::convertTranspose(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  ArrayRef<int64_t> shape = shapeOf(*input);
  SmallVector<int64_t> permutation;
  if (std::optional<SmallVector<int64_t>> perm = getIntsAttr(node, "perm"))
    permutation = *perm;
  else
    for (int64_t i = shape.size() - 1; i >= 0; --i)
      permutation.push_back(i);
  SmallVector<int64_t> result;
  SmallVector<bool> seen(shape.size(), false);
  for (int64_t index : permutation) {
    if (permutation.size() != shape.size() || index < 0 ||
        index >= static_cast<int64_t>(shape.size()) || seen[index])
      return nodeError(node)
             << "perm [" << llvm::interleaved(permutation)
             << "] is not a permutation of rank " << shape.size();
    seen[index] = true;
    result.push_back(shape[index]);
  }
  auto type = RankedTensorType::get(result, elementTypeOf(*input));
  setResult(
      node, 0,
      TransposeOp::create(builder, nodeLoc(node), type, *input, permutation));
  return success();
}

LogicalResult GraphImporter::convertTile(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<const ConstTensor *> repeats = requireConst(node, 1, "repeats");
  if (failed(input) || failed(repeats))
    return failure();
  ArrayRef<int64_t> shape = shapeOf(*input);
  if ((*repeats)->numElements() != static_cast<int64_t>(shape.size()))
    return nodeError(node) << "repeats has " << (*repeats)->numElements()
                           << " entries but the input has rank "
                           << shape.size();
  Location loc = nodeLoc(node);
  Value result = *input;
  for (int64_t axis = 0; axis < static_cast<int64_t>(shape.size()); ++axis) {
    int64_t count = (*repeats)->asInt(axis);
    if (count < 0)
      return nodeError(node) << "repeat count " << count << " is negative";
    if (count == 1)
      continue;
    SmallVector<int64_t> tiled(shapeOf(result));
    if (count > kMaxFoldElements ||
        (tiled[axis] > 0 && count > (int64_t(1) << 40) / tiled[axis]))
      return nodeError(node) << "repeat count " << count << " is too large";
    if (ShapedType::isDynamic(tiled[axis]))
      return nodeError(node) << "cannot tile a dynamic dimension; bind it "
                                "with --dim-params or --shape";
    // Repeating a dimension of size 1 is a broadcast; anything else is the
    // input concatenated with itself.
    bool broadcast = tiled[axis] == 1;
    tiled[axis] *= count;
    auto type = RankedTensorType::get(tiled, elementTypeOf(result));
    if (broadcast) {
      result = ExpandOp::create(builder, loc, type, result);
    } else {
      SmallVector<Value> copies(count, result);
      result = ConcatOp::create(builder, loc, type, copies, axis);
    }
  }
  setResult(node, 0, result);
  return success();
}

LogicalResult GraphImporter::convertExpand(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<const ConstTensor *> target = requireConst(node, 1, "shape");
  if (failed(input) || failed(target))
    return failure();
  SmallVector<int64_t> targetShape;
  for (int64_t i = 0; i < (*target)->numElements(); ++i) {
    targetShape.push_back((*target)->asInt(i));
    if (targetShape.back() < 0)
      return nodeError(node)
             << "shape entry " << i << " is " << targetShape.back();
  }
  // ONNX Expand broadcasts both ways: a 1 in the target keeps the input's.
  FailureOr<SmallVector<int64_t>> shape =
      broadcastShapes(shapeOf(*input), targetShape);
  if (failed(shape))
    return nodeError(node) << "input " << formatShape(shapeOf(*input))
                           << " does not broadcast with ["
                           << llvm::interleaved(targetShape) << "]";
  auto type = RankedTensorType::get(*shape, elementTypeOf(*input));
  if (type == input->getType()) {
    setResult(node, 0, *input);
    return success();
  }
  setResult(node, 0, ExpandOp::create(builder, nodeLoc(node), type, *input));
  return success();
}

LogicalResult GraphImporter::convertSlice(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<const ConstTensor *> starts = requireConst(node, 1, "starts");
  FailureOr<const ConstTensor *> ends = requireConst(node, 2, "ends");
  if (failed(input) || failed(starts) || failed(ends))
    return failure();
  ArrayRef<int64_t> shape = shapeOf(*input);
  int64_t count = (*starts)->numElements();
  auto read = [](const ConstTensor *tensor) {
    SmallVector<int64_t> result;
    for (int64_t i = 0; i < tensor->numElements(); ++i)
      result.push_back(tensor->asInt(i));
    return result;
  };
  SmallVector<int64_t> startValues = read(*starts), endValues = read(*ends);
  SmallVector<int64_t> axes, steps(count, 1);
  if (hasInput(node, 3)) {
    FailureOr<const ConstTensor *> value = requireConst(node, 3, "axes");
    if (failed(value))
      return failure();
    axes = read(*value);
  } else {
    for (int64_t i = 0; i < count; ++i)
      axes.push_back(i);
  }
  if (hasInput(node, 4)) {
    FailureOr<const ConstTensor *> value = requireConst(node, 4, "steps");
    if (failed(value))
      return failure();
    steps = read(*value);
  }
  if (static_cast<int64_t>(endValues.size()) != count ||
      static_cast<int64_t>(axes.size()) != count ||
      static_cast<int64_t>(steps.size()) != count)
    return nodeError(node) << "starts, ends, axes and steps differ in length";
  SmallVector<int64_t> result(shape);
  for (int64_t i = 0; i < count; ++i) {
    FailureOr<int64_t> axis = resolveAxis(node, axes[i], shape.size());
    if (failed(axis))
      return failure();
    if (steps[i] == 0)
      return nodeError(node) << "step " << i << " is 0";
    result[*axis] = ShapedType::isDynamic(shape[*axis])
                        ? ShapedType::kDynamic
                        : sliceDimSize(shape[*axis], startValues[i],
                                       endValues[i], steps[i]);
  }
  auto type = RankedTensorType::get(result, elementTypeOf(*input));
  setResult(node, 0,
            SliceOp::create(builder, nodeLoc(node), type, *input, startValues,
                            endValues, axes, steps));
  return success();
}

LogicalResult GraphImporter::convertConcat(const onnx::NodeProto &node) {
  SmallVector<Value> inputs;
  for (int i = 0; i < node.input_size(); ++i) {
    FailureOr<Value> input = getValue(node, i);
    if (failed(input))
      return failure();
    inputs.push_back(*input);
  }
  if (inputs.empty())
    return nodeError(node) << "has no inputs";
  ArrayRef<int64_t> first = shapeOf(inputs.front());
  int64_t axisAttr = getIntAttr(node, "axis", 0);
  FailureOr<int64_t> axis = resolveAxis(node, axisAttr, first.size());
  if (failed(axis))
    return failure();
  SmallVector<int64_t> shape(first);
  shape[*axis] = 0;
  for (Value input : inputs) {
    ArrayRef<int64_t> inputShape = shapeOf(input);
    if (inputShape.size() != first.size())
      return nodeError(node) << "inputs differ in rank";
    for (size_t d = 0; d < first.size(); ++d)
      if (static_cast<int64_t>(d) != *axis &&
          !ShapedType::isDynamic(inputShape[d]) &&
          !ShapedType::isDynamic(first[d]) && inputShape[d] != first[d])
        return nodeError(node)
               << "input " << formatShape(inputShape) << " differs from "
               << formatShape(first) << " outside the concatenation axis";
    int64_t dim = inputShape[*axis];
    if (ShapedType::isDynamic(dim) || ShapedType::isDynamic(shape[*axis]))
      shape[*axis] = ShapedType::kDynamic;
    else if (llvm::AddOverflow(shape[*axis], dim, shape[*axis]))
      return nodeError(node) << "concatenated size overflows";
  }
  auto type = RankedTensorType::get(shape, elementTypeOf(inputs.front()));
  setResult(node, 0,
            ConcatOp::create(builder, nodeLoc(node), type, inputs, axisAttr));
  return success();
}

LogicalResult GraphImporter::convertSplit(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  ArrayRef<int64_t> shape = shapeOf(*input);
  int64_t axisAttr = getIntAttr(node, "axis", 0);
  FailureOr<int64_t> axis = resolveAxis(node, axisAttr, shape.size());
  if (failed(axis))
    return failure();
  int64_t parts = node.output_size();
  SmallVector<int64_t> sizes;
  if (hasInput(node, 1)) {
    FailureOr<const ConstTensor *> split = requireConst(node, 1, "split");
    if (failed(split))
      return failure();
    for (int64_t i = 0; i < (*split)->numElements(); ++i)
      sizes.push_back((*split)->asInt(i));
  } else {
    int64_t dim = shape[*axis];
    if (ShapedType::isDynamic(dim))
      return nodeError(node) << "cannot split a dynamic dimension evenly";
    // ONNX (opset 18): the last part may be smaller.
    int64_t part = (dim + parts - 1) / std::max<int64_t>(parts, 1);
    for (int64_t i = 0; i < parts; ++i)
      sizes.push_back(std::min(part, dim - i * part));
  }
  if (static_cast<int64_t>(sizes.size()) != parts)
    return nodeError(node) << "split has " << sizes.size()
                           << " sizes but the node has " << parts << " outputs";
  int64_t total = 0;
  for (int64_t size : sizes)
    if (size < 0 || llvm::AddOverflow(total, size, total))
      return nodeError(node) << "split size " << size << " is invalid";
  if (!ShapedType::isDynamic(shape[*axis]) && total != shape[*axis])
    return nodeError(node) << "split sizes add up to " << total << " but axis "
                           << axisAttr << " has " << shape[*axis];
  SmallVector<Type> types;
  for (int64_t size : sizes) {
    SmallVector<int64_t> partShape(shape);
    partShape[*axis] = size;
    types.push_back(RankedTensorType::get(partShape, elementTypeOf(*input)));
  }
  auto op = SplitOp::create(builder, nodeLoc(node), types, *input, axisAttr);
  for (int64_t i = 0; i < parts; ++i)
    setResult(node, i, op.getResult(i));
  return success();
}

LogicalResult GraphImporter::convertTrilu(const onnx::NodeProto &node) {
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  int64_t k = 0;
  if (hasInput(node, 1)) {
    FailureOr<const ConstTensor *> value = requireConst(node, 1, "k");
    if (failed(value))
      return failure();
    if ((*value)->numElements() != 1)
      return nodeError(node) << "k must hold one value";
    k = (*value)->asInt(0);
  }
  if (shapeOf(*input).size() < 2)
    return nodeError(node) << "input must have rank 2 or more";
  setResult(node, 0,
            TriluOp::create(builder, nodeLoc(node), input->getType(), *input,
                            getIntAttr(node, "upper", 1) != 0, k));
  return success();
}

LogicalResult GraphImporter::convertIdentity(const onnx::NodeProto &node) {
  if (const ConstTensor *constant = getConst(node.input(0))) {
    constants[node.output(0)] = *constant;
    return success();
  }
  FailureOr<Value> input = getValue(node, 0);
  if (failed(input))
    return failure();
  // Dropout in inference is the identity; its mask output is not supported.
  if (node.output_size() > 1 && !node.output(1).empty())
    return nodeError(node) << "the mask output is not supported";
  setResult(node, 0, *input);
  return success();
}

LogicalResult GraphImporter::convertConstantNode(const onnx::NodeProto &node) {
  // Constant nodes are folded in tryFold; reaching here means the attribute
  // kind is unsupported.
  return nodeError(node) << "only 'value', 'value_float(s)' and "
                            "'value_int(s)' constants are supported";
}

LogicalResult
GraphImporter::convertNeedsConstants(const onnx::NodeProto &node) {
  int required = llvm::StringSwitch<int>(node.op_type())
                     .Cases({"Range", "OneHot"}, 3)
                     .Default(1);
  if (node.input_size() < required ||
      llvm::any_of(node.input(),
                   [](const std::string &name) { return name.empty(); }))
    return nodeError(node) << "has a missing input (it takes " << required
                           << ")";
  return nodeError(node) << "is evaluated while compiling and needs inputs "
                            "known at compile time, with a result of at most "
                         << kMaxFoldElements
                         << " elements; bind symbolic dimensions with "
                            "--dim-params or --shape";
}
