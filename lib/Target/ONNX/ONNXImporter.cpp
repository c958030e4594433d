//===- ONNXImporter.cpp - ONNX model to moe dialect -----------------------===//
//
// Part of moe-compiler.
//
// Setup of the GraphImporter (see GraphImporter.h): opsets, supported ops,
// graph inputs, initializers, node order, values and outputs.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/ONNX/ONNXImporter.h"

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Endian.h"

#include <cmath>
#include <deque>

using namespace mlir;
using namespace moe;
using namespace moe::onnx_import;

namespace moe::onnx_import {

//===----------------------------------------------------------------------===//
// Setup
//===----------------------------------------------------------------------===//

LogicalResult GraphImporter::checkOpsets() {
  bool hasDefault = false;
  for (const auto &import : file.model.opset_import()) {
    if (!isDefaultDomain(import.domain()))
      continue;
    hasDefault = true;
    opset = import.version();
  }
  if (!hasDefault) {
    // IR version 3 and older may omit the import; ONNX then means opset 1.
    return fileError() << "'" << file.path
                       << "' imports no default-domain opset; moe-compiler "
                          "supports opsets "
                       << kMinOpset << " to " << kMaxOpset;
  }
  if (opset < kMinOpset || opset > kMaxOpset) {
    return fileError() << "'" << file.path << "' uses default-domain opset "
                       << opset << "; moe-compiler supports opsets "
                       << kMinOpset << " to " << kMaxOpset
                       << " (convert with onnx.version_converter)";
  }
  return success();
}

GraphImporter::Handler GraphImporter::findHandler(const onnx::NodeProto &node) {
  StringRef type = node.op_type();
  if (node.domain() == "com.microsoft") {
    return llvm::StringSwitch<Handler>(type)
        .Cases({"MoE", "QMoE"}, &GraphImporter::convertORTMoE)
        .Case("ShardedMoE", &GraphImporter::convertShardedMoE)
        .Case("MoEGroupRouter", &GraphImporter::convertMoEGroupRouter)
        .Case("SimplifiedLayerNormalization",
              &GraphImporter::convertSimplifiedLayerNorm)
        .Case("SkipSimplifiedLayerNormalization",
              &GraphImporter::convertSkipSimplifiedLayerNorm)
        .Default(nullptr);
  }
  if (!isDefaultDomain(node.domain()))
    return nullptr;
  return llvm::StringSwitch<Handler>(type)
      .Cases({"Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal"},
             &GraphImporter::convertUnary)
      .Cases({"Tanh", "Erf", "Sigmoid", "Relu", "Cos", "Sin"},
             &GraphImporter::convertUnary)
      .Case("IsNaN", &GraphImporter::convertIsNaN)
      .Case("GatherND", &GraphImporter::convertGatherND)
      .Cases({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"},
             &GraphImporter::convertBinary)
      .Cases({"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"},
             &GraphImporter::convertCompare)
      .Cases({"And", "Or"}, &GraphImporter::convertLogical)
      .Case("Where", &GraphImporter::convertWhere)
      .Case("Cast", &GraphImporter::convertCast)
      .Case("Gelu", &GraphImporter::convertGelu)
      .Case("MatMul", &GraphImporter::convertMatMul)
      .Case("Gemm", &GraphImporter::convertGemm)
      .Cases(
          {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"},
          &GraphImporter::convertReduce)
      .Case("Softmax", &GraphImporter::convertSoftmax)
      .Case("TopK", &GraphImporter::convertTopK)
      .Case("LayerNormalization", &GraphImporter::convertLayerNorm)
      // onnxruntime registers its RMSNorm in the default domain too.
      .Case("SimplifiedLayerNormalization",
            &GraphImporter::convertSimplifiedLayerNorm)
      .Case("Gather", &GraphImporter::convertGather)
      .Case("GatherElements", &GraphImporter::convertGatherElements)
      .Case("ScatterElements", &GraphImporter::convertScatterElements)
      .Case("ScatterND", &GraphImporter::convertScatterND)
      .Cases({"Reshape", "Unsqueeze", "Squeeze", "Flatten"},
             &GraphImporter::convertReshapeLike)
      .Case("Transpose", &GraphImporter::convertTranspose)
      .Case("Expand", &GraphImporter::convertExpand)
      .Case("Slice", &GraphImporter::convertSlice)
      .Case("Concat", &GraphImporter::convertConcat)
      .Case("Split", &GraphImporter::convertSplit)
      .Case("Trilu", &GraphImporter::convertTrilu)
      .Cases({"Identity", "Dropout"}, &GraphImporter::convertIdentity)
      .Case("Constant", &GraphImporter::convertConstantNode)
      // Shape computations: folded when their inputs are known.
      .Case("Not", &GraphImporter::convertUnary)
      .Case("Tile", &GraphImporter::convertTile)
      .Cases({"Shape", "Size", "ConstantOfShape", "Range", "OneHot"},
             &GraphImporter::convertNeedsConstants)
      .Default(nullptr);
}

LogicalResult GraphImporter::checkSupportedOps() {
  // Report every unsupported op at once, so a user sees the whole list.
  llvm::StringMap<int64_t> domainVersions;
  for (const auto &import : file.model.opset_import())
    domainVersions[import.domain()] = import.version();
  SmallVector<std::string> unsupported;
  for (const auto &node : file.model.graph().node()) {
    if (findHandler(node) || absorbedNodes.count(&node))
      continue;
    StringRef domain =
        isDefaultDomain(node.domain()) ? "ai.onnx" : StringRef(node.domain());
    int64_t version = isDefaultDomain(node.domain())
                          ? opset
                          : domainVersions.lookup(node.domain());
    unsupported.push_back(("  " + node.op_type() + " (domain " + domain +
                           ", opset " + std::to_string(version) + ") node '" +
                           node.name() + "'")
                              .str());
  }
  if (unsupported.empty())
    return success();
  InFlightDiagnostic diag = fileError();
  diag << "'" << file.path << "' has " << unsupported.size()
       << " node(s) with ops moe-compiler does not support:";
  for (const std::string &line : unsupported)
    diag << "\n" << line;
  return diag;
}

FailureOr<RankedTensorType>
GraphImporter::convertValueType(const onnx::ValueInfoProto &info,
                                SmallVector<StringRef> &names) {
  if (!info.type().has_tensor_type())
    return fileError() << "graph input '" << info.name()
                       << "' is not a tensor; only tensor inputs are "
                          "supported";
  const auto &tensorType = info.type().tensor_type();
  Type elementType = convertDataType(tensorType.elem_type(), context);
  if (!elementType)
    return fileError() << "graph input '" << info.name()
                       << "' has unsupported element type "
                       << dataTypeName(tensorType.elem_type());
  auto override = options.inputShapes.find(info.name());
  if (!tensorType.has_shape() && override == options.inputShapes.end())
    return fileError() << "graph input '" << info.name()
                       << "' has no shape; give one with --shape "
                       << info.name() << "=DIMxDIM...";
  SmallVector<int64_t> shape;
  int declaredRank =
      tensorType.has_shape() ? tensorType.shape().dim_size() : -1;
  if (override != options.inputShapes.end()) {
    if (declaredRank >= 0 &&
        declaredRank != static_cast<int>(override->second.size()))
      return fileError() << "--shape gives input '" << info.name() << "' rank "
                         << override->second.size() << " but the model "
                         << "declares rank " << declaredRank;
    shape = override->second;
    names.assign(shape.size(), "");
    return RankedTensorType::get(shape, elementType);
  }
  for (const auto &dim : tensorType.shape().dim()) {
    if (dim.has_dim_value()) {
      if (dim.dim_value() < 0 || dim.dim_value() > (int64_t(1) << 40))
        return fileError() << "graph input '" << info.name()
                           << "' has negative or too large dimension "
                           << dim.dim_value();
      shape.push_back(dim.dim_value());
      names.push_back("");
      continue;
    }
    // Symbolic dimensions keep their names (moe.dim_params), bound or not:
    // moe-compile divides the batch by name for micro-batches.
    auto bound = options.dimParams.find(dim.dim_param());
    if (!dim.dim_param().empty() && bound != options.dimParams.end()) {
      shape.push_back(bound->second);
      names.push_back(dim.dim_param());
      continue;
    }
    shape.push_back(ShapedType::kDynamic);
    names.push_back(dim.dim_param());
  }
  return RankedTensorType::get(shape, elementType);
}

LogicalResult GraphImporter::importInputs() {
  const onnx::GraphProto &graph = file.model.graph();
  llvm::StringSet<> initializerNames;
  for (const auto &tensor : graph.initializer())
    initializerNames.insert(tensor.name());
  SmallVector<Type> types;
  SmallVector<std::string> names;
  SmallVector<SmallVector<StringRef>> dimNames;
  for (const auto &input : graph.input()) {
    // Before IR version 4 initializers were also listed as inputs.
    if (initializerNames.contains(input.name()))
      continue;
    SmallVector<StringRef> inputDimNames;
    FailureOr<RankedTensorType> type = convertValueType(input, inputDimNames);
    if (failed(type))
      return failure();
    types.push_back(*type);
    names.push_back(input.name());
    dimNames.push_back(inputDimNames);
  }
  for (const auto &entry : options.inputShapes)
    if (!llvm::is_contained(names, entry.getKey().str()))
      return fileError() << "--shape names '" << entry.getKey()
                         << "', which is not a graph input";

  std::string name = graph.name().empty() ? "main" : graph.name();
  builder.setInsertionPointToEnd(module.getBody());
  function = func::FuncOp::create(builder, fileLoc(), name,
                                  builder.getFunctionType(types, {}));
  entry = function.addEntryBlock();
  for (auto [index, inputName] : llvm::enumerate(names)) {
    values[inputName] = entry->getArgument(index);
    function.setArgAttr(index, "moe.name", builder.getStringAttr(inputName));
    if (llvm::any_of(dimNames[index], [](StringRef n) { return !n.empty(); })) {
      SmallVector<Attribute> attrs;
      for (StringRef dimName : dimNames[index])
        attrs.push_back(builder.getStringAttr(dimName));
      function.setArgAttr(index, "moe.dim_params", builder.getArrayAttr(attrs));
    }
  }
  builder.setInsertionPointToEnd(entry);
  return success();
}

FailureOr<ConstTensor>
GraphImporter::decodeTensor(const onnx::TensorProto &tensor, StringRef what) {
  Type elementType = convertDataType(tensor.data_type(), context);
  if (!elementType)
    return fileError() << what << " '" << tensor.name()
                       << "' has unsupported data type "
                       << dataTypeName(tensor.data_type());
  SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  int64_t count = checkedNumElements(shape);
  if (count < 0)
    return fileError() << what << " '" << tensor.name() << "' has shape ["
                       << llvm::interleaved(shape)
                       << "] with a negative or too large dimension";
  if (count > kMaxTypedElements)
    return fileError() << what << " '" << tensor.name() << "' has " << count
                       << " elements, too many for a constant";
  ConstTensor result = ConstTensor::zeros(shape, elementType);
  unsigned bits = elementType.getIntOrFloatBitWidth();
  const std::string &raw = tensor.raw_data();
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL)
    return fileError() << what << " '" << tensor.name()
                       << "' is small but stored externally; it is needed "
                          "at compile time";
  if (!raw.empty()) {
    int64_t bytesPerElement = bits == 1 ? 1 : bits / 8;
    if (bits % 8 != 0 && bits != 1)
      return fileError() << what << " '" << tensor.name()
                         << "': sub-byte constants are not supported";
    if (static_cast<int64_t>(raw.size()) != count * bytesPerElement)
      return fileError() << what << " '" << tensor.name() << "' has "
                         << raw.size() << " bytes of raw_data but " << count
                         << " elements of " << dataTypeName(tensor.data_type())
                         << " need " << count * bytesPerElement;
    const char *p = raw.data();
    for (int64_t i = 0; i < count; ++i, p += bytesPerElement) {
      using namespace llvm::support;
      if (auto floatType = dyn_cast<FloatType>(elementType)) {
        APInt bitsValue(bits, bits == 64   ? endian::read64le(p)
                              : bits == 32 ? endian::read32le(p)
                                           : endian::read16le(p));
        APFloat value(floatType.getFloatSemantics(), bitsValue);
        result.floats[i] = value.convertToDouble();
        continue;
      }
      int64_t value = 0;
      bool isSigned = !elementType.isUnsignedInteger();
      switch (bytesPerElement) {
      case 1:
        value = isSigned ? static_cast<int8_t>(*p) : static_cast<uint8_t>(*p);
        break;
      case 2:
        value = isSigned ? static_cast<int16_t>(endian::read16le(p))
                         : static_cast<uint16_t>(endian::read16le(p));
        break;
      case 4:
        value = isSigned ? static_cast<int32_t>(endian::read32le(p))
                         : static_cast<uint32_t>(endian::read32le(p));
        break;
      default:
        value = static_cast<int64_t>(endian::read64le(p));
      }
      result.setInt(i, value);
    }
    return result;
  }
  // Typed fields: each type has its own repeated field.
  auto expectSize = [&](int64_t size) -> LogicalResult {
    if (size == count)
      return success();
    return fileError() << what << " '" << tensor.name() << "' holds " << size
                       << " values but its shape needs " << count;
  };
  switch (tensor.data_type()) {
  case onnx::TensorProto::FLOAT:
    if (failed(expectSize(tensor.float_data_size())))
      return failure();
    for (int64_t i = 0; i < count; ++i)
      result.floats[i] = tensor.float_data(i);
    return result;
  case onnx::TensorProto::DOUBLE:
    if (failed(expectSize(tensor.double_data_size())))
      return failure();
    for (int64_t i = 0; i < count; ++i)
      result.floats[i] = tensor.double_data(i);
    return result;
  case onnx::TensorProto::INT64:
    if (failed(expectSize(tensor.int64_data_size())))
      return failure();
    for (int64_t i = 0; i < count; ++i)
      result.ints[i] = tensor.int64_data(i);
    return result;
  case onnx::TensorProto::UINT64:
  case onnx::TensorProto::UINT32:
    if (failed(expectSize(tensor.uint64_data_size())))
      return failure();
    for (int64_t i = 0; i < count; ++i)
      result.ints[i] = static_cast<int64_t>(tensor.uint64_data(i));
    return result;
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16: {
    // 16-bit floats are stored as their bit patterns in int32_data.
    if (failed(expectSize(tensor.int32_data_size())))
      return failure();
    auto floatType = cast<FloatType>(elementType);
    for (int64_t i = 0; i < count; ++i) {
      APFloat value(floatType.getFloatSemantics(),
                    APInt(16, static_cast<uint16_t>(tensor.int32_data(i))));
      result.floats[i] = value.convertToDouble();
    }
    return result;
  }
  default:
    if (failed(expectSize(tensor.int32_data_size())))
      return failure();
    for (int64_t i = 0; i < count; ++i)
      result.setInt(i, tensor.int32_data(i));
    return result;
  }
}

LogicalResult GraphImporter::importInitializers() {
  for (auto [index, tensor] :
       llvm::enumerate(file.model.graph().initializer())) {
    if (tensor.name().empty())
      return fileError() << "initializer " << index << " has no name";
    if (isKnown(tensor.name()))
      return fileError() << "initializer '" << tensor.name()
                         << "' is defined twice (or shadows a graph input)";
    SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
    int64_t count = checkedNumElements(shape);
    if (count < 0)
      return fileError() << "initializer '" << tensor.name() << "' has shape ["
                         << llvm::interleaved(shape)
                         << "] with a negative or too large dimension";
    Type elementType = convertDataType(tensor.data_type(), context);
    bool referenceable =
        tensor.data_location() == onnx::TensorProto::EXTERNAL ||
        file.inlineBytes[index].has_value();
    // Shape constants (integers) and float scalars are needed while
    // compiling; float tensors are weights and stay references.
    bool small = elementType && (isa<IntegerType>(elementType)
                                     ? count <= options.maxInlineElements
                                     : count <= 1);
    bool typedInteger = elementType && isa<IntegerType>(elementType) &&
                        count <= kMaxTypedElements;
    if (small || (!referenceable && typedInteger)) {
      FailureOr<ConstTensor> value = decodeTensor(tensor, "initializer");
      if (failed(value))
        return failure();
      constants[tensor.name()] = std::move(*value);
      continue;
    }
    if (!elementType)
      return fileError() << "initializer '" << tensor.name()
                         << "' has unsupported data type "
                         << dataTypeName(tensor.data_type());
    if (!referenceable)
      return fileError() << "initializer '" << tensor.name() << "' stores "
                         << count << " " << dataTypeName(tensor.data_type())
                         << " values in a typed field that has no byte-exact "
                            "form; re-save the model with raw_data (e.g. "
                            "onnx.numpy_helper.from_array)";
    pendingWeights[tensor.name()] = index;
  }
  return success();
}

FailureOr<Value> GraphImporter::materializeWeight(StringRef name) {
  const onnx::TensorProto &tensor =
      file.model.graph().initializer(pendingWeights.lookup(name));
  int index = pendingWeights.lookup(name);
  Type elementType = convertDataType(tensor.data_type(), context);
  SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  auto type = RankedTensorType::get(shape, elementType);
  std::optional<int64_t> bytes =
      getStorageSizeInBytes(elementType, type.getNumElements());
  if (!bytes)
    return fileError() << "initializer '" << name << "' of type "
                       << dataTypeName(tensor.data_type())
                       << " cannot be referenced";
  TensorBytes where;
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    llvm::Expected<TensorBytes> external =
        resolveExternalData(file, tensor, *bytes);
    if (!external)
      return fileError() << llvm::toString(external.takeError());
    where = *external;
  } else {
    where = *file.inlineBytes[index];
    if (where.length != *bytes)
      return fileError() << "initializer '" << name << "' has " << where.length
                         << " bytes of data but " << formatShape(shape) << " "
                         << dataTypeName(tensor.data_type()) << " needs "
                         << *bytes;
  }
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPoint(function);
  auto weight = WeightOp::create(
      builder, fileLoc(), builder.getStringAttr(name), TypeAttr::get(type),
      StorageAttr::get(&context, where.file, where.offset, where.length));
  weightSymbols[name] = weight.getSymName().str();
  builder.setInsertionPointToStart(entry);
  Value ref = WeightRefOp::create(
      builder, fileLoc(), type,
      FlatSymbolRefAttr::get(&context, weight.getSymName()), nullptr);
  values[name] = ref;
  pendingWeights.erase(name);
  return ref;
}

FailureOr<std::vector<const onnx::NodeProto *>> GraphImporter::sortNodes() {
  // Kahn's algorithm over value names; ONNX does not require sorted nodes.
  const auto &nodes = file.model.graph().node();
  llvm::StringMap<SmallVector<int>> consumers;
  std::vector<int> missing(nodes.size(), 0);
  llvm::StringSet<> available;
  for (const auto &entry : values)
    available.insert(entry.getKey());
  for (const auto &entry : constants)
    available.insert(entry.getKey());
  for (const auto &entry : pendingWeights)
    available.insert(entry.getKey());
  llvm::StringMap<int> producer;
  for (auto [index, node] : llvm::enumerate(nodes)) {
    for (const std::string &output : node.output()) {
      if (output.empty())
        continue;
      if (available.contains(output) ||
          !producer.try_emplace(output, index).second)
        return nodeError(node) << "output '" << output
                               << "' is already defined; ONNX values are "
                                  "assigned once";
    }
  }
  for (auto [index, node] : llvm::enumerate(nodes)) {
    llvm::StringSet<> seen;
    for (const std::string &input : node.input()) {
      if (input.empty() || available.contains(input) ||
          !seen.insert(input).second)
        continue;
      if (!producer.count(input))
        return nodeError(node)
               << "input '" << input
               << "' is not produced by any node, initializer or graph input";
      consumers[input].push_back(index);
      ++missing[index];
    }
  }
  std::deque<int> ready;
  for (int i = 0; i < nodes.size(); ++i)
    if (missing[i] == 0)
      ready.push_back(i);
  std::vector<const onnx::NodeProto *> order;
  while (!ready.empty()) {
    int index = ready.front();
    ready.pop_front();
    order.push_back(&nodes[index]);
    for (const std::string &output : nodes[index].output())
      for (int consumer : consumers.lookup(output))
        if (--missing[consumer] == 0)
          ready.push_back(consumer);
  }
  if (order.size() != static_cast<size_t>(nodes.size())) {
    for (int i = 0; i < nodes.size(); ++i)
      if (missing[i] > 0)
        return nodeError(nodes[i]) << "is part of a cycle; ONNX graphs must "
                                      "be acyclic";
  }
  return order;
}

FailureOr<Value> GraphImporter::getValue(const onnx::NodeProto &node,
                                         int index) {
  if (!hasInput(node, index))
    return nodeError(node) << "input " << index << " is missing";
  StringRef name = node.input(index);
  auto it = values.find(name);
  if (it != values.end())
    return it->second;
  if (pendingWeights.count(name))
    return materializeWeight(name);
  if (const ConstTensor *constant = getConst(name)) {
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPointToStart(entry);
    Value value =
        arith::ConstantOp::create(builder, fileLoc(), constant->toAttr());
    values[name] = value;
    return value;
  }
  return nodeError(node) << "input '" << name << "' is not defined";
}

FailureOr<const ConstTensor *>
GraphImporter::requireConst(const onnx::NodeProto &node, int index,
                            StringRef what) {
  if (!hasInput(node, index))
    return nodeError(node) << what << " (input " << index << ") is missing";
  if (const ConstTensor *constant = getConst(node.input(index)))
    return constant;
  return nodeError(node) << what << " ('" << node.input(index)
                         << "') must be known when compiling, but it is "
                            "computed at run time; bind symbolic dimensions "
                            "with --dim-params or --shape";
}

FailureOr<int64_t> GraphImporter::resolveAxis(const onnx::NodeProto &node,
                                              int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    return nodeError(node) << "axis " << axis << " is out of range for rank "
                           << rank;
  return axis < 0 ? axis + rank : axis;
}

LogicalResult GraphImporter::importOutputs() {
  SmallVector<Value> results;
  for (const auto &output : file.model.graph().output()) {
    if (!isKnown(output.name()))
      return fileError() << "graph output '" << output.name()
                         << "' is not produced by any node";
    onnx::NodeProto fake;
    fake.set_name("output " + output.name());
    fake.set_op_type("Output");
    fake.add_input(output.name());
    FailureOr<Value> value = getValue(fake, 0);
    if (failed(value))
      return failure();
    results.push_back(*value);
  }
  func::ReturnOp::create(builder, fileLoc(), results);
  function.setType(builder.getFunctionType(function.getArgumentTypes(),
                                           ValueRange(results).getTypes()));
  for (auto [index, output] : llvm::enumerate(file.model.graph().output()))
    function.setResultAttr(index, "moe.name",
                           builder.getStringAttr(output.name()));
  return success();
}

OwningOpRef<ModuleOp> GraphImporter::run() {
  OwningOpRef<ModuleOp> owned = ModuleOp::create(fileLoc());
  module = *owned;
  findEagerExpertLoops();
  if (failed(checkOpsets()) || failed(checkSupportedOps()) ||
      failed(importInputs()) || failed(importInitializers()))
    return nullptr;
  FailureOr<std::vector<const onnx::NodeProto *>> order = sortNodes();
  if (failed(order))
    return nullptr;
  for (const onnx::NodeProto *node : *order) {
    if (absorbedNodes.count(node)) {
      for (const EagerExpertLoop &loop : eagerLoops)
        if (loop.sink == node && failed(convertEagerExpertLoop(loop)))
          return nullptr;
      continue;
    }
    bool folded = false;
    if (failed(tryFold(*node, folded)))
      return nullptr;
    if (folded)
      continue;
    if (failed((this->*findHandler(*node))(*node)))
      return nullptr;
  }
  if (failed(importOutputs()))
    return nullptr;
  if (failed(verify(*owned)))
    return nullptr;
  return owned;
}

} // namespace moe::onnx_import

