//===- ORTMoEConversion.cpp - com.microsoft.MoE to moe.layer --------------===//
//
// Part of moe-compiler.
//
// onnxruntime's MoE contrib op takes router logits and out-major expert
// weights ([E, f*I, H] and [E, H, I], computed as x @ W[e].T). moe.layer takes
// the router weight itself and [in, out] expert weights, so the conversion
// finds the MatMul that produced the logits and expresses every weight as a
// reshape / transpose / strided slice of its initializer; the runtime folds
// those into the weight load. Semantics as established against onnxruntime
// 1.32 in docs/design/onnxruntime-moe.md.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "moe/Dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace moe;
using namespace moe::onnx_import;

Value GraphImporter::emitReshape(Location loc, Value value,
                                 ArrayRef<int64_t> shape) {
  auto type = RankedTensorType::get(shape, elementTypeOf(value));
  if (type == value.getType())
    return value;
  return ReshapeOp::create(builder, loc, type, value, Value());
}

Value GraphImporter::emitTranspose(Location loc, Value value,
                                   ArrayRef<int64_t> permutation) {
  ArrayRef<int64_t> shape = shapeOf(value);
  SmallVector<int64_t> result;
  for (int64_t index : permutation)
    result.push_back(shape[index]);
  auto type = RankedTensorType::get(result, elementTypeOf(value));
  return TransposeOp::create(builder, loc, type, value, permutation);
}

Value GraphImporter::emitStridedSlice(Location loc, Value value, int64_t axis,
                                      int64_t start, int64_t step) {
  SmallVector<int64_t> shape(shapeOf(value));
  int64_t end = shape[axis];
  shape[axis] = sliceDimSize(shape[axis], start, end, step);
  auto type = RankedTensorType::get(shape, elementTypeOf(value));
  return SliceOp::create(builder, loc, type, value, ArrayRef<int64_t>{start},
                         ArrayRef<int64_t>{end}, ArrayRef<int64_t>{axis},
                         ArrayRef<int64_t>{step});
}

namespace {

/// The router of an onnxruntime MoE node: logits = input @ weight (+ bias),
/// possibly reshaped. Returns failure when the logits come from elsewhere.
struct RouterMatch {
  Value weight, bias;
  SmallVector<Operation *> ops;
};

Value stripReshapes(Value value) {
  while (auto reshape = value.getDefiningOp<ReshapeOp>())
    value = reshape.getInput();
  return value;
}

FailureOr<RouterMatch> matchRouter(Value logits, Value input) {
  RouterMatch match;
  Value value = logits;
  if (auto reshape = value.getDefiningOp<ReshapeOp>()) {
    match.ops.push_back(reshape);
    value = reshape.getInput();
  }
  if (auto add = value.getDefiningOp<AddOp>()) {
    Value lhs = add.getLhs(), rhs = add.getRhs();
    if (!lhs.getDefiningOp<MatMulOp>())
      std::swap(lhs, rhs);
    if (!lhs.getDefiningOp<MatMulOp>() || shapeOf(rhs).size() != 1)
      return failure();
    match.ops.push_back(add);
    match.bias = rhs;
    value = lhs;
  }
  auto matmul = value.getDefiningOp<MatMulOp>();
  if (!matmul || stripReshapes(matmul.getLhs()) != stripReshapes(input) ||
      shapeOf(matmul.getRhs()).size() != 2)
    return failure();
  match.ops.push_back(matmul);
  match.weight = matmul.getRhs();
  return match;
}

} // namespace

