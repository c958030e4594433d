//===- RaiseLayers.cpp - recognise MoE blocks in imported graphs ----------===//
//
// Part of moe-compiler.
//
// Exported Mixture-of-Experts blocks arrive as dozens of graph ops. This pass
// finds them and rewrites each into one moe.layer, which the planner,
// partitioner and kernels understand. It recognises the "gathered experts"
// form that transformers' batched_mm implementation exports (see
// docs/design/hf-moe-export-patterns.md, section A): per (token, slot) pair,
// the slot's expert weights are gathered from 3-D weights and applied with a
// batched MatMul, and the K results are summed with their routing weights.
//
// Matching starts at the final sum over the K slots and walks up to the
// router. Every step checks shapes and operand roles; anything unexpected
// leaves the graph untouched, so a raised layer always computes what the
// subgraph did (the e2e tests compare both against onnxruntime).
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/Support/Debug.h"

#include <cmath>
#include <optional>

#define DEBUG_TYPE "moe-raise-layers"

namespace moe {
#define GEN_PASS_DEF_RAISELAYERSPASS
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe

using namespace mlir;
using namespace moe;

namespace {

ArrayRef<int64_t> shapeOf(Value value) {
  return cast<RankedTensorType>(value.getType()).getShape();
}

/// Follows reshapes up to the value they reshape.
Value stripReshapes(Value value) {
  while (auto reshape = value.getDefiningOp<ReshapeOp>()) {
    if (reshape.getShape())
      break;
    value = reshape.getInput();
  }
  return value;
}

/// The value of a splat float constant, if `value` is one.
std::optional<double> splatFloat(Value value) {
  DenseElementsAttr attr;
  if (!matchPattern(value, m_Constant(&attr)) || !attr.isSplat() ||
      !isa<FloatType>(attr.getElementType()))
    return std::nullopt;
  return attr.getSplatValue<APFloat>().convertToDouble();
}

/// `x` when `gated` is silu(x), written as moe.silu or as x * sigmoid(x);
/// null otherwise.
Value matchSiluInput(Value gated) {
  if (auto silu = gated.getDefiningOp<SiluOp>())
    return silu.getInput();
  auto mul = gated.getDefiningOp<MulOp>();
  if (!mul)
    return Value();
  for (auto [x, s] : {std::pair(mul.getLhs(), mul.getRhs()),
                      std::pair(mul.getRhs(), mul.getLhs())}) {
    auto sigmoid = s.getDefiningOp<SigmoidOp>();
    if (sigmoid && sigmoid.getInput() == x)
      return x;
  }
  return Value();
}

/// What the matcher found; everything needed to build the moe.layer.
struct GatheredExperts {
  Value tokens;       ///< [T, H]
  Value routerWeight; ///< [H, E] (before a transpose for Gemm transB)
  bool routerTransposed = false;
  int64_t topK = 0;
  bool normalize = false;
  /// DeepSeek-V3 routing: sigmoid scores, a correction bias that steers the
  /// choice, group-limited selection, and a scale on the weights.
  ScoreFunction score = ScoreFunction::softmax;
  Value correctionBias; ///< [E]
  int64_t numGroups = 1;
  int64_t topKGroups = 1;
  double routedScalingFactor = 1.0;
  Value gateUpWeights; ///< [E, 2I, H], gate rows first
  Value downWeights;   ///< [E, H, I]
  ActivationKind activation = ActivationKind::swiglu;
  /// The dense form has separate [in, out] weights: [E, H, I] gate and up,
  /// [E, I, H] down; gateUpWeights is then unset.
  Value denseGate, denseUp, denseDown;
};

/// `value` as a matmul of gathered per-slot weights with a column vector:
/// reshape([TK, O, 1] = matmul(gather(W[E, O, N], indices), reshape(x))).
/// Returns W, the gather indices and the [TK, N, 1] column operand.
struct GatheredMatVec {
  Value weights, indices, vector;
};

FailureOr<GatheredMatVec> matchGatheredMatVec(Value value) {
  auto reshape = value.getDefiningOp<ReshapeOp>();
  if (!reshape)
    return failure();
  auto matmul = reshape.getInput().getDefiningOp<MatMulOp>();
  if (!matmul || shapeOf(matmul.getResult()).size() != 3 ||
      shapeOf(matmul.getResult())[2] != 1)
    return failure();
  auto gather = matmul.getLhs().getDefiningOp<GatherOp>();
  if (!gather || gather.getAxis() != 0 ||
      shapeOf(gather.getData()).size() != 3 ||
      shapeOf(gather.getIndices()).size() != 1)
    return failure();
  ArrayRef<int64_t> column = shapeOf(matmul.getRhs());
  if (column.size() != 3 || column[2] != 1)
    return failure();
  return GatheredMatVec{gather.getData(), gather.getIndices(), matmul.getRhs()};
}

/// silu(g) * u with g, u the two halves of `h` along axis 1; returns h.
FailureOr<Value> matchSwiGLU(Value value) {
  auto mul = value.getDefiningOp<MulOp>();
  if (!mul)
    return failure();
  for (auto [gated, up] : {std::pair(mul.getLhs(), mul.getRhs()),
                           std::pair(mul.getRhs(), mul.getLhs())}) {
    Value gate = matchSiluInput(gated);
    if (!gate)
      continue;
    if (shapeOf(gate) != shapeOf(up) || shapeOf(gate).size() != 2)
      continue;
    // The halves come from a Split (dynamo exporter) or two Slices
    // (TorchScript exporter) of the same [TK, 2I] value.
    if (auto split = gate.getDefiningOp<SplitOp>()) {
      if (split.getNumResults() == 2 && split.getAxis() == 1 &&
          gate == split.getResult(0) && up == split.getResult(1))
        return split.getInput();
      continue;
    }
    auto gateSlice = gate.getDefiningOp<SliceOp>();
    auto upSlice = up.getDefiningOp<SliceOp>();
    if (!gateSlice || !upSlice || gateSlice.getInput() != upSlice.getInput())
      continue;
    int64_t half = shapeOf(gate)[1];
    auto isHalf = [&](SliceOp slice, int64_t start) {
      ArrayRef<int64_t> axes = slice.getAxes();
      return axes.size() == 1 && (axes[0] == 1 || axes[0] == -1) &&
             slice.getSteps()[0] == 1 && slice.getStarts()[0] == start &&
             shapeOf(slice.getInput())[1] == 2 * half;
    };
    if (isHalf(gateSlice, 0) && isHalf(upSlice, half))
      return gateSlice.getInput();
  }
  return failure();
}

/// The token repeat of transformers' batched_mm: [T, H] tokens expanded to
/// [T, K, H] and flattened to [T*K, H]. Returns the [T, H] tokens.
FailureOr<Value> matchTokenRepeat(Value repeated, int64_t topK) {
  if (topK == 1) {
    // One slot per token: the repeat is the identity, possibly reshaped.
    for (Value value = repeated;;) {
      if (shapeOf(value).size() == 2)
        return value;
      auto reshape = value.getDefiningOp<ReshapeOp>();
      if (!reshape || reshape.getShape())
        return failure();
      value = reshape.getInput();
    }
  }
  auto expand = stripReshapes(repeated).getDefiningOp<ExpandOp>();
  if (!expand)
    return failure();
  ArrayRef<int64_t> expanded = shapeOf(expand.getResult());
  ArrayRef<int64_t> input = shapeOf(expand.getInput());
  if (expanded.size() != 3 || input.size() != 3 || input[1] != 1 ||
      expanded[1] != topK || input[0] != expanded[0])
    return failure();
  auto unsqueeze = expand.getInput().getDefiningOp<ReshapeOp>();
  if (!unsqueeze || shapeOf(unsqueeze.getInput()).size() != 2)
    return failure();
  return unsqueeze.getInput();
}

/// The group limit of DeepSeek-V3's router on the choice scores `choice`
/// ([T, E]): `masked` = where(not(mask), -inf, choice), where the mask
/// marks the experts of the `top_k_groups` groups whose two best choices sum
/// highest (reshape to [T, G, E/G], top-2, sum, top-k groups, scatter ones
/// into zeros, expand back). Fills numGroups and topKGroups.
LogicalResult matchGroupLimit(WhereOp masked, Value choice,
                              GatheredExperts &match) {
  std::optional<double> fill = splatFloat(masked.getTrueValue());
  if (masked.getFalseValue() != choice || !fill || !std::isinf(*fill) ||
      *fill > 0)
    return failure();
  auto negate = masked.getCondition().getDefiningOp<NotOp>();
  auto cast = negate ? negate.getInput().getDefiningOp<CastOp>() : CastOp();
  if (!cast)
    return failure();
  Value mask = cast.getInput();
  while (true) {
    if (auto expand = mask.getDefiningOp<ExpandOp>())
      mask = expand.getInput();
    else if (auto reshape = mask.getDefiningOp<ReshapeOp>();
             reshape && !reshape.getShape())
      mask = reshape.getInput();
    else
      break;
  }
  auto scatter = mask.getDefiningOp<ScatterElementsOp>();
  std::optional<double> zeros =
      scatter ? splatFloat(scatter.getData()) : std::nullopt;
  std::optional<double> ones =
      scatter ? splatFloat(scatter.getUpdates()) : std::nullopt;
  if (!scatter || scatter.getAxis() != 1 || !zeros || *zeros != 0.0 || !ones ||
      *ones != 1.0 || scatter.getReduction() != ScatterReduction::none)
    return failure();
  auto groupTopK = scatter.getIndices().getDefiningOp<TopKOp>();
  if (!groupTopK || groupTopK.getSmallest() ||
      scatter.getIndices() != groupTopK.getIndices())
    return failure();
  auto rating = groupTopK.getInput().getDefiningOp<ReduceOp>();
  if (!rating || rating.getKind() != ReduceKind::sum || rating.getKeepDims() ||
      rating.getAxes() != ArrayRef<int64_t>{-1})
    return failure();
  auto best = rating.getInput().getDefiningOp<TopKOp>();
  if (!best || best.getSmallest() || rating.getInput() != best.getValues())
    return failure();
  auto grouped = best.getInput().getDefiningOp<ReshapeOp>();
  ArrayRef<int64_t> choiceShape = shapeOf(choice);
  if (!grouped || grouped.getInput() != choice || choiceShape.size() != 2)
    return failure();
  ArrayRef<int64_t> groups = shapeOf(grouped.getResult());
  if (groups.size() != 3 || groups[0] != choiceShape[0] ||
      groups[1] * groups[2] != choiceShape[1] ||
      static_cast<int64_t>(best.getK()) != std::min<int64_t>(2, groups[2]))
    return failure();
  match.numGroups = groups[1];
  match.topKGroups = groupTopK.getK();
  return success();
}

/// Routing weights per (token, slot) flattened to [T*K, 1]. Either the
/// top-k of softmax scores (Mixtral, Qwen2-MoE, OLMoE), or DeepSeek-V3's
/// sigmoid scores gathered at the top-k of a choice score (the scores plus a
/// correction bias, optionally group-limited); then optionally divided by
/// their sum (an epsilon added to the sum is accepted when it is too small
/// to change an fp32 sum: below 1e-12) and optionally scaled by a
/// constant. Fills topK, normalize, the score and router fields.
LogicalResult matchRouting(Value weights, Value indices,
                           GatheredExperts &match) {
  Value routed = stripReshapes(weights);
  if (auto scale = routed.getDefiningOp<MulOp>()) {
    for (auto [factor, other] : {std::pair(scale.getRhs(), scale.getLhs()),
                                 std::pair(scale.getLhs(), scale.getRhs())}) {
      std::optional<double> value = splatFloat(factor);
      if (!value || shapeOf(other) != shapeOf(routed))
        continue;
      match.routedScalingFactor = *value;
      routed = other;
      break;
    }
  }
  if (auto div = routed.getDefiningOp<DivOp>()) {
    Value denominator = div.getRhs();
    if (auto add = denominator.getDefiningOp<AddOp>()) {
      std::optional<double> epsilon = splatFloat(add.getRhs());
      if (!epsilon || std::abs(*epsilon) >= 1e-12)
        return failure();
      denominator = add.getLhs();
    }
    auto sum = denominator.getDefiningOp<ReduceOp>();
    if (!sum || sum.getKind() != ReduceKind::sum || !sum.getKeepDims() ||
        sum.getInput() != div.getLhs())
      return failure();
    match.normalize = true;
    routed = div.getLhs();
  }
  TopKOp topK;
  Value scores;
  if (auto gathered = routed.getDefiningOp<GatherElementsOp>()) {
    // Sigmoid scores at the selected experts.
    topK = gathered.getIndices().getDefiningOp<TopKOp>();
    if (!topK || gathered.getIndices() != topK.getIndices() ||
        (static_cast<int64_t>(gathered.getAxis()) != 1 &&
         static_cast<int64_t>(gathered.getAxis()) != -1))
      return failure();
    scores = gathered.getData();
    auto sigmoid = scores.getDefiningOp<SigmoidOp>();
    if (!sigmoid)
      return failure();
    match.score = ScoreFunction::sigmoid;
    Value choice = topK.getInput();
    if (auto masked = choice.getDefiningOp<WhereOp>()) {
      if (failed(matchGroupLimit(masked, masked.getFalseValue(), match)))
        return failure();
      choice = masked.getFalseValue();
    }
    if (choice != scores) {
      auto biased = choice.getDefiningOp<AddOp>();
      if (!biased || biased.getLhs() != scores ||
          shapeOf(biased.getRhs()).size() != 1 ||
          shapeOf(biased.getRhs())[0] != shapeOf(scores).back())
        return failure();
      match.correctionBias = biased.getRhs();
    }
  } else {
    topK = routed.getDefiningOp<TopKOp>();
    if (!topK || routed != topK.getValues())
      return failure();
    auto softmax = topK.getInput().getDefiningOp<SoftmaxOp>();
    if (!softmax || (static_cast<int64_t>(softmax.getAxis()) != -1 &&
                     static_cast<int64_t>(softmax.getAxis()) != 1))
      return failure();
    scores = softmax;
  }
  int64_t rank = shapeOf(topK.getInput()).size();
  if (topK.getSmallest() || rank != 2 ||
      (static_cast<int64_t>(topK.getAxis()) != -1 &&
       static_cast<int64_t>(topK.getAxis()) != 1) ||
      stripReshapes(indices) != topK.getIndices())
    return failure();
  match.topK = topK.getK();
  Value logits = scores.getDefiningOp()->getOperand(0);
  Value routerInput;
  if (auto gemm = logits.getDefiningOp<GemmOp>()) {
    if (gemm.getC() || gemm.getTransA() || !gemm.getTransB() ||
        gemm.getAlpha().convertToFloat() != 1.0f)
      return failure();
    routerInput = gemm.getA();
    match.routerWeight = gemm.getB();
    match.routerTransposed = true;
  } else if (auto matmul = logits.getDefiningOp<MatMulOp>()) {
    if (shapeOf(matmul.getRhs()).size() != 2)
      return failure();
    routerInput = matmul.getLhs();
    match.routerWeight = matmul.getRhs();
  } else {
    return failure();
  }
  // The router must read the same tokens as the experts.
  if (stripReshapes(routerInput) != stripReshapes(match.tokens) ||
      shapeOf(routerInput) != shapeOf(match.tokens))
    return failure();
  match.tokens = routerInput;
  return success();
}

FailureOr<GatheredExperts> matchGatheredExperts(ReduceOp sum) {
  GatheredExperts match;
  // sum over the K slots of [T, K, H].
  ArrayRef<int64_t> slots = shapeOf(sum.getInput());
  if (sum.getKind() != ReduceKind::sum || sum.getKeepDims() ||
      slots.size() != 3 || sum.getAxes().size() != 1 ||
      (sum.getAxes()[0] != 1 && sum.getAxes()[0] != -2))
    return failure();
  int64_t tokens = slots[0], topK = slots[1], hidden = slots[2];
  auto weighted = stripReshapes(sum.getInput()).getDefiningOp<MulOp>();
  if (!weighted)
    return failure();
  for (auto [expertOut, routing] :
       {std::pair(weighted.getLhs(), weighted.getRhs()),
        std::pair(weighted.getRhs(), weighted.getLhs())}) {
    if (shapeOf(expertOut) != ArrayRef<int64_t>{tokens * topK, hidden} ||
        shapeOf(routing) != ArrayRef<int64_t>{tokens * topK, 1})
      continue;
    FailureOr<GatheredMatVec> down = matchGatheredMatVec(expertOut);
    if (failed(down))
      continue;
    FailureOr<Value> fused = matchSwiGLU(stripReshapes(down->vector));
    if (failed(fused))
      continue;
    FailureOr<GatheredMatVec> gateUp = matchGatheredMatVec(*fused);
    if (failed(gateUp) ||
        stripReshapes(gateUp->indices) != stripReshapes(down->indices))
      continue;
    FailureOr<Value> repeated = matchTokenRepeat(gateUp->vector, topK);
    if (failed(repeated))
      continue;
    ArrayRef<int64_t> gateUpShape = shapeOf(gateUp->weights);
    ArrayRef<int64_t> downShape = shapeOf(down->weights);
    int64_t inter = gateUpShape[1] / 2;
    if (gateUpShape[1] % 2 != 0 || gateUpShape[2] != hidden ||
        downShape[0] != gateUpShape[0] || downShape[1] != hidden ||
        downShape[2] != inter)
      continue;
    match.tokens = *repeated;
    match.gateUpWeights = gateUp->weights;
    match.downWeights = down->weights;
    if (failed(matchRouting(routing, gateUp->indices, match)))
      continue;
    if (match.topK != topK || shapeOf(match.tokens)[0] != tokens)
      continue;
    return match;
  }
  return failure();
}

/// `value` = x @ W with W [E, H, I] broadcast over the experts ([T, H] x
/// [E, H, I] -> [E, T, I]). Returns W and x.
FailureOr<std::pair<Value, Value>> matchExpertMatMul(Value value) {
  auto matmul = value.getDefiningOp<MatMulOp>();
  if (!matmul || shapeOf(matmul.getRhs()).size() != 3 ||
      shapeOf(matmul.getLhs()).size() != 2)
    return failure();
  return std::pair<Value, Value>(matmul.getRhs(), matmul.getLhs());
}

/// silu(x @ Wg) * (x @ Wu) over all experts; fills the dense gate and up
/// weights and returns the tokens.
FailureOr<Value> matchDenseSwiGLU(Value value, GatheredExperts &match) {
  auto mul = value.getDefiningOp<MulOp>();
  if (!mul)
    return failure();
  for (auto [gated, upValue] : {std::pair(mul.getLhs(), mul.getRhs()),
                                std::pair(mul.getRhs(), mul.getLhs())}) {
    Value gateLogits = matchSiluInput(gated);
    if (!gateLogits)
      continue;
    FailureOr<std::pair<Value, Value>> gate = matchExpertMatMul(gateLogits);
    FailureOr<std::pair<Value, Value>> up = matchExpertMatMul(upValue);
    if (failed(gate) || failed(up) || gate->second != up->second)
      continue;
    match.activation = ActivationKind::swiglu;
    match.denseGate = gate->first;
    match.denseUp = up->first;
    return up->second;
  }
  return failure();
}

/// act(x @ W1) over all experts for an ungated activation; fills the dense
/// up weight and returns the tokens.
FailureOr<Value> matchDenseUngated(Value value, GatheredExperts &match) {
  Value logits;
  if (auto relu = value.getDefiningOp<ReluOp>()) {
    match.activation = ActivationKind::relu;
    logits = relu.getInput();
  } else if (auto gelu = value.getDefiningOp<GeluOp>()) {
    match.activation =
        gelu.getTanh() ? ActivationKind::gelu_tanh : ActivationKind::gelu;
    logits = gelu.getInput();
  } else if (auto silu = value.getDefiningOp<SiluOp>()) {
    match.activation = ActivationKind::silu;
    logits = silu.getInput();
  } else {
    return failure();
  }
  FailureOr<std::pair<Value, Value>> up = matchExpertMatMul(logits);
  if (failed(up))
    return failure();
  match.denseUp = up->first;
  return up->second;
}

/// The dense form: every expert on every token, weighted by a top-k mask
/// scattered from the routing weights and summed over the experts.
FailureOr<GatheredExperts> matchDenseExperts(ReduceOp sum) {
  ArrayRef<int64_t> perExpert = shapeOf(sum.getInput());
  if (sum.getKind() != ReduceKind::sum || sum.getKeepDims() ||
      perExpert.size() != 3 || sum.getAxes().size() != 1 ||
      (sum.getAxes()[0] != 0 && sum.getAxes()[0] != -3))
    return failure();
  int64_t experts = perExpert[0], tokens = perExpert[1], hidden = perExpert[2];
  auto weighted = sum.getInput().getDefiningOp<MulOp>();
  if (!weighted)
    return failure();
  for (auto [expertOut, mask] :
       {std::pair(weighted.getLhs(), weighted.getRhs()),
        std::pair(weighted.getRhs(), weighted.getLhs())}) {
    GatheredExperts match;
    if (shapeOf(mask) != ArrayRef<int64_t>{experts, tokens, 1})
      continue;
    // mask[e, t] = routing weight of expert e for token t, else 0.
    auto transpose = stripReshapes(mask).getDefiningOp<TransposeOp>();
    if (!transpose || transpose.getPermutation() != ArrayRef<int64_t>{1, 0})
      continue;
    auto scatter = transpose.getInput().getDefiningOp<ScatterElementsOp>();
    DenseElementsAttr zeros;
    if (!scatter || scatter.getAxis() != 1 ||
        scatter.getReduction() != ScatterReduction::none ||
        !matchPattern(scatter.getData(), m_Constant(&zeros)) ||
        !zeros.isSplat() || !isa<FloatType>(zeros.getElementType()) ||
        zeros.getSplatValue<APFloat>().isNonZero())
      continue;
    auto down = expertOut.getDefiningOp<MatMulOp>();
    if (!down || shapeOf(down.getRhs()).size() != 3)
      continue;
    FailureOr<Value> tokensValue = matchDenseSwiGLU(down.getLhs(), match);
    if (failed(tokensValue))
      tokensValue = matchDenseUngated(down.getLhs(), match);
    if (failed(tokensValue))
      continue;
    match.denseDown = down.getRhs();
    ArrayRef<int64_t> upShape = shapeOf(match.denseUp);
    if (upShape[0] != experts || upShape[1] != hidden ||
        shapeOf(match.denseDown) !=
            ArrayRef<int64_t>{experts, upShape[2], hidden} ||
        shapeOf(*tokensValue) != ArrayRef<int64_t>{tokens, hidden})
      continue;
    match.tokens = *tokensValue;
    if (failed(
            matchRouting(scatter.getUpdates(), scatter.getIndices(), match)) ||
        shapeOf(scatter.getUpdates())[1] != match.topK)
      continue;
    return match;
  }
  return failure();
}

Value transposeLastTwo(OpBuilder &builder, Location loc, Value value) {
  ArrayRef<int64_t> shape = shapeOf(value);
  SmallVector<int64_t> permutation = {0, 2, 1};
  SmallVector<int64_t> result = {shape[0], shape[2], shape[1]};
  if (shape.size() == 2) {
    permutation = {1, 0};
    result = {shape[1], shape[0]};
  }
  auto type = RankedTensorType::get(
      result, cast<RankedTensorType>(value.getType()).getElementType());
  return TransposeOp::create(builder, loc, type, value, permutation);
}

Value sliceRows(OpBuilder &builder, Location loc, Value value, int64_t start,
                int64_t size) {
  SmallVector<int64_t> shape(shapeOf(value));
  shape[1] = size;
  auto type = RankedTensorType::get(
      shape, cast<RankedTensorType>(value.getType()).getElementType());
  return SliceOp::create(builder, loc, type, value, ArrayRef<int64_t>{start},
                         ArrayRef<int64_t>{start + size}, ArrayRef<int64_t>{1},
                         ArrayRef<int64_t>{1});
}

void raise(ReduceOp sum, const GatheredExperts &match) {
  OpBuilder builder(sum);
  Location loc = sum.getLoc();
  Value router = match.routerTransposed
                     ? transposeLastTwo(builder, loc, match.routerWeight)
                     : match.routerWeight;
  Value gate = match.denseGate, up = match.denseUp, down = match.denseDown;
  if (match.gateUpWeights) {
    // [E, 2I, H] out-major rows: gate rows first, then up rows.
    int64_t inter = shapeOf(match.gateUpWeights)[1] / 2;
    gate = transposeLastTwo(
        builder, loc, sliceRows(builder, loc, match.gateUpWeights, 0, inter));
    up = transposeLastTwo(
        builder, loc,
        sliceRows(builder, loc, match.gateUpWeights, inter, inter));
    down = transposeLastTwo(builder, loc, match.downWeights);
  }
  auto layer = LayerOp::create(
      builder, loc, sum.getResult().getType(), match.tokens, router,
      /*router_bias=*/Value(), match.correctionBias, gate, up, down, Value(),
      Value(), Value(), Value(), Value(), Value(), Value(), match.topK,
      match.score, match.normalize, match.activation, match.numGroups,
      match.topKGroups, llvm::APFloat(match.routedScalingFactor),
      /*capacity_factor=*/FloatAttr());
  LLVM_DEBUG(llvm::dbgs() << "raised " << layer << "\n");
  sum.getResult().replaceAllUsesWith(layer.getResult());
}

/// A linear layer y = x @ W: MatMul with W [in, out], or Gemm with transB
/// and W [out, in].
struct Linear {
  Value input, weight;
  bool transposed = false;
};

FailureOr<Linear> matchLinear(Value value) {
  if (auto gemm = value.getDefiningOp<GemmOp>()) {
    if (gemm.getC() || gemm.getTransA() || !gemm.getTransB() ||
        gemm.getAlpha().convertToFloat() != 1.0f)
      return failure();
    return Linear{gemm.getA(), gemm.getB(), true};
  }
  if (auto matmul = value.getDefiningOp<MatMulOp>()) {
    if (shapeOf(matmul.getRhs()).size() != 2)
      return failure();
    return Linear{matmul.getLhs(), matmul.getRhs(), false};
  }
  return failure();
}

/// The shared expert of Qwen2-MoE: linear(silu(linear(x)) * linear(x)),
/// optionally scaled by sigmoid(linear(x)) with a [H, 1] weight.
struct SharedExpert {
  Linear gate, up, down;
  std::optional<Linear> expertGate;
};

FailureOr<SharedExpert> matchSharedExpert(Value value, Value tokens) {
  SharedExpert shared;
  // The same token rows, possibly with the leading dimensions split
  // ([B, S, H] for [B*S, H]): a row-wise FFN commutes with that.
  auto readsTokens = [&](const Linear &linear) {
    ArrayRef<int64_t> shape = shapeOf(linear.input);
    return stripReshapes(linear.input) == stripReshapes(tokens) &&
           shape.back() == shapeOf(tokens).back() &&
           ShapedType::getNumElements(shape) ==
               ShapedType::getNumElements(shapeOf(tokens));
  };
  Value ffn = value;
  if (auto scale = value.getDefiningOp<MulOp>()) {
    for (auto [gateSide, ffnSide] :
         {std::pair(scale.getLhs(), scale.getRhs()),
          std::pair(scale.getRhs(), scale.getLhs())}) {
      auto sigmoid = gateSide.getDefiningOp<SigmoidOp>();
      if (!sigmoid)
        continue;
      FailureOr<Linear> gate = matchLinear(sigmoid.getInput());
      if (failed(gate) || !readsTokens(*gate) ||
          shapeOf(sigmoid.getInput()).back() != 1)
        continue;
      shared.expertGate = *gate;
      ffn = ffnSide;
      break;
    }
  }
  FailureOr<Linear> down = matchLinear(ffn);
  if (failed(down))
    return failure();
  auto mul = down->input.getDefiningOp<MulOp>();
  if (!mul)
    return failure();
  for (auto [gated, upValue] : {std::pair(mul.getLhs(), mul.getRhs()),
                                std::pair(mul.getRhs(), mul.getLhs())}) {
    Value gateLogits = matchSiluInput(gated);
    if (!gateLogits)
      continue;
    FailureOr<Linear> gate = matchLinear(gateLogits);
    FailureOr<Linear> up = matchLinear(upValue);
    if (failed(gate) || failed(up) || !readsTokens(*gate) || !readsTokens(*up))
      continue;
    shared.gate = *gate;
    shared.up = *up;
    shared.down = *down;
    return shared;
  }
  return failure();
}

/// Folds `layer + shared expert` into the layer's shared-expert operands;
/// the sum may be taken after reshaping the layer's [T, H] result back to
/// [B, S, H] (DeepSeek-V3).
void absorbSharedExpert(LayerOp layer) {
  if (layer.hasSharedExperts() || !layer.getResult().hasOneUse() ||
      layer.getActivation() != ActivationKind::swiglu)
    return;
  Value routed = layer.getResult();
  Operation *user = *routed.getUsers().begin();
  auto unflatten = dyn_cast<ReshapeOp>(user);
  if (unflatten && !unflatten.getShape() && unflatten.getResult().hasOneUse() &&
      shapeOf(unflatten.getResult()).back() == shapeOf(routed).back()) {
    routed = unflatten.getResult();
    user = *routed.getUsers().begin();
  } else {
    unflatten = ReshapeOp();
  }
  auto add = dyn_cast<AddOp>(user);
  if (!add || add.getResult().getType() != routed.getType())
    return;
  Value other = add.getLhs() == routed ? add.getRhs() : add.getLhs();
  FailureOr<SharedExpert> shared = matchSharedExpert(other, layer.getInput());
  if (failed(shared))
    return;
  OpBuilder builder(add);
  Location loc = add.getLoc();
  auto asInOut = [&](const Linear &linear) {
    return linear.transposed ? transposeLastTwo(builder, loc, linear.weight)
                             : linear.weight;
  };
  Value expertGate =
      shared->expertGate ? asInOut(*shared->expertGate) : Value();
  auto fused = LayerOp::create(
      builder, loc, layer.getResult().getType(), layer.getInput(),
      layer.getRouterWeight(), layer.getRouterBias(), layer.getCorrectionBias(),
      layer.getGateWeight(), layer.getUpWeight(), layer.getDownWeight(),
      layer.getGateBias(), layer.getUpBias(), layer.getDownBias(),
      asInOut(shared->gate), asInOut(shared->up), asInOut(shared->down),
      expertGate, layer.getTopKAttr(), layer.getScoreAttr(),
      layer.getNormalizeAttr(), layer.getActivationAttr(),
      layer.getNumGroupsAttr(), layer.getTopKGroupsAttr(),
      layer.getRoutedScalingFactorAttr(), layer.getCapacityFactorAttr());
  Value result = fused.getResult();
  if (unflatten)
    result = ReshapeOp::create(builder, loc, routed.getType(), result, Value());
  add.getResult().replaceAllUsesWith(result);
}

struct RaiseLayersPass
    : public moe::impl::RaiseLayersPassBase<RaiseLayersPass> {
  void runOnOperation() override {
    SmallVector<std::pair<ReduceOp, GatheredExperts>> found;
    getOperation()->walk([&](ReduceOp sum) {
      FailureOr<GatheredExperts> match = matchGatheredExperts(sum);
      if (failed(match))
        match = matchDenseExperts(sum);
      if (succeeded(match))
        found.emplace_back(sum, *match);
    });
    for (auto &[sum, match] : found)
      raise(sum, match);
    SmallVector<LayerOp> layers;
    getOperation()->walk([&](LayerOp layer) { layers.push_back(layer); });
    for (LayerOp layer : layers)
      absorbSharedExpert(layer);
    // The matched subgraphs are dead now; erase them.
    IRRewriter rewriter(&getContext());
    (void)runRegionDCE(rewriter, getOperation()->getRegions());
  }
};

} // namespace
