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

#include "mlir/IR/Verifier.h"

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
  // Set for sigmoid routers (QMoE router_weights, MoEGroupRouter).
  Value correction;
  ScoreFunction score = ScoreFunction::softmax;
  int64_t numGroups = 1, topKGroups = 1;
  bool alwaysNormalize = false;
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

LogicalResult GraphImporter::convertShardedMoE(const onnx::NodeProto &node) {
  // MoE inputs and attributes, plus where this rank's experts start and how
  // many tensor-parallel pieces each expert is cut into; the ranks add their
  // partial outputs over NCCL. A node that holds every expert whole is a
  // plain MoE.
  int64_t shards = getIntAttr(node, "tensor_shards", 1);
  int64_t start = getIntAttr(node, "local_experts_start_index", 0);
  FailureOr<Value> logits = getValue(node, 1);
  FailureOr<Value> fc1 = getValue(node, 2);
  if (failed(logits) || failed(fc1))
    return failure();
  int64_t experts = shapeOf(*logits).back();
  int64_t held = shapeOf(*fc1).front();
  if (shards != 1 || start != 0 || held != experts)
    return nodeError(node)
           << "holds experts " << start << " to " << start + held - 1 << " of "
           << experts << " in " << shards
           << " tensor shard(s): one rank's part of a model sharded for "
              "NCCL, whose other ranks add the rest; import the model with "
              "every expert whole (local_experts_start_index = 0, "
              "tensor_shards = 1) and let moe-compile partition it";
  return convertORTMoE(node);
}

