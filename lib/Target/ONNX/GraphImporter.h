//===- GraphImporter.h - ONNX graph to moe dialect, internals ---*- C++ -*-===//
//
// Part of moe-compiler.
//
// One GraphImporter converts the main graph of a model. Nodes are visited in
// dependency order (ONNX files need not be sorted). Each value is either an
// SSA value or, while it is small and known, a ConstTensor; shape arithmetic
// folds on ConstTensors and only reaches the IR when a real op needs it.
// ONNXImporter.cpp holds setup and values, ONNXOpConversions.cpp the per-op
// conversions, ConstFolding.cpp the folding.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_TARGET_ONNX_GRAPHIMPORTER_H
#define MOE_LIB_TARGET_ONNX_GRAPHIMPORTER_H

#include "ConstTensor.h"
#include "ONNXModelFile.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "moe/Target/ONNX/ONNXImporter.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/InterleavedRange.h"

#include <set>
#include <vector>

namespace moe::onnx_import {

using namespace mlir;

inline constexpr int64_t kMinOpset = 13;
inline constexpr int64_t kMaxOpset = 23;
/// Folded tensors above this size are left to run time.
inline constexpr int64_t kMaxFoldElements = 1 << 16;
/// Integer initializers stored as typed fields are decoded into constants up
/// to this size (position ids, masks); larger ones are refused.
inline constexpr int64_t kMaxTypedElements = 1 << 22;

inline const onnx::AttributeProto *findAttr(const onnx::NodeProto &node,
                                            StringRef name) {
  for (const auto &attr : node.attribute())
    if (attr.name() == name)
      return &attr;
  return nullptr;
}

inline int64_t getIntAttr(const onnx::NodeProto &node, StringRef name,
                          int64_t fallback) {
  const onnx::AttributeProto *attr = findAttr(node, name);
  return attr ? attr->i() : fallback;
}

inline float getFloatAttr(const onnx::NodeProto &node, StringRef name,
                          float fallback) {
  const onnx::AttributeProto *attr = findAttr(node, name);
  return attr ? attr->f() : fallback;
}

inline std::string getStringAttr(const onnx::NodeProto &node, StringRef name,
                                 StringRef fallback) {
  const onnx::AttributeProto *attr = findAttr(node, name);
  return attr ? attr->s() : fallback.str();
}

inline std::optional<SmallVector<int64_t>>
getIntsAttr(const onnx::NodeProto &node, StringRef name) {
  const onnx::AttributeProto *attr = findAttr(node, name);
  if (!attr)
    return std::nullopt;
  return SmallVector<int64_t>(attr->ints().begin(), attr->ints().end());
}

inline bool isDefaultDomain(StringRef domain) {
  return domain.empty() || domain == "ai.onnx";
}

inline ArrayRef<int64_t> shapeOf(Value value) {
  return cast<RankedTensorType>(value.getType()).getShape();
}

inline Type elementTypeOf(Value value) {
  return cast<RankedTensorType>(value.getType()).getElementType();
}

class GraphImporter {
public:
  GraphImporter(ModelFile &file, MLIRContext &context,
                const ONNXImportOptions &options)
      : file(file), context(context), options(options), builder(&context) {}

  OwningOpRef<ModuleOp> run();

private:
  using Handler = LogicalResult (GraphImporter::*)(const onnx::NodeProto &);

  // Diagnostics.
  Location fileLoc() { return FileLineColLoc::get(&context, file.path, 0, 0); }
  Location nodeLoc(const onnx::NodeProto &node) {
    std::string name = node.name().empty() ? node.op_type() : node.name();
    return NameLoc::get(StringAttr::get(&context, name), fileLoc());
  }
  InFlightDiagnostic fileError() { return emitError(fileLoc()); }
  InFlightDiagnostic nodeError(const onnx::NodeProto &node) {
    InFlightDiagnostic diag = emitError(nodeLoc(node));
    if (!node.name().empty())
      diag << "node '" << node.name() << "' (" << node.op_type() << "): ";
    else if (node.output_size() > 0)
      diag << node.op_type() << " node producing '" << node.output(0) << "': ";
    else
      diag << node.op_type() << " node: ";
    return diag;
  }

  // Setup.
  LogicalResult checkOpsets();
  LogicalResult checkSupportedOps();
  Handler findHandler(const onnx::NodeProto &node);
  LogicalResult importInputs();
  LogicalResult importInitializers();
  FailureOr<RankedTensorType> convertValueType(const onnx::ValueInfoProto &info,
                                               SmallVector<StringRef> &names);
  FailureOr<std::vector<const onnx::NodeProto *>> sortNodes();
  LogicalResult importOutputs();

  // Values.
  bool isKnown(StringRef name) {
    return values.count(name) || constants.count(name) ||
           pendingWeights.count(name);
  }
  const ConstTensor *getConst(StringRef name) {
    auto it = constants.find(name);
    return it == constants.end() ? nullptr : &it->second;
  }
  FailureOr<Value> getValue(const onnx::NodeProto &node, int index);
  /// getValue for an optional input: a null Value when it is absent.
  FailureOr<Value> getOptionalValue(const onnx::NodeProto &node, int index) {
    return hasInput(node, index) ? getValue(node, index)
                                 : FailureOr<Value>(Value());
  }
  FailureOr<Value> materializeWeight(StringRef name);
  FailureOr<const ConstTensor *> requireConst(const onnx::NodeProto &node,
                                              int index, StringRef what);
  bool hasInput(const onnx::NodeProto &node, int index) {
    return index < node.input_size() && !node.input(index).empty();
  }
  void setResult(const onnx::NodeProto &node, int index, Value value) {
    if (index < node.output_size() && !node.output(index).empty())
      values[node.output(index)] = value;
  }
  FailureOr<ConstTensor> decodeTensor(const onnx::TensorProto &tensor,
                                      StringRef what);
  FailureOr<int64_t> resolveAxis(const onnx::NodeProto &node, int64_t axis,
                                 int64_t rank);