//===----------------------------------------------------------------------===//
// Public entry points
//===----------------------------------------------------------------------===//

std::string moe::parseDimParams(StringRef text, ONNXImportOptions &options) {
  SmallVector<StringRef> items;
  text.split(items, ',', -1, /*KeepEmpty=*/false);
  for (StringRef item : items) {
    auto [name, value] = item.split('=');
    int64_t number;
    if (name.empty() || value.trim().getAsInteger(10, number) || number < 0)
      return ("--dim-params entry '" + item +
              "' must be NAME=N with N a non-negative integer")
          .str();
    options.dimParams[name.trim()] = number;
  }
  return "";
}

std::string moe::parseInputShapes(StringRef text, ONNXImportOptions &options) {
  SmallVector<StringRef> items;
  text.split(items, ',', -1, /*KeepEmpty=*/false);
  for (StringRef item : items) {
    auto [name, dims] = item.split('=');
    SmallVector<int64_t> shape;
    SmallVector<StringRef> parts;
    dims.split(parts, 'x', -1, /*KeepEmpty=*/true);
    bool ok = !name.empty() && !dims.empty();
    for (StringRef part : parts) {
      int64_t dim;
      if (part.trim().getAsInteger(10, dim) || dim < 0) {
        ok = false;
        break;
      }
      shape.push_back(dim);
    }
    if (!ok)
      return ("--shape entry '" + item +
              "' must be INPUT=DxDx... with non-negative integer dimensions")
          .str();
    options.inputShapes[name.trim()] = shape;
  }
  return "";
}

