//===- DecomposeLayers.cpp - moe.layer into its routed parts --------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "LayerParts.h"

#include "mlir/IR/Builders.h"
#include "llvm/Support/Debug.h"

#define DEBUG_TYPE "moe-decompose-layers"

namespace moe {
#define GEN_PASS_DEF_DECOMPOSELAYERSPASS
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe

using namespace mlir;
using namespace moe;

namespace {

LogicalResult decompose(LayerOp layer) {
  OpBuilder builder(layer);
  Location loc = layer.getLoc();
  Value input = layer.getInput();
  auto inputType = cast<RankedTensorType>(input.getType());
  int64_t tokens = inputType.getDimSize(0);
  int64_t hidden = inputType.getDimSize(1);
  int64_t experts = layer.getNumExperts();
  int64_t topK = layer.getTopK();
  Type floatType = inputType.getElementType();
  Type indexType = builder.getI64Type();

  FailureOr<std::optional<int64_t>> capacity = layerCapacity(layer, tokens);
  if (failed(capacity))
    return failure();
  RouterOp router = buildRouter(builder, layer, input);

  int64_t rows = *capacity                       ? experts * **capacity
                 : ShapedType::isDynamic(tokens) ? ShapedType::kDynamic
                                                 : tokens * topK;
  IntegerAttr capacityAttr =
      *capacity ? builder.getI64IntegerAttr(**capacity) : IntegerAttr();
  auto dispatch = DispatchOp::create(
      builder, loc, RankedTensorType::get({rows, hidden}, floatType),
      RankedTensorType::get({experts}, indexType),
      RankedTensorType::get({rows}, indexType), input, router.getExperts(),
      builder.getI64IntegerAttr(experts), capacityAttr);

  auto expertOut = ExpertFFNOp::create(
      builder, loc, dispatch.getRows().getType(), dispatch.getRows(),
      dispatch.getCounts(), layer.getGateWeight(), layer.getUpWeight(),
      layer.getDownWeight(), layer.getGateBias(), layer.getUpBias(),
      layer.getDownBias(), layer.getActivationAttr(), capacityAttr);

  Value routed =
      CombineOp::create(builder, loc, inputType, expertOut.getResult(),
                        dispatch.getSources(), router.getWeights());
  Value result = addSharedExperts(builder, layer, input, routed,
                                  sharedExpertWeights(layer));

  LLVM_DEBUG(llvm::dbgs() << "decomposed " << layer << "\n");
  layer.getResult().replaceAllUsesWith(result);
  layer.erase();
  return success();
}

struct DecomposeLayersPass
    : public moe::impl::DecomposeLayersPassBase<DecomposeLayersPass> {
  void runOnOperation() override {
    SmallVector<LayerOp> layers;
    getOperation()->walk([&](LayerOp layer) { layers.push_back(layer); });
    for (LayerOp layer : layers) {
      if (failed(decompose(layer)))
        return signalPassFailure();
    }
  }
};

} // namespace

RouterOp moe::buildRouter(OpBuilder &builder, LayerOp layer, Value input) {
  auto inputType = cast<RankedTensorType>(input.getType());
  int64_t tokens = inputType.getDimSize(0);
  int64_t topK = layer.getTopK();
  return RouterOp::create(
      builder, layer.getLoc(),
      RankedTensorType::get({tokens, topK}, inputType.getElementType()),
      RankedTensorType::get({tokens, topK}, builder.getI64Type()), input,
      layer.getRouterWeight(), layer.getRouterBias(), layer.getCorrectionBias(),
      layer.getTopKAttr(), layer.getScoreAttr(), layer.getNormalizeAttr(),
      layer.getNumGroupsAttr(), layer.getTopKGroupsAttr(),
      layer.getRoutedScalingFactorAttr());
}

FailureOr<std::optional<int64_t>> moe::layerCapacity(LayerOp layer,
                                                     int64_t tokens) {
  std::optional<APFloat> factor = layer.getCapacityFactor();
  if (!factor)
    return std::optional<int64_t>();
  if (ShapedType::isDynamic(tokens)) {
    return layer.emitOpError()
           << "capacity_factor needs a static token count to size the "
              "expert buffers; give the input a static shape or drop the "
              "capacity factor";
  }
  return std::optional<int64_t>(expertCapacity(factor->convertToDouble(),
                                               tokens, layer.getTopK(),
                                               layer.getNumExperts()));
}

SharedExpertWeights moe::sharedExpertWeights(LayerOp layer) {
  return {layer.getSharedGateWeight(), layer.getSharedUpWeight(),
          layer.getSharedDownWeight()};
}

Value moe::addSharedExperts(OpBuilder &builder, LayerOp layer, Value input,
                            Value routed, const SharedExpertWeights &weights) {
  if (!layer.hasSharedExperts())
    return routed;
  Location loc = layer.getLoc();
  auto inputType = cast<RankedTensorType>(input.getType());
  Value shared = FFNOp::create(
      builder, loc, inputType, input, weights.gate, weights.up, weights.down,
      /*gate_bias=*/Value(), /*up_bias=*/Value(),
      /*down_bias=*/Value(), layer.getActivationAttr());
  if (Value gateWeight = layer.getSharedExpertGateWeight()) {
    auto gateType = RankedTensorType::get({inputType.getDimSize(0), 1},
                                          inputType.getElementType());
    Value logits = MatMulOp::create(builder, loc, gateType, input, gateWeight);
    Value gate = SigmoidOp::create(builder, loc, logits);
    shared = MulOp::create(builder, loc, inputType, shared, gate);
  }
  return AddOp::create(builder, loc, inputType, routed, shared);
}
