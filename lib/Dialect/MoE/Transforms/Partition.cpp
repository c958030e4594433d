//===- Partition.cpp - apply a parallel plan to moe layers ----------------===//
//
// Part of moe-compiler.
//
// Expert parallelism as one SPMD program: see the pass description in
// Passes.td for the IR each moe.layer becomes.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"
#include "moe/Plan/PlanSearch.h"

#include "LayerParts.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

namespace moe {
#define GEN_PASS_DEF_PARTITIONPASS
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe

using namespace mlir;
using namespace moe;

namespace {

constexpr StringLiteral kGridName = "ep";
/// On moe.layer: the expert-parallel rank of each expert, from the plan.
constexpr StringLiteral kExpertRanksAttr = "moe.expert_ranks";
/// On a partitioned moe.dispatch: the expert each of its positions stands
/// for, when the experts are renumbered (moe-run --expert-load reports by
/// expert).
constexpr StringLiteral kExpertOrderAttr = "expert_order";

/// Builds the expert-parallel form of one layer on a 1-D grid of `ranks`.
class LayerPartitioner {
public:
  LayerPartitioner(LayerOp layer, int64_t ranks)
      : layer(layer), ranks(ranks), builder(layer), loc(layer.getLoc()) {}

  LogicalResult run();

private:
  RankedTensorType tensorType(ArrayRef<int64_t> shape, Type element) {
    return RankedTensorType::get(shape, element);
  }
  Value indexConstant(ArrayRef<int64_t> shape, int64_t value) {
    auto type = tensorType(shape, builder.getI64Type());
    return arith::ConstantOp::create(
        builder, loc,
        DenseElementsAttr::get(type, builder.getI64IntegerAttr(value)));
  }
  /// This rank's block of `value` along `axis`.
  Value slice(Value value, int64_t axis);
  Value allToAll(Value rows, Value sendCounts, int64_t resultRows,
                 Value *recvCounts = nullptr);
  Value reshape(Value value, ArrayRef<int64_t> shape);
  Value sum(Value value, int64_t axis);
  FailureOr<SmallVector<int64_t>> expertOrder(int64_t experts);