moe::ONNXImportFlags::ONNXImportFlags(llvm::cl::OptionCategory &category)
    : dimParams("dim-params",
                llvm::cl::desc("Values for symbolic input dimensions of an "
                               "ONNX model, e.g. "
                               "--dim-params=batch=1,sequence=128"),
                llvm::cl::value_desc("name=N,..."), llvm::cl::cat(category)),
      inputShapes("shape",
                  llvm::cl::desc("Shapes for ONNX graph inputs, overriding "
                                 "the model's, e.g. --shape=input_ids=1x128"),
                  llvm::cl::value_desc("input=DxD...,..."),
                  llvm::cl::cat(category)) {}

std::string moe::ONNXImportFlags::apply(ONNXImportOptions &options) const {
  std::string error = parseDimParams(dimParams, options);
  if (error.empty())
    error = parseInputShapes(inputShapes, options);
  return error;
}

void moe::registerONNXImportDialects(DialectRegistry &registry) {
  registry.insert<MoEDialect, arith::ArithDialect, func::FuncDialect,
                  shard::ShardDialect>();
}

OwningOpRef<ModuleOp> moe::importONNXFile(StringRef path, MLIRContext &context,
                                          const ONNXImportOptions &options) {
  context.loadDialect<MoEDialect, arith::ArithDialect, func::FuncDialect>();
  llvm::Expected<std::unique_ptr<ModelFile>> file = loadModelFile(path);
  if (!file) {
    emitError(FileLineColLoc::get(&context, path, 0, 0))
        << llvm::toString(file.takeError());
    return nullptr;
  }
  GraphImporter importer(**file, context, options);
  return importer.run();
}