LogicalResult GraphImporter::convertORTMoE(const onnx::NodeProto &node) {
  // MoE: input, router_probs, fc1, fc1_bias, fc2, fc2_bias, fc3, fc3_bias.
  // QMoE: input, router_probs, fc1, fc1_scales, fc1_bias, fc2, fc2_scales,
  // fc2_bias, fc3 (3), fc1_zero_points (11), fc2_zero_points (12), ...,
  // router_weights (14).
  bool quantized = node.op_type() == "QMoE";
  int fc1Bias = quantized ? 4 : 3, fc2Index = quantized ? 5 : 4,
      fc2Bias = quantized ? 7 : 5;
  Location loc = nodeLoc(node);
  FailureOr<Value> input = getValue(node, 0);
  // A MoEGroupRouter output has no value of its own (see
  // convertMoEGroupRouter).
  FailureOr<Value> logits = groupRouters.count(node.input(1))
                                ? FailureOr<Value>(Value())
                                : getValue(node, 1);
  FailureOr<Value> fc1 = getValue(node, 2);
  FailureOr<Value> fc2 = getValue(node, fc2Index);
  if (failed(input) || failed(logits) || failed(fc1) || failed(fc2))
    return failure();
  if (quantized ? (hasInput(node, 8) || hasInput(node, 9) || hasInput(node, 10))
                : (hasInput(node, 6) || hasInput(node, 7)))
    return nodeError(node) << "fc3 weights are not supported (onnxruntime "
                              "does not run them on CPU either)";
  if (quantized && getStringAttr(node, "quant_type", "int") != "int")
    return nodeError(node) << "quant_type '"
                           << getStringAttr(node, "quant_type", "int")
                           << "' is not supported; only integer codes are";
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

  FailureOr<RouterMatch> router = failure();
  auto group = groupRouters.find(node.input(1));
  if (group != groupRouters.end()) {
    // MoEGroupRouter(l, c) writes log(sigmoid(l)) for the selected experts,
    // so the MoE softmax yields renormalised sigmoid scores: DeepSeek-V3
    // routing without routed scaling.
    router = matchRouter(group->second.logits, *input);
    if (succeeded(router)) {
      router->correction = group->second.correction;
      router->score = ScoreFunction::sigmoid;
      router->numGroups = group->second.numGroups;
      router->topKGroups = group->second.topKGroups;
      router->alwaysNormalize = true;
      if (group->second.topK != getIntAttr(node, "k", 1))
        return nodeError(node)
               << "k = " << getIntAttr(node, "k", 1)
               << " differs from the top_k = " << group->second.topK
               << " of the MoEGroupRouter feeding it";
    }
  } else if (quantized && hasInput(node, 14)) {
    // router_probs = sigmoid(l) + c selects, router_weights = sigmoid(l)
    // mixes: a sigmoid router with a correction bias.
    FailureOr<Value> mixing = getValue(node, 14);
    if (failed(mixing))
      return failure();
    auto scores = mixing->getDefiningOp<SigmoidOp>();
    auto add = logits->getDefiningOp<AddOp>();
    if (scores && add) {
      Value lhs = add.getLhs(), rhs = add.getRhs();
      if (rhs == scores.getResult())
        std::swap(lhs, rhs);
      if (lhs == scores.getResult() && shapeOf(rhs).size() == 1) {
        router = matchRouter(scores.getInput(), *input);
        if (succeeded(router)) {
          router->correction = rhs;
          router->score = ScoreFunction::sigmoid;
          router->ops.insert(router->ops.begin(), {add, scores});
        }
      }
    }
    if (failed(router))
      return nodeError(node)
             << "router_weights are supported as sigmoid(logits) with "
                "router_probs = sigmoid(logits) + correction bias, where "
                "logits = MatMul(input, weight)";
  } else {
    router = matchRouter(*logits, *input);
  }
  if (failed(router))
    return nodeError(node) << "router_probs must be computed in the graph as "
                              "MatMul(input, weight) (+ bias); logits from "
                              "elsewhere cannot be expressed as moe.layer";
  ArrayRef<int64_t> routerShape = shapeOf(router->weight);
  int64_t experts = routerShape[1];
  if (routerShape[0] != hidden)
    return nodeError(node) << "router weight " << formatShape(routerShape)
                           << " does not take hidden size " << hidden;

  // Expert sizes: fc2 holds E * H * I elements (or codes of that many)
  // whatever its declared layout.
  int64_t factor = gated ? 2 : 1;
  int64_t bits = quantized ? getIntAttr(node, "expert_weight_bits", 4) : 32;
  if (quantized && bits != 2 && bits != 4 && bits != 8)
    return nodeError(node) << "expert_weight_bits = " << bits
                           << " is not supported; use 2, 4 or 8";
  int64_t fc2Count = checkedNumElements(shapeOf(*fc2));
  int64_t fc2Elements = quantized ? fc2Count * 8 / bits : fc2Count;
  if (fc2Count <= 0 || fc2Elements % (experts * hidden) != 0)
    return nodeError(node) << "fc2_experts_weights "
                           << formatShape(shapeOf(*fc2))
                           << " does not hold [experts = " << experts
                           << ", hidden = " << hidden << ", inter] weights";
  int64_t inter = fc2Elements / (experts * hidden);
  int64_t fc1Elements = checkedNumElements(shapeOf(*fc1));
  if (quantized)
    fc1Elements = fc1Elements * 8 / bits;
  if (fc1Elements != experts * factor * inter * hidden)
    return nodeError(node) << "fc1_experts_weights "
                           << formatShape(shapeOf(*fc1)) << " does not hold ["
                           << experts << ", " << factor * inter << ", "
                           << hidden << "] weights";
  if (quantized) {
    // Codes are read as [E, rows, packed columns] whatever the declared
    // shape, like the float weights below.
    std::optional<int64_t> blockSize;
    if (findAttr(node, "block_size"))
      blockSize = getIntAttr(node, "block_size", 0);
    auto dequantize = [&](Value codes, int scalesIndex, int zeroIndex,
                          int64_t rows, int64_t columns) -> FailureOr<Value> {
      FailureOr<Value> scales = getValue(node, scalesIndex);
      if (failed(scales))
        return failure();
      FailureOr<Value> zeroPoints = getOptionalValue(node, zeroIndex);
      if (failed(zeroPoints))
        return failure();
      Value packed =
          emitReshape(loc, codes, {experts, rows, (columns * bits + 7) / 8});
      auto type = RankedTensorType::get({experts, rows, columns},
                                        elementTypeOf(*scales));
      auto op = DequantizeOp::create(
          builder, loc, type, packed, *scales, *zeroPoints,
          builder.getI64IntegerAttr(bits),
          blockSize ? builder.getI64IntegerAttr(*blockSize) : IntegerAttr());
      if (failed(verify(op)))
        return failure();
      return op.getResult();
    };
    FailureOr<Value> fc1Float = dequantize(*fc1, 3, 11, factor * inter, hidden);
    FailureOr<Value> fc2Float = dequantize(*fc2, 6, 12, hidden, inter);
    if (failed(fc1Float) || failed(fc2Float))
      return failure();
    fc1 = *fc1Float;
    fc2 = *fc2Float;
  }

  // onnxruntime reads the bytes as [E, f*I, H] and [E, H, I] whatever the
  // declared shape (a reshape, not a transpose), then computes x @ W[e].T.
  Value fc1Weights = emitTranspose(
      loc, emitReshape(loc, *fc1, {experts, factor * inter, hidden}),
      {0, 2, 1});
  Value down = emitTranspose(
      loc, emitReshape(loc, *fc2, {experts, hidden, inter}), {0, 2, 1});
  Value gate, up, gateBias, upBias, downBias;
  FailureOr<Value> fc1BiasInput = getOptionalValue(node, fc1Bias);
  FailureOr<Value> fc2BiasInput = getOptionalValue(node, fc2Bias);
  if (failed(fc1BiasInput) || failed(fc2BiasInput))
    return failure();
  Value fc1BiasValue;
  if (*fc1BiasInput)
    fc1BiasValue = emitReshape(loc, *fc1BiasInput, {experts, factor * inter});
  if (*fc2BiasInput)
    downBias = emitReshape(loc, *fc2BiasInput, {experts, hidden});
  if (!gated) {
    up = fc1Weights;
    upBias = fc1BiasValue;
  } else if (fusion == 1) {
    // Interleaved: fc1 rows (and bias entries) alternate gate, up.
    gate = emitStridedSlice(loc, fc1Weights, 2, 0, 2);
    up = emitStridedSlice(loc, fc1Weights, 2, 1, 2);
    if (fc1BiasValue) {
      gateBias = emitStridedSlice(loc, fc1BiasValue, 1, 0, 2);
      upBias = emitStridedSlice(loc, fc1BiasValue, 1, 1, 2);
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
    if (fc1BiasValue) {
      gateBias = half(fc1BiasValue, 1, 0);
      upBias = half(fc1BiasValue, 1, inter);
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
      router->correction, gate, up, down, gateBias, upBias, downBias,
      /*shared_gate_weight=*/Value(), /*shared_up_weight=*/Value(),
      /*shared_down_weight=*/Value(), /*shared_expert_gate_weight=*/Value(), k,
      router->score,
      // QMoE without router_weights always renormalises the top-k weights
      // (onnxruntime 1.32), and so does a MoEGroupRouter feeding MoE.
      router->alwaysNormalize || (quantized && !hasInput(node, 14)) ||
          getIntAttr(node, "normalize_routing_weights", 0) != 0,
      *activation, router->numGroups, router->topKGroups, llvm::APFloat(1.0),
      /*capacity_factor=*/FloatAttr());
  setResult(node, 0, emitReshape(loc, layer.getResult(), inputShape));

  // The router MatMul now lives inside moe.layer; drop it if nothing else
  // reads the logits.
  for (Operation *op : router->ops)
    if (op->use_empty())
      op->erase();
  return success();
}

LogicalResult
GraphImporter::convertMoEGroupRouter(const onnx::NodeProto &node) {
  // Only a MoE / QMoE node may read the output; it becomes part of the
  // moe.layer there (convertORTMoE), so nothing is emitted here.
  FailureOr<Value> logits = getValue(node, 0);
  FailureOr<Value> bias = getValue(node, 1);
  if (failed(logits) || failed(bias))
    return failure();
  if (getIntAttr(node, "group_topk", 2) != 2)
    return nodeError(node) << "group_topk = "
                           << getIntAttr(node, "group_topk", 2)
                           << " is not supported; groups are rated by the "
                              "sum of their 2 best scores";
  for (const onnx::NodeProto &user : file.model.graph().node()) {
    bool reads = llvm::is_contained(user.input(), node.output(0));
    if (reads && (user.domain() != "com.microsoft" ||
                  (user.op_type() != "MoE" && user.op_type() != "QMoE") ||
                  user.input(1) != node.output(0)))
      return nodeError(node)
             << "its output may only be the router_probs of "
                "MoE / QMoE nodes, but node '"
             << user.name() << "' (" << user.op_type() << ") reads it";
  }
  groupRouters[node.output(0)] = {*logits, *bias, getIntAttr(node, "top_k", 1),
                                  getIntAttr(node, "n_group", 1),
                                  getIntAttr(node, "topk_group", 1)};
  return success();
}
