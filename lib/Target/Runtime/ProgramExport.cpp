//===- ProgramExport.cpp - moe IR to runtime programs ---------------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/Runtime/ProgramExport.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/SymbolTable.h"
#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

using namespace mlir;
using namespace moe;

namespace {

FailureOr<rt::DType> convertElementType(Type type) {
  if (type.isF32())
    return rt::DType::F32;
  if (type.isF64())
    return rt::DType::F64;
  if (type.isF16())
    return rt::DType::F16;
  if (type.isBF16())
    return rt::DType::BF16;
  if (type.isInteger(1))
    return rt::DType::Bool;
  if (type.isUnsignedInteger(8))
    return rt::DType::U8;
  if (type.isSignlessInteger(8) || type.isSignedInteger(8))
    return rt::DType::I8;
  if (type.isSignlessInteger(16) || type.isSignedInteger(16))
    return rt::DType::I16;
  if (type.isSignlessInteger(32) || type.isSignedInteger(32))
    return rt::DType::I32;
  if (type.isSignlessInteger(64) || type.isSignedInteger(64))
    return rt::DType::I64;
  return failure();
}

bool isEnumAttributeName(StringRef name) {
  return llvm::is_contained(
      {"activation", "score", "kind", "reduction", "predicate"}, name);
}

std::string stringifyEnumAttribute(StringRef name, int64_t value) {
  StringRef result =
      llvm::StringSwitch<StringRef>(name)
          .Case("activation",
                stringifyActivationKind(static_cast<ActivationKind>(value)))
          .Case("score",
                stringifyScoreFunction(static_cast<ScoreFunction>(value)))
          .Case("kind", stringifyReduceKind(static_cast<ReduceKind>(value)))
          .Case("reduction",
                stringifyScatterReduction(static_cast<ScatterReduction>(value)))
          .Case("predicate",
                stringifyComparePredicate(static_cast<ComparePredicate>(value)))
          .Default("");
  return result.str();
}

class Exporter {
public:
  Exporter(func::FuncOp function, rt::Program &program)
      : function(function), program(program) {}

  LogicalResult run();

private:
  FailureOr<rt::ValueType> convertType(Operation *where, Value value);
  LogicalResult exportWeight(WeightRefOp ref);
  LogicalResult exportConstant(arith::ConstantOp constant);
  LogicalResult exportOperation(Operation *op);
  LogicalResult exportGrid(Operation *op, FlatSymbolRefAttr name);
  LogicalResult convertAttribute(Operation *op, StringRef name, Attribute value,
                                 rt::Attributes &attrs);
  int define(Value value) {
    int id = program.numValues++;
    ids[value] = id;
    return id;
  }

  func::FuncOp function;
  rt::Program &program;
  DenseMap<Value, int> ids;
  SymbolTableCollection symbols;
};

FailureOr<rt::ValueType> Exporter::convertType(Operation *where, Value value) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type)
    return where->emitOpError() << "produces " << value.getType()
                                << "; the runtime handles ranked tensors only";
  if (!type.hasStaticShape())
    return where->emitOpError()
           << "has a value of type " << type
           << " with dynamic dimensions; the CPU runtime needs static shapes "
              "(compile with --dim-params or --shape)";
  FailureOr<rt::DType> dtype = convertElementType(type.getElementType());
  if (failed(dtype))
    return where->emitOpError() << "uses element type " << type.getElementType()
                                << ", which the runtime does not support";
  return rt::ValueType{
      *dtype, rt::Shape(type.getShape().begin(), type.getShape().end())};
}

LogicalResult Exporter::exportWeight(WeightRefOp ref) {
  auto weight =
      symbols.lookupNearestSymbolFrom<WeightOp>(ref, ref.getNameAttr());
  if (!weight)
    return ref.emitOpError() << "names no moe.weight";
  FailureOr<rt::ValueType> type = convertType(ref, ref.getResult());
  if (failed(type))
    return failure();
  rt::WeightDecl decl;
  decl.name = ref.getName().str();
  decl.type = *type;
  RankedTensorType full = weight.getTensorType();
  decl.fullShape.assign(full.getShape().begin(), full.getShape().end());
  StorageAttr storage = weight.getStorage();
  decl.file = storage.getFile().str();
  decl.offset = storage.getOffset();
  decl.length = storage.getLength();
  if (std::optional<SliceAttr> slice = ref.getSlice())
    decl.sliceOffsets =
        rt::Shape(slice->getOffsets().begin(), slice->getOffsets().end());
  if (full.getElementType().getIntOrFloatBitWidth() < 8)
    return ref.emitOpError() << "reads sub-byte weights, which the runtime "
                                "does not unpack yet";
  decl.id = define(ref.getResult());
  program.weights.push_back(std::move(decl));
  return success();
}