  LayerOp layer;
  int64_t ranks;
  OpBuilder builder;
  Location loc;
};

Value LayerPartitioner::slice(Value value, int64_t axis) {
  if (!value)
    return value;
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[axis] /= ranks;
  return shard::AllSliceOp::create(
      builder, loc, tensorType(shape, type.getElementType()), value, kGridName,
      ArrayRef<int16_t>{0}, axis);
}

Value LayerPartitioner::allToAll(Value rows, Value sendCounts,
                                 int64_t resultRows, Value *recvCounts) {
  auto type = cast<RankedTensorType>(rows.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = resultRows;
  auto exchange = RaggedAllToAllOp::create(
      builder, loc, tensorType(shape, type.getElementType()),
      sendCounts.getType(), rows, sendCounts, kGridName,
      builder.getDenseI16ArrayAttr({0}));
  if (recvCounts)
    *recvCounts = exchange.getRecvCounts();
  return exchange.getResult();
}

Value LayerPartitioner::reshape(Value value, ArrayRef<int64_t> shape) {
  auto type = cast<RankedTensorType>(value.getType());
  return ReshapeOp::create(
      builder, loc, tensorType(shape, type.getElementType()), value, Value());
}

Value LayerPartitioner::sum(Value value, int64_t axis) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape.erase(shape.begin() + axis);
  return ReduceOp::create(
      builder, loc, tensorType(shape, type.getElementType()), ReduceKind::sum,
      value, builder.getDenseI64ArrayAttr({axis}),
      /*keep_dims=*/false);
}

FailureOr<SmallVector<int64_t>>
LayerPartitioner::expertOrder(int64_t experts) {
  auto ranksOf = layer->getAttrOfType<DenseI64ArrayAttr>(kExpertRanksAttr);
  if (!ranksOf)
    return llvm::to_vector(llvm::seq<int64_t>(0, experts));
  if (static_cast<int64_t>(ranksOf.size()) != experts)
    return layer.emitOpError()
           << kExpertRanksAttr << " has " << ranksOf.size()
           << " entries; expected one rank per expert (" << experts << ")";
  SmallVector<int64_t> order;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    size_t before = order.size();
    for (auto [expert, owner] : llvm::enumerate(ranksOf.asArrayRef()))
      if (owner == rank)
        order.push_back(expert);
    if (static_cast<int64_t>(order.size() - before) != experts / ranks)
      return layer.emitOpError()
             << kExpertRanksAttr << " gives rank " << rank << " "
             << order.size() - before << " experts; every rank must hold "
             << experts / ranks;
  }
  if (static_cast<int64_t>(order.size()) != experts)
    return layer.emitOpError() << kExpertRanksAttr << " names a rank outside "
                               << "[0, " << ranks << ")";
  return order;
}

LogicalResult LayerPartitioner::run() {
  Value input = layer.getInput();
  auto inputType = cast<RankedTensorType>(input.getType());
  int64_t tokens = inputType.getDimSize(0);
  int64_t hidden = inputType.getDimSize(1);
  int64_t experts = layer.getNumExperts();
  int64_t topK = layer.getTopK();
  Type floatType = inputType.getElementType();
  Type indexType = builder.getI64Type();
  if (ShapedType::isDynamic(tokens))
    return layer.emitOpError()
           << "has a dynamic token count; expert parallelism splits the "
              "tokens over the ranks and needs it static (compile with "
              "--dim-params or --shape)";
  if (tokens % ranks != 0)
    return layer.emitOpError()
           << "has " << tokens << " tokens, which " << ranks
           << " expert-parallel ranks cannot share evenly; choose an ep "
              "that divides the token count";
  if (experts % ranks != 0)
    return layer.emitOpError()
           << "has " << experts << " experts, which " << ranks
           << " expert-parallel ranks cannot hold evenly; choose an ep that "
              "divides the expert count";
  int64_t localTokens = tokens / ranks;
  int64_t localExperts = experts / ranks;

  FailureOr<std::optional<int64_t>> capacity =
      layerCapacity(layer, localTokens);
  if (failed(capacity))
    return failure();

  // The experts in the order the ranks hold them: rank r holds positions
  // r*E/ep .. (r+1)*E/ep - 1. The plan's placement (moe.expert_ranks) or,
  // without one, contiguous blocks.
  FailureOr<SmallVector<int64_t>> order = expertOrder(experts);
  if (failed(order))
    return failure();
  bool contiguous = llvm::equal(*order, llvm::seq<int64_t>(0, experts));

  Value localInput = slice(input, 0);
  RouterOp router = buildRouter(builder, layer, localInput);
  Value selected = router.getExperts();
  if (!contiguous) {
    // Renumber the selected experts by their position in that order, so
    // that dispatch groups each rank's experts together.
    SmallVector<int64_t> position(experts);
    for (auto [index, expert] : llvm::enumerate(*order))
      position[expert] = index;
    Value table = arith::ConstantOp::create(
        builder, loc,
        DenseElementsAttr::get(tensorType({experts}, indexType),
                               ArrayRef<int64_t>(position)));
    selected = GatherOp::create(builder, loc, selected.getType(), table,
                                selected, builder.getI64IntegerAttr(0));
  }
  int64_t dispatchRows = *capacity ? experts * **capacity : localTokens * topK;
  IntegerAttr capacityAttr =
      *capacity ? builder.getI64IntegerAttr(**capacity) : IntegerAttr();
  auto dispatch = DispatchOp::create(
      builder, loc, tensorType({dispatchRows, hidden}, floatType),
      tensorType({experts}, indexType), tensorType({dispatchRows}, indexType),
      localInput, selected, builder.getI64IntegerAttr(experts), capacityAttr);
  if (!contiguous)
    dispatch->setAttr(kExpertOrderAttr, builder.getDenseI64ArrayAttr(*order));

  // Rows to each peer, and the [peers, local experts] row counts this rank
  // receives.
  Value sendCounts, peerCounts, localCounts;
  int64_t receivedRows;
  IntegerAttr expertCapacityAttr;
  if (*capacity) {
    // Every count is known: each expert block is C rows, padding included.
    int64_t block = **capacity;
    sendCounts = indexConstant({ranks}, localExperts * block);
    peerCounts = indexConstant({ranks, localExperts}, block);
    localCounts = indexConstant({localExperts}, ranks * block);
    receivedRows = ranks * localExperts * block;
    expertCapacityAttr = builder.getI64IntegerAttr(ranks * block);
  } else {
    Value counts = dispatch.getCounts();
    sendCounts = sum(reshape(counts, {ranks, localExperts}), 1);
    Value countsOfPeers =
        allToAll(counts, indexConstant({ranks}, localExperts), experts);
    peerCounts = reshape(countsOfPeers, {ranks, localExperts});
    localCounts = sum(peerCounts, 0);
    // At most every token of the group, each to this rank's experts.
    receivedRows = tokens * topK;
  }
  Value received;
  Value receivedCounts;
  received =
      allToAll(dispatch.getRows(), sendCounts, receivedRows, &receivedCounts);
  Value grouped = TransposeChunksOp::create(builder, loc, received.getType(),
                                            received, peerCounts);
  // This rank's experts: a slice of the weights, or the rows of its slice
  // of the order (both evaluated once, when the program loads).
  Value ownedExperts;
  if (!contiguous)
    ownedExperts = slice(
        arith::ConstantOp::create(
            builder, loc,
            DenseElementsAttr::get(tensorType({experts}, indexType),
                                   ArrayRef<int64_t>(*order))),
        0);
  auto localWeight = [&](Value weight) -> Value {
    if (!weight || contiguous)
      return slice(weight, 0);
    auto type = cast<RankedTensorType>(weight.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = localExperts;
    return GatherOp::create(builder, loc,
                            tensorType(shape, type.getElementType()), weight,
                            ownedExperts, builder.getI64IntegerAttr(0));
  };
  auto expertOut = ExpertFFNOp::create(
      builder, loc, grouped.getType(), grouped, localCounts,
      localWeight(layer.getGateWeight()), localWeight(layer.getUpWeight()),
      localWeight(layer.getDownWeight()), localWeight(layer.getGateBias()),
      localWeight(layer.getUpBias()), localWeight(layer.getDownBias()),
      layer.getActivationAttr(), expertCapacityAttr);
  Value countsByExpert = TransposeOp::create(
      builder, loc, tensorType({localExperts, ranks}, indexType), peerCounts,
      builder.getDenseI64ArrayAttr({1, 0}));
  Value returned = TransposeChunksOp::create(
      builder, loc, expertOut.getType(), expertOut.getResult(), countsByExpert);
  Value back = allToAll(returned, receivedCounts, dispatchRows);
  auto localType = tensorType({localTokens, hidden}, floatType);
  Value routed = CombineOp::create(builder, loc, localType, back,
                                   dispatch.getSources(), router.getWeights());
  Value localResult = addSharedExperts(builder, layer, localInput, routed);
  Value result = shard::AllGatherOp::create(builder, loc, inputType, kGridName,
                                            ArrayRef<int16_t>{0}, localResult,
                                            APInt(64, 0));
  layer.getResult().replaceAllUsesWith(result);
  layer.erase();
  return success();
}

struct PartitionPass : public moe::impl::PartitionPassBase<PartitionPass> {
  using PartitionPassBase::PartitionPassBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::string text = plan;
    if (text.empty()) {
      auto attr = module->getAttrOfType<StringAttr>("moe.plan");
      if (!attr) {
        module.emitError() << "moe-partition needs a plan: pass "
                              "plan=\"ep=N\" or plan the module first "
                              "(moe-compile --machine)";
        return signalPassFailure();
      }
      text = attr.getValue().str();
    }
    llvm::Expected<::moe::plan::PlanConstraints> parsed =
        ::moe::plan::parsePlanString(text);
    if (!parsed) {
      module.emitError() << llvm::toString(parsed.takeError());
      return signalPassFailure();
    }
    SmallVector<std::string> unsupported;
    auto check = [&](const char *key, std::optional<int64_t> value,
                     int64_t allowed) {
      if (value && *value != allowed)
        unsupported.push_back(std::string(key) + "=" + std::to_string(*value));
    };
    check("tp", parsed->tp, 1);
    check("pp", parsed->pp, 1);
    check("dp", parsed->dp, 1);
    check("etp", parsed->expertTp, 1);
    check("extra_slots", parsed->extraExpertSlots, 0);
    if (!unsupported.empty()) {
      module.emitError() << "plan \"" << text << "\" needs "
                         << llvm::join(unsupported, ", ")
                         << ", which the partitioner does not apply yet (it "
                            "applies expert parallelism: ep=N with tp, pp, "
                            "dp and etp 1 and no extra expert slots)";
      return signalPassFailure();
    }
    int64_t ranks = parsed->ep.value_or(1);
    if (ranks == 1)
      return;

    SmallVector<LayerOp> layers;
    module.walk([&](LayerOp layer) { layers.push_back(layer); });
    if (layers.empty())
      return;
    if (SymbolTable::lookupSymbolIn(module, kGridName)) {
      module.emitError() << "already has a symbol @" << kGridName
                         << "; the module was partitioned before";
      return signalPassFailure();
    }
    OpBuilder builder = OpBuilder::atBlockBegin(module.getBody());
    shard::GridOp::create(builder, module.getLoc(), kGridName,
                          ArrayRef<int64_t>{ranks});
    for (LayerOp layer : layers)
      if (failed(LayerPartitioner(layer, ranks).run()))
        return signalPassFailure();
  }
};

} // namespace