  // Folding.
  LogicalResult tryFold(const onnx::NodeProto &node, bool &folded);

  // Handlers.
  LogicalResult convertUnary(const onnx::NodeProto &node);
  LogicalResult convertBinary(const onnx::NodeProto &node);
  LogicalResult convertCompare(const onnx::NodeProto &node);
  LogicalResult convertLogical(const onnx::NodeProto &node);
  LogicalResult convertWhere(const onnx::NodeProto &node);
  LogicalResult convertCast(const onnx::NodeProto &node);
  LogicalResult convertGelu(const onnx::NodeProto &node);
  LogicalResult convertMatMul(const onnx::NodeProto &node);
  LogicalResult convertGemm(const onnx::NodeProto &node);
  LogicalResult convertReduce(const onnx::NodeProto &node);
  LogicalResult convertSoftmax(const onnx::NodeProto &node);
  LogicalResult convertTopK(const onnx::NodeProto &node);
  LogicalResult convertLayerNorm(const onnx::NodeProto &node);
  LogicalResult convertSimplifiedLayerNorm(const onnx::NodeProto &node);
  LogicalResult convertSkipSimplifiedLayerNorm(const onnx::NodeProto &node);
  LogicalResult convertGather(const onnx::NodeProto &node);
  LogicalResult convertGatherElements(const onnx::NodeProto &node);
  LogicalResult convertGatherND(const onnx::NodeProto &node);
  LogicalResult convertIsNaN(const onnx::NodeProto &node);
  LogicalResult convertScatterElements(const onnx::NodeProto &node);
  LogicalResult convertScatterND(const onnx::NodeProto &node);
  LogicalResult convertReshapeLike(const onnx::NodeProto &node);
  LogicalResult convertTranspose(const onnx::NodeProto &node);
  LogicalResult convertTile(const onnx::NodeProto &node);
  LogicalResult convertExpand(const onnx::NodeProto &node);
  LogicalResult convertSlice(const onnx::NodeProto &node);
  LogicalResult convertConcat(const onnx::NodeProto &node);
  LogicalResult convertSplit(const onnx::NodeProto &node);
  LogicalResult convertTrilu(const onnx::NodeProto &node);
  LogicalResult convertIdentity(const onnx::NodeProto &node);
  LogicalResult convertConstantNode(const onnx::NodeProto &node);
  LogicalResult convertNeedsConstants(const onnx::NodeProto &node);
  LogicalResult convertORTMoE(const onnx::NodeProto &node);
  LogicalResult convertShardedMoE(const onnx::NodeProto &node);

  /// The unrolled expert loop of transformers' eager experts
  /// (EagerExpertLoop.cpp): its nodes are not imported one by one; the sink
  /// node's output is computed in the gathered-experts form instead.
  struct EagerExpertLoop {
    const onnx::NodeProto *sink = nullptr;
    std::string tokens, weights, indices, gateUp, down;
    int64_t iterations = 0;
    std::set<const onnx::NodeProto *> nodes;
  };
  void findEagerExpertLoops();
  LogicalResult convertEagerExpertLoop(const EagerExpertLoop &loop);
  std::vector<EagerExpertLoop> eagerLoops;
  llvm::DenseSet<const onnx::NodeProto *> absorbedNodes;
  LogicalResult convertMoEGroupRouter(const onnx::NodeProto &node);

  Value emitReshape(Location loc, Value value, ArrayRef<int64_t> shape);
  Value emitTranspose(Location loc, Value value, ArrayRef<int64_t> permutation);
  Value emitStridedSlice(Location loc, Value value, int64_t axis, int64_t start,
                         int64_t step);

  FailureOr<Value> emitRMSNorm(const onnx::NodeProto &node, Value input,
                               Value scale, int64_t axis, float epsilon);
  FailureOr<SmallVector<int64_t>> reshapeTarget(const onnx::NodeProto &node,
                                                ArrayRef<int64_t> input);

  ModelFile &file;
  MLIRContext &context;
  const ONNXImportOptions &options;
  OpBuilder builder;
  ModuleOp module;
  func::FuncOp function;
  Block *entry = nullptr;
  int64_t opset = 0;

  llvm::StringMap<Value> values;
  llvm::StringMap<ConstTensor> constants;
  /// Large initializers, imported as moe.weight on first use.
  llvm::StringMap<int> pendingWeights;
  llvm::StringMap<std::string> weightSymbols;

  /// onnxruntime MoEGroupRouter nodes, by output name, for the MoE nodes
  /// that read them.
  struct GroupRouter {
    Value logits, correction;
    int64_t topK, numGroups, topKGroups;
  };
  llvm::StringMap<GroupRouter> groupRouters;
};

} // namespace moe::onnx_import

#endif // MOE_LIB_TARGET_ONNX_GRAPHIMPORTER_H