LogicalResult GraphImporter::convertORTMoE(const onnx::NodeProto &node) {
  Location loc = nodeLoc(node);
  FailureOr<Value> input = getValue(node, 0);
  FailureOr<Value> logits = getValue(node, 1);
  FailureOr<Value> fc1 = getValue(node, 2);
  FailureOr<Value> fc2 = getValue(node, 4);
  if (failed(input) || failed(logits) || failed(fc1) || failed(fc2))
    return failure();
  if (hasInput(node, 6) || hasInput(node, 7))
    return nodeError(node) << "fc3 weights are not supported (onnxruntime "
                              "does not run them on CPU either)";

  std::string activationName = getStringAttr(node, "activation_type", "relu");
  std::optional<ActivationKind> activation =
      llvm::StringSwitch<std::optional<ActivationKind>>(activationName)
          .Case("relu", ActivationKind::relu)
          // onnxruntime's MoE gelu is the tanh approximation.
          .Case("gelu", ActivationKind::gelu_tanh)
          .Case("silu", ActivationKind::silu)
          .Case("identity", ActivationKind::identity)
          .Case("swiglu", ActivationKind::swiglu)
          .Default(std::nullopt);
  if (!activation)
    return nodeError(node) << "activation_type '" << activationName
                           << "' is not supported; use relu, gelu, silu, "
                              "identity or swiglu";
  bool gated = *activation == ActivationKind::swiglu;
  int64_t fusion = getIntAttr(node, "swiglu_fusion", 0);
  if (gated && fusion != 1 && fusion != 2)
    return nodeError(node) << "swiglu needs swiglu_fusion 1 (interleaved) or "
                              "2 (concatenated); separate fc3 gate weights "
                              "are not supported";
  if (getFloatAttr(node, "activation_alpha", 1.0f) != 1.0f ||
      getFloatAttr(node, "activation_beta", 0.0f) != 0.0f ||
      findAttr(node, "swiglu_limit"))
    return nodeError(node) << "clamped or scaled SwiGLU (activation_alpha, "
                              "activation_beta, swiglu_limit) is not "
                              "supported yet";
  if (getIntAttr(node, "use_sparse_mixer", 0))
    return nodeError(node) << "use_sparse_mixer is not supported";

  ArrayRef<int64_t> inputShape = shapeOf(*input);
  if (inputShape.size() != 2 && inputShape.size() != 3)
    return nodeError(node) << "input must be [tokens, hidden] or "
                              "[batch, sequence, hidden], got "
                           << formatShape(inputShape);
  // A dynamic token count is fine for [tokens, hidden]; flattening
  // [batch, sequence, hidden] needs the sizes.
  int64_t hidden = inputShape.back();
  if (ShapedType::isDynamic(hidden) ||
      (inputShape.size() == 3 &&
       llvm::any_of(inputShape, ShapedType::isDynamic)))
    return nodeError(node) << "input " << formatShape(inputShape)
                           << " has dynamic dimensions; bind them with "
                              "--dim-params or --shape";
  int64_t tokens = inputShape.size() == 2
                       ? inputShape[0]
                       : checkedNumElements(inputShape.drop_back());

  FailureOr<RouterMatch> router = matchRouter(*logits, *input);
  if (failed(router))
    return nodeError(node) << "router_probs must be computed in the graph as "
                              "MatMul(input, weight) (+ bias); logits from "
                              "elsewhere cannot be expressed as moe.layer";
  ArrayRef<int64_t> routerShape = shapeOf(router->weight);
  int64_t experts = routerShape[1];
  if (routerShape[0] != hidden)
    return nodeError(node) << "router weight " << formatShape(routerShape)
                           << " does not take hidden size " << hidden;

  // Expert sizes: fc2 holds E * H * I elements whatever its declared layout.
  int64_t fc2Count = checkedNumElements(shapeOf(*fc2));
  int64_t fc1Count = checkedNumElements(shapeOf(*fc1));
  int64_t factor = gated ? 2 : 1;
  if (fc2Count <= 0 || fc2Count % (experts * hidden) != 0)
    return nodeError(node) << "fc2_experts_weights "
                           << formatShape(shapeOf(*fc2))
                           << " does not hold [experts = " << experts
                           << ", hidden = " << hidden << ", inter] weights";
  int64_t inter = fc2Count / (experts * hidden);
  if (fc1Count != experts * factor * inter * hidden)
    return nodeError(node) << "fc1_experts_weights "
                           << formatShape(shapeOf(*fc1)) << " does not hold ["
                           << experts << ", " << factor * inter << ", "
                           << hidden << "] weights";

  // onnxruntime reads the bytes as [E, f*I, H] and [E, H, I] whatever the
  // declared shape (a reshape, not a transpose), then computes x @ W[e].T.
  Value fc1Weights = emitTranspose(
      loc, emitReshape(loc, *fc1, {experts, factor * inter, hidden}),
      {0, 2, 1});
  Value down = emitTranspose(
      loc, emitReshape(loc, *fc2, {experts, hidden, inter}), {0, 2, 1});
  Value gate, up, gateBias, upBias, downBias;
  Value fc1Bias;
  if (hasInput(node, 3)) {
    FailureOr<Value> value = getValue(node, 3);
    if (failed(value))
      return failure();
    fc1Bias = emitReshape(loc, *value, {experts, factor * inter});
  }
  if (hasInput(node, 5)) {
    FailureOr<Value> value = getValue(node, 5);
    if (failed(value))
      return failure();
    downBias = emitReshape(loc, *value, {experts, hidden});
  }
  if (!gated) {
    up = fc1Weights;
    upBias = fc1Bias;
  } else if (fusion == 1) {
    // Interleaved: fc1 rows (and bias entries) alternate gate, up.
    gate = emitStridedSlice(loc, fc1Weights, 2, 0, 2);
    up = emitStridedSlice(loc, fc1Weights, 2, 1, 2);
    if (fc1Bias) {
      gateBias = emitStridedSlice(loc, fc1Bias, 1, 0, 2);
      upBias = emitStridedSlice(loc, fc1Bias, 1, 1, 2);
    }
  } else {
    // Concatenated: the first I rows are the gate, the next I the up part.
    auto half = [&](Value value, int64_t axis, int64_t start) {
      SmallVector<int64_t> shape(shapeOf(value));
      shape[axis] = inter;
      auto type = RankedTensorType::get(shape, elementTypeOf(value));
      return SliceOp::create(builder, loc, type, value,
                             ArrayRef<int64_t>{start},
                             ArrayRef<int64_t>{start + inter},
                             ArrayRef<int64_t>{axis}, ArrayRef<int64_t>{1})
          .getResult();
    };
    gate = half(fc1Weights, 2, 0);
    up = half(fc1Weights, 2, inter);
    if (fc1Bias) {
      gateBias = half(fc1Bias, 1, 0);
      upBias = half(fc1Bias, 1, inter);
    }
  }

  int64_t k = getIntAttr(node, "k", 1);
  if (k < 1 || k > experts)
    return nodeError(node) << "k = " << k << " must be in [1, " << experts
                           << "]";
  Value tokensInput = emitReshape(loc, *input, {tokens, hidden});
  auto layerType =
      RankedTensorType::get({tokens, hidden}, elementTypeOf(*input));
  auto layer = LayerOp::create(
      builder, loc, layerType, tokensInput, router->weight, router->bias,
      /*correction_bias=*/Value(), gate, up, down, gateBias, upBias, downBias,
      /*shared_gate_weight=*/Value(), /*shared_up_weight=*/Value(),
      /*shared_down_weight=*/Value(), /*shared_expert_gate_weight=*/Value(), k,
      ScoreFunction::softmax,
      getIntAttr(node, "normalize_routing_weights", 0) != 0, *activation,
      /*num_groups=*/1, /*top_k_groups=*/1, llvm::APFloat(1.0),
      /*capacity_factor=*/FloatAttr());
  setResult(node, 0, emitReshape(loc, layer.getResult(), inputShape));

  // The router MatMul now lives inside moe.layer; drop it if nothing else
  // reads the logits.
  for (Operation *op : router->ops)
    if (op->use_empty())
      op->erase();
  return success();
}