LogicalResult Exporter::exportConstant(arith::ConstantOp constant) {
  auto dense = dyn_cast<DenseElementsAttr>(constant.getValue());
  if (!dense)
    return constant.emitOpError() << "is not a dense tensor constant";
  FailureOr<rt::ValueType> type = convertType(constant, constant.getResult());
  if (failed(type))
    return failure();
  rt::ConstDecl decl;
  decl.type = *type;
  if (isa<FloatType>(dense.getElementType())) {
    for (APFloat value : dense.getValues<APFloat>())
      decl.values.push_back(value.convertToDouble());
  } else if (dense.getElementType().isInteger(1)) {
    for (bool value : dense.getValues<bool>())
      decl.values.push_back(value);
  } else {
    bool isUnsigned = dense.getElementType().isUnsignedInteger();
    for (APInt value : dense.getValues<APInt>())
      decl.values.push_back(isUnsigned ? value.getZExtValue()
                                       : value.getSExtValue());
  }
  decl.id = define(constant.getResult());
  program.constants.push_back(std::move(decl));
  return success();
}

LogicalResult Exporter::convertAttribute(Operation *op, StringRef name,
                                         Attribute value,
                                         rt::Attributes &attrs) {
  std::string key = name.str();
  // Enumerations travel as their keywords, as the kernels expect. The enum
  // attributes are all i32 IntegerAttrs underneath, so their attribute name,
  // not their class, says which enumeration they are.
  if (auto attr = dyn_cast<IntegerAttr>(value);
      attr && isEnumAttributeName(name)) {
    attrs.strings[key] = stringifyEnumAttribute(name, attr.getInt());
    return success();
  }
  if (auto attr = dyn_cast<shard::ReductionKindAttr>(value))
    attrs.strings[key] = shard::stringifyReductionKind(attr.getValue()).str();
  else if (isa<UnitAttr>(value))
    attrs.ints[key] = 1;
  else if (auto attr = dyn_cast<BoolAttr>(value))
    attrs.ints[key] = attr.getValue();
  else if (auto attr = dyn_cast<IntegerAttr>(value))
    attrs.ints[key] = attr.getValue().getSExtValue();
  else if (auto attr = dyn_cast<FloatAttr>(value))
    attrs.floats[key] = attr.getValueAsDouble();
  else if (auto attr = dyn_cast<DenseI64ArrayAttr>(value))
    attrs.arrays[key] = std::vector<int64_t>(attr.asArrayRef().begin(),
                                             attr.asArrayRef().end());
  else if (auto attr = dyn_cast<DenseI16ArrayAttr>(value))
    attrs.arrays[key] = std::vector<int64_t>(attr.asArrayRef().begin(),
                                             attr.asArrayRef().end());
  else if (auto attr = dyn_cast<FlatSymbolRefAttr>(value))
    attrs.strings[key] = attr.getValue().str();
  else if (auto attr = dyn_cast<StringAttr>(value))
    attrs.strings[key] = attr.getValue().str();
  else
    return op->emitOpError() << "has attribute '" << name << "' = " << value
                             << ", which the runtime program cannot carry";
  return success();
}

LogicalResult Exporter::exportOperation(Operation *op) {
  rt::Operation record;
  record.op = op->getName().stripDialect().str();
  // Optional operands keep their place ('-') so kernels see the declared
  // operand order.
  auto segments = op->getAttrOfType<DenseI32ArrayAttr>("operandSegmentSizes");
  unsigned next = 0;
  auto addOperand = [&](Value operand) -> LogicalResult {
    auto it = ids.find(operand);
    if (it == ids.end())
      return op->emitOpError() << "uses a value the runtime program does not "
                                  "define";
    record.operands.push_back(it->second);
    return success();
  };
  if (segments) {
    for (int32_t size : segments.asArrayRef()) {
      if (size == 0)
        record.operands.push_back(-1);
      for (int32_t i = 0; i < size; ++i)
        if (failed(addOperand(op->getOperand(next++))))
          return failure();
    }
  } else {
    for (Value operand : op->getOperands())
      if (failed(addOperand(operand)))
        return failure();
  }
  for (NamedAttribute attr : op->getAttrDictionary()) {
    if (attr.getName() == "operandSegmentSizes")
      continue;
    if (attr.getName() == "grid" &&
        failed(exportGrid(op, dyn_cast<FlatSymbolRefAttr>(attr.getValue()))))
      return failure();
    if (failed(convertAttribute(op, attr.getName(), attr.getValue(),
                                record.attrs)))
      return failure();
  }
  for (Value result : op->getResults()) {
    FailureOr<rt::ValueType> type = convertType(op, result);
    if (failed(type))
      return failure();
    record.results.push_back(define(result));
    record.resultTypes.push_back(*type);
  }
  program.operations.push_back(std::move(record));
  return success();
}

LogicalResult Exporter::exportGrid(Operation *op, FlatSymbolRefAttr name) {
  auto grid = name ? symbols.lookupNearestSymbolFrom<shard::GridOp>(op, name)
                   : shard::GridOp();
  if (!grid)
    return op->emitOpError() << "names no shard.grid";
  for (const rt::GridDecl &known : program.grids)
    if (known.name == grid.getSymName())
      return success();
  rt::GridDecl decl;
  decl.name = grid.getSymName().str();
  for (int64_t size : grid.getShape()) {
    if (ShapedType::isDynamic(size))
      return grid.emitOpError()
             << "has a dynamic size; the runtime needs the number of ranks";
    decl.shape.push_back(size);
  }
  program.grids.push_back(std::move(decl));
  return success();
}

/// The upstream shard collectives the runtime has kernels for.
bool isRuntimeShardOp(Operation *op) {
  return isa<shard::AllSliceOp, shard::AllGatherOp, shard::AllReduceOp>(op);
}

LogicalResult Exporter::run() {
  Block &entry = function.getBody().front();
  if (auto grid =
          function->getAttrOfType<FlatSymbolRefAttr>("moe.pipeline_grid")) {
    auto axis = function->getAttrOfType<IntegerAttr>("moe.pipeline_axis");
    if (!axis)
      return function.emitOpError()
             << "has moe.pipeline_grid but no moe.pipeline_axis";
    if (failed(exportGrid(function, grid)))
      return failure();
    program.pipeline = rt::PipelineDecl{grid.getValue().str(), axis.getInt()};
  }
  for (BlockArgument argument : entry.getArguments()) {
    FailureOr<rt::ValueType> type = convertType(function, argument);
    if (failed(type))
      return failure();
    rt::InputDecl input;
    auto name = function.getArgAttrOfType<StringAttr>(argument.getArgNumber(),
                                                      "moe.name");
    input.name =
        name ? name.str() : "input" + std::to_string(argument.getArgNumber());
    input.type = *type;
    input.id = define(argument);
    program.inputs.push_back(std::move(input));
  }
  for (Operation &op : entry) {
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](WeightRefOp ref) { return exportWeight(ref); })
            .Case([&](arith::ConstantOp constant) {
              return exportConstant(constant);
            })
            .Case([&](func::ReturnOp ret) {
              for (auto [index, operand] : llvm::enumerate(ret.getOperands())) {
                auto name =
                    function.getResultAttrOfType<StringAttr>(index, "moe.name");
                program.outputs.push_back(
                    {ids.lookup(operand),
                     name ? name.str() : "output" + std::to_string(index)});
              }
              return success();
            })
            .Default([&](Operation *other) -> LogicalResult {
              if ((!isa<MoEDialect>(other->getDialect()) &&
                   !isRuntimeShardOp(other)) ||
                  other->getNumRegions() != 0)
                return other->emitOpError()
                       << "cannot run on the CPU runtime; only moe operations "
                          "and the shard collectives all_slice, all_gather "
                          "and all_reduce are lowered";
              return exportOperation(other);
            });
    if (failed(result))
      return failure();
  }
  return success();
}

} // namespace

LogicalResult moe::exportProgram(func::FuncOp function, StringRef weightsDir,
                                 rt::Program &program) {
  program = rt::Program();
  program.weightsDir = weightsDir.str();
  return Exporter(function, program).run();
}

std::string moe::relativeDirectory(StringRef from, StringRef to) {
  llvm::SmallString<256> fromPath(from), toPath(to);
  if (llvm::sys::fs::make_absolute(fromPath) ||
      llvm::sys::fs::make_absolute(toPath))
    return toPath.str().str();
  llvm::sys::path::remove_dots(fromPath, /*remove_dot_dot=*/true);
  llvm::sys::path::remove_dots(toPath, /*remove_dot_dot=*/true);
  // Directories that share only the root are better named absolutely.
  SmallVector<StringRef> a(llvm::sys::path::begin(fromPath),
                           llvm::sys::path::end(fromPath));
  SmallVector<StringRef> b(llvm::sys::path::begin(toPath),
                           llvm::sys::path::end(toPath));
  size_t common = 0;
  while (common < a.size() && common < b.size() && a[common] == b[common])
    ++common;
  if (common <= 1)
    return toPath.str().str();
  llvm::SmallString<256> result;
  for (size_t i = common; i < a.size(); ++i)
    llvm::sys::path::append(result, "..");
  for (size_t i = common; i < b.size(); ++i)
    llvm::sys::path::append(result, b[i]);
  return result.empty() ? "." : result.str().str();
}
