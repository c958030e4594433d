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
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

#include <set>

namespace moe {
#define GEN_PASS_DEF_PARTITIONPASS
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe

using namespace mlir;
using namespace moe;

namespace {

/// On moe.layer: the expert-parallel rank of each expert, from the plan.
constexpr StringLiteral kExpertRanksAttr = "moe.expert_ranks";
/// On moe.layer, for placements that replicate experts or leave slots
/// empty: the expert in each of the ep x S expert slots (rank r holds slots
/// r*S .. r*S+S-1), -1 for an empty slot.
constexpr StringLiteral kExpertSlotsAttr = "moe.expert_slots";
/// On a partitioned moe.dispatch: the expert each of its positions stands
/// for, when the experts are renumbered (moe-run --expert-load reports by
/// expert).
constexpr StringLiteral kExpertOrderAttr = "expert_order";

/// The grid the module is partitioned on: `pp` pipeline stages of `dp`
/// data-parallel replicas of `ep` expert-parallel rows of `tp`
/// tensor-parallel ranks, rank = ((s * dp + d) * ep + e) * tp + t (the cost
/// model's order). Only the axes in use appear: @ep, @ep_tp (ep x tp),
/// @pp_ep_tp (pp x ep x tp) or, with replicas, @pp_dp_ep_tp.
struct Mesh {
  int64_t pp = 1;
  int64_t dp = 1;
  int64_t ep = 1;
  int64_t tp = 1;
  /// Exchange over the expert-parallel axis even with one rank on it (the
  /// single-device-grid option): the collectives run, with the rank
  /// itself.
  bool alwaysExchange = false;
  bool exchanges() const { return ep > 1 || alwaysExchange; }
  StringRef grid() const {
    if (dp > 1)
      return "pp_dp_ep_tp";
    return pp > 1 ? "pp_ep_tp" : tp > 1 ? "ep_tp" : "ep";
  }
  SmallVector<int64_t> shape() const {
    if (dp > 1)
      return {pp, dp, ep, tp};
    if (pp > 1)
      return {pp, ep, tp};
    return tp > 1 ? SmallVector<int64_t>{ep, tp} : SmallVector<int64_t>{ep};
  }
  int16_t ppAxis() const { return 0; }
  int16_t dpAxis() const { return 1; }
  int16_t epAxis() const { return dp > 1 ? 2 : pp > 1 ? 1 : 0; }
  int16_t tpAxis() const { return dp > 1 ? 3 : pp > 1 ? 2 : 1; }
};

/// Builds the partitioned form of one layer.
class LayerPartitioner {
public:
  LayerPartitioner(LayerOp layer, Mesh mesh)
      : layer(layer), mesh(mesh), builder(layer), loc(layer.getLoc()) {}

  /// Replaces the layer; returns the value that replaced its result.
  FailureOr<Value> run();

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
  /// This rank's block of `value` along `axis`, over the expert-parallel
  /// ranks (grid axis 0) or the tensor-parallel ones (grid axis 1).
  Value slice(Value value, int64_t axis, bool tensorParallel = false);
  Value allToAll(Value rows, Value sendCounts, int64_t resultRows,
                 Value *recvCounts = nullptr);
  Value reshape(Value value, ArrayRef<int64_t> shape);
  Value sum(Value value, int64_t axis);
  /// Where experts live: slots of ranks, and which slot each source rank
  /// sends an expert's tokens to.
  struct Slots {
    int64_t perRank = 0;
    /// The expert of each slot (-1: empty).
    SmallVector<int64_t> expertOfSlot;
    /// [source rank][expert] -> slot.
    SmallVector<SmallVector<int64_t>> slotOf;
    bool identity = false;
    bool sameForEveryRank = true;
  };
  FailureOr<Slots> expertSlots(int64_t experts);
  /// `value` / tp: a bias added once per partial sum that the tensor-
  /// parallel all-reduce adds up.
  Value shareOverTensorParallel(Value value);

  LayerOp layer;
  Mesh mesh;
  OpBuilder builder;
  Location loc;
};

Value LayerPartitioner::slice(Value value, int64_t axis, bool tensorParallel) {
  int64_t parts = tensorParallel ? mesh.tp : mesh.ep;
  if (!value || parts == 1)
    return value;
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[axis] /= parts;
  return shard::AllSliceOp::create(
      builder, loc, tensorType(shape, type.getElementType()), value,
      mesh.grid(),
      ArrayRef<int16_t>{tensorParallel ? mesh.tpAxis() : mesh.epAxis()}, axis);
}

Value LayerPartitioner::allToAll(Value rows, Value sendCounts,
                                 int64_t resultRows, Value *recvCounts) {
  auto type = cast<RankedTensorType>(rows.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = resultRows;
  auto exchange = RaggedAllToAllOp::create(
      builder, loc, tensorType(shape, type.getElementType()),
      sendCounts.getType(), rows, sendCounts, mesh.grid(),
      builder.getDenseI16ArrayAttr({mesh.epAxis()}));
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

Value LayerPartitioner::shareOverTensorParallel(Value value) {
  if (!value || mesh.tp == 1)
    return value;
  auto type = cast<RankedTensorType>(value.getType());
  auto scalarType = tensorType({}, type.getElementType());
  Value share = arith::ConstantOp::create(
      builder, loc,
      DenseElementsAttr::get(
          scalarType,
          builder.getFloatAttr(type.getElementType(),
                               1.0 / static_cast<double>(mesh.tp))));
  return MulOp::create(builder, loc, type, value, share);
}

FailureOr<LayerPartitioner::Slots>
LayerPartitioner::expertSlots(int64_t experts) {
  int64_t ranks = mesh.ep;
  Slots slots;
  auto fromOrder = [&](ArrayRef<int64_t> order) {
    slots.perRank = experts / ranks;
    slots.expertOfSlot.assign(order.begin(), order.end());
    SmallVector<int64_t> position(experts);
    for (auto [slot, expert] : llvm::enumerate(order))
      position[expert] = slot;
    slots.slotOf.assign(ranks, position);
    slots.identity = llvm::equal(order, llvm::seq<int64_t>(0, experts));
  };
  if (auto held = layer->getAttrOfType<DenseI64ArrayAttr>(kExpertSlotsAttr)) {
    // Replicated experts: each source rank sends an expert's tokens to one
    // of its copies, rank r to copy r mod copies, so the copies share the
    // sources evenly.
    int64_t total = static_cast<int64_t>(held.size());
    if (total % ranks != 0 || total < experts)
      return layer.emitOpError()
             << kExpertSlotsAttr << " has " << total << " slots; expected a "
             << "multiple of ep=" << ranks << " that holds every expert";
    slots.perRank = total / ranks;
    slots.expertOfSlot.assign(held.asArrayRef().begin(),
                              held.asArrayRef().end());
    SmallVector<SmallVector<int64_t>> copies(experts);
    for (auto [slot, expert] : llvm::enumerate(held.asArrayRef())) {
      if (expert < -1 || expert >= experts)
        return layer.emitOpError() << kExpertSlotsAttr << " names expert "
                                   << expert << " of " << experts;
      if (expert >= 0)
        copies[expert].push_back(slot);
    }
    for (auto [expert, where] : llvm::enumerate(copies))
      if (where.empty())
        return layer.emitOpError() << kExpertSlotsAttr << " holds no copy of "
                                   << "expert " << expert;
    slots.slotOf.assign(ranks, SmallVector<int64_t>(experts));
    for (int64_t rank = 0; rank < ranks; ++rank)
      for (int64_t expert = 0; expert < experts; ++expert)
        slots.slotOf[rank][expert] =
            copies[expert][rank % copies[expert].size()];
    for (int64_t rank = 1; rank < ranks; ++rank)
      slots.sameForEveryRank =
          slots.sameForEveryRank && slots.slotOf[rank] == slots.slotOf[0];
    slots.identity =
        slots.sameForEveryRank && total == experts &&
        llvm::equal(slots.expertOfSlot, llvm::seq<int64_t>(0, experts));
    return slots;
  }
  if (experts % ranks != 0)
    return layer.emitOpError()
           << "has " << experts << " experts, which " << ranks
           << " expert-parallel ranks cannot hold evenly; choose an ep that "
              "divides the expert count";
  auto ranksOf = layer->getAttrOfType<DenseI64ArrayAttr>(kExpertRanksAttr);
  if (!ranksOf) {
    fromOrder(llvm::to_vector(llvm::seq<int64_t>(0, experts)));
    return slots;
  }
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
  fromOrder(order);
  return slots;
}

FailureOr<Value> LayerPartitioner::run() {
  Value input = layer.getInput();
  auto inputType = cast<RankedTensorType>(input.getType());
  int64_t tokens = inputType.getDimSize(0);
  int64_t hidden = inputType.getDimSize(1);
  int64_t experts = layer.getNumExperts();
  int64_t topK = layer.getTopK();
  int64_t ranks = mesh.ep;
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
  // Tensor parallelism splits every expert's intermediate columns (and the
  // shared experts').
  auto inter = [](Value weight) {
    return cast<RankedTensorType>(weight.getType()).getShape().back();
  };
  if (inter(layer.getUpWeight()) % mesh.tp != 0)
    return layer.emitOpError()
           << "has experts of intermediate size " << inter(layer.getUpWeight())
           << ", which " << mesh.tp
           << " tensor-parallel ranks cannot split evenly; choose a tp that "
              "divides it";
  if (layer.hasSharedExperts() &&
      inter(layer.getSharedUpWeight()) % mesh.tp != 0)
    return layer.emitOpError()
           << "has shared experts of intermediate size "
           << inter(layer.getSharedUpWeight()) << ", which " << mesh.tp
           << " tensor-parallel ranks cannot split evenly; choose a tp that "
              "divides it";
  int64_t localTokens = tokens / ranks;

  // The expert slots of the ranks, in rank order: rank r holds slots
  // r*S .. r*S+S-1. The plan's placement (moe.expert_ranks, or
  // moe.expert_slots when it replicates experts) or, without one,
  // contiguous blocks of E/ep experts.
  FailureOr<Slots> placement = expertSlots(experts);
  if (failed(placement))
    return failure();
  bool contiguous = placement->identity;
  int64_t localExperts = placement->perRank;
  int64_t slots = ranks * localExperts;

  FailureOr<std::optional<int64_t>> capacity =
      layerCapacity(layer, localTokens);
  if (failed(capacity))
    return failure();
  if (*capacity && slots != experts)
    return layer.emitOpError()
           << "replicates experts over " << slots
           << " slots; capacity mode "
              "with replicated experts is not supported (drop "
              "--capacity-factor, or pin extra_slots=0)";

  Value localInput = slice(input, 0);
  RouterOp router = buildRouter(builder, layer, localInput);
  Value selected = router.getExperts();
  if (!contiguous) {
    // Renumber the selected experts by the slot this rank sends them to,
    // so that dispatch groups each rank's slots together.
    Value table;
    if (placement->sameForEveryRank) {
      table = arith::ConstantOp::create(
          builder, loc,
          DenseElementsAttr::get(tensorType({experts}, indexType),
                                 ArrayRef<int64_t>(placement->slotOf[0])));
    } else {
      SmallVector<int64_t> all;
      for (const SmallVector<int64_t> &row : placement->slotOf)
        all.append(row.begin(), row.end());
      table = reshape(slice(arith::ConstantOp::create(
                                builder, loc,
                                DenseElementsAttr::get(
                                    tensorType({ranks, experts}, indexType),
                                    ArrayRef<int64_t>(all))),
                            0),
                      {experts});
    }
    selected = GatherOp::create(builder, loc, selected.getType(), table,
                                selected, builder.getI64IntegerAttr(0));
  }
  int64_t dispatchRows = *capacity ? slots * **capacity : localTokens * topK;
  IntegerAttr capacityAttr =
      *capacity ? builder.getI64IntegerAttr(**capacity) : IntegerAttr();
  auto dispatch = DispatchOp::create(
      builder, loc, tensorType({dispatchRows, hidden}, floatType),
      tensorType({slots}, indexType), tensorType({dispatchRows}, indexType),
      localInput, selected, builder.getI64IntegerAttr(slots), capacityAttr);
  if (!contiguous)
    dispatch->setAttr(kExpertOrderAttr,
                      builder.getDenseI64ArrayAttr(placement->expertOfSlot));

  // The rows of this rank's experts: received from the expert-parallel
  // peers, grouped by expert.
  Value grouped = dispatch.getRows(), localCounts = dispatch.getCounts();
  Value peerCounts, receivedCounts;
  IntegerAttr expertCapacityAttr = capacityAttr;
  if (mesh.exchanges()) {
    // Rows to each peer, and the [peers, local experts] row counts this
    // rank receives.
    Value sendCounts;
    int64_t receivedRows;
    if (*capacity) {
      // Every count is known: each expert block is C rows, padding
      // included.
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
          allToAll(counts, indexConstant({ranks}, localExperts), slots);
      peerCounts = reshape(countsOfPeers, {ranks, localExperts});
      localCounts = sum(peerCounts, 0);
      // At most every token of the group, each to this rank's experts.
      receivedRows = tokens * topK;
    }
    Value received =
        allToAll(dispatch.getRows(), sendCounts, receivedRows, &receivedCounts);
    grouped = TransposeChunksOp::create(builder, loc, received.getType(),
                                        received, peerCounts);
  }

  // This rank's experts: a slice of the weights, or the rows of its slice
  // of the order (both evaluated once, when the program loads); then, with
  // tensor parallelism, its slice of their intermediate columns.
  Value ownedExperts;
  if (!contiguous) {
    // An empty slot gets no rows; any expert's weights do for it.
    SmallVector<int64_t> weightOfSlot;
    for (int64_t expert : placement->expertOfSlot)
      weightOfSlot.push_back(std::max<int64_t>(expert, 0));
    ownedExperts =
        slice(arith::ConstantOp::create(
                  builder, loc,
                  DenseElementsAttr::get(tensorType({slots}, indexType),
                                         ArrayRef<int64_t>(weightOfSlot))),
              0);
  }
  auto localExpertsOf = [&](Value weight) -> Value {
    if (!weight || contiguous)
      return slice(weight, 0);
    auto type = cast<RankedTensorType>(weight.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = localExperts;
    return GatherOp::create(builder, loc,
                            tensorType(shape, type.getElementType()), weight,
                            ownedExperts, builder.getI64IntegerAttr(0));
  };
  // gate / up [E, H, I] and their biases [E, I] split their last dimension,
  // down [E, I, H] its middle one; the down bias is shared out.
  auto columns = [&](Value weight) {
    if (!weight)
      return weight;
    int64_t rank = cast<RankedTensorType>(weight.getType()).getRank();
    return slice(localExpertsOf(weight), rank - 1, /*tensorParallel=*/true);
  };
  auto expertOut = ExpertFFNOp::create(
      builder, loc, grouped.getType(), grouped, localCounts,
      columns(layer.getGateWeight()), columns(layer.getUpWeight()),
      slice(localExpertsOf(layer.getDownWeight()), 1, /*tensorParallel=*/true),
      columns(layer.getGateBias()), columns(layer.getUpBias()),
      shareOverTensorParallel(localExpertsOf(layer.getDownBias())),
      layer.getActivationAttr(), expertCapacityAttr);

  Value back = expertOut.getResult();
  if (mesh.exchanges()) {
    Value countsByExpert = TransposeOp::create(
        builder, loc, tensorType({localExperts, ranks}, indexType), peerCounts,
        builder.getDenseI64ArrayAttr({1, 0}));
    Value returned = TransposeChunksOp::create(builder, loc, back.getType(),
                                               back, countsByExpert);
    back = allToAll(returned, receivedCounts, dispatchRows);
  }
  auto localType = tensorType({localTokens, hidden}, floatType);
  Value routed = CombineOp::create(builder, loc, localType, back,
                                   dispatch.getSources(), router.getWeights());
  SharedExpertWeights shared = sharedExpertWeights(layer);
  shared.gate = slice(shared.gate, 1, /*tensorParallel=*/true);
  shared.up = slice(shared.up, 1, /*tensorParallel=*/true);
  shared.down = slice(shared.down, 0, /*tensorParallel=*/true);
  Value result = addSharedExperts(builder, layer, localInput, routed, shared);
  // Each tensor-parallel rank holds a partial sum over its columns.
  if (mesh.tp > 1)
    result = shard::AllReduceOp::create(builder, loc, result, mesh.grid(),
                                        ArrayRef<int16_t>{mesh.tpAxis()},
                                        shard::ReductionKind::Sum);
  if (mesh.exchanges())
    result = shard::AllGatherOp::create(builder, loc, inputType, mesh.grid(),
                                        ArrayRef<int16_t>{mesh.epAxis()},
                                        result, APInt(64, 0));
  layer.getResult().replaceAllUsesWith(result);
  layer.erase();
  return result;
}

/// Pipeline stages: every operation that depends on the inputs runs on one
/// stage, and each value a later stage uses travels there with a
/// moe.stage_transfer. Operations on weights and constants alone run
/// wherever they are needed (the runtime evaluates them once, at load).
///
/// Walking the function in order, an operation belongs to the stage of the
/// first layer whose last operation is not yet behind it: a layer's
/// attention goes with its MoE block, the residual add after a stage's last
/// layer opens the next stage, and everything after the last layer (final
/// norm, LM head) is on the last stage, as the cost model assumes.
LogicalResult assignStages(ModuleOp module, const Mesh &mesh,
                           ArrayRef<Operation *> layerEnds,
                           ArrayRef<int64_t> stageOfLayer) {
  auto functions = llvm::to_vector(module.getOps<func::FuncOp>());
  if (functions.size() != 1)
    return module.emitError() << "pipeline stages need exactly one function, "
                                 "found "
                              << functions.size();
  func::FuncOp function = functions.front();
  Block &body = function.getBody().front();
  MLIRContext *context = module.getContext();

  // Values computed from weights and constants alone.
  DenseSet<Value> isStatic;
  auto staticOp = [&](Operation &op) {
    if (isa<WeightRefOp, arith::ConstantOp>(op))
      return true;
    return op.getNumOperands() > 0 &&
           llvm::all_of(op.getOperands(),
                        [&](Value operand) { return isStatic.count(operand); });
  };
  DenseMap<Operation *, int64_t> stageOf;
  size_t nextLayer = 0;
  for (Operation &op : body.without_terminator()) {
    if (staticOp(op)) {
      for (Value result : op.getResults())
        isStatic.insert(result);
      continue;
    }
    stageOf[&op] =
        nextLayer < layerEnds.size() ? stageOfLayer[nextLayer] : mesh.pp - 1;
    if (nextLayer < layerEnds.size() && &op == layerEnds[nextLayer])
      ++nextLayer;
  }

  // Each value a later (or, for the outputs, any other) stage uses travels
  // there right after it is computed; in program order, so every stage meets
  // the transfers in the same order and none waits on a later one.
  Operation *terminator = body.getTerminator();
  SmallVector<Operation *> computed;
  for (auto &[op, stage] : stageOf)
    computed.push_back(op);
  llvm::sort(computed,
             [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  OpBuilder builder(context);
  // The runtime finds each rank's stage from its coordinate on this axis.
  function->setAttr("moe.pipeline_grid",
                    FlatSymbolRefAttr::get(context, mesh.grid()));
  function->setAttr("moe.pipeline_axis",
                    builder.getI64IntegerAttr(mesh.ppAxis()));
  for (Operation *op : computed) {
    int64_t stage = stageOf[op];
    op->setAttr("moe.stage", builder.getI64IntegerAttr(stage));
    for (Value result : op->getResults()) {
      std::set<int64_t> receivers;
      for (OpOperand &use : result.getUses()) {
        Operation *user = use.getOwner();
        if (user == terminator) {
          for (int64_t other = 0; other < mesh.pp; ++other)
            if (other != stage)
              receivers.insert(other);
        } else if (stageOf.lookup(user) != stage) {
          receivers.insert(stageOf.lookup(user));
        }
      }
      if (receivers.empty())
        continue;
      builder.setInsertionPointAfter(op);
      auto transfer = StageTransferOp::create(
          builder, op->getLoc(), result.getType(), result, mesh.grid(),
          builder.getDenseI16ArrayAttr({mesh.ppAxis()}), stage,
          SmallVector<int64_t>(receivers.begin(), receivers.end()));
      result.replaceUsesWithIf(transfer.getResult(), [&](OpOperand &use) {
        Operation *user = use.getOwner();
        return user != transfer &&
               (user == terminator || stageOf.lookup(user) != stage);
      });
    }
  }
  return success();
}

/// Data parallelism: the function was imported for one replica's share of
/// the batch; it now takes the whole batch, each replica computing its
/// share (every input sliced along its first dimension over the dp axis)
/// and every rank ending with the whole outputs (gathered along their first
/// dimension). Neither carries a stage: every rank runs them.
LogicalResult splitReplicas(ModuleOp module, const Mesh &mesh) {
  auto functions = llvm::to_vector(module.getOps<func::FuncOp>());
  if (functions.size() != 1)
    return module.emitError() << "data parallelism needs exactly one "
                                 "function, found "
                              << functions.size();
  func::FuncOp function = functions.front();
  Block &body = function.getBody().front();
  auto whole = [&](Type type) -> FailureOr<RankedTensorType> {
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || tensor.getRank() == 0 || tensor.isDynamicDim(0))
      return failure();
    SmallVector<int64_t> shape(tensor.getShape());
    shape[0] *= mesh.dp;
    return RankedTensorType::get(shape, tensor.getElementType());
  };
  OpBuilder builder = OpBuilder::atBlockBegin(&body);
  SmallVector<Type> inputs, results;
  for (BlockArgument argument : body.getArguments()) {
    Type share = argument.getType();
    FailureOr<RankedTensorType> type = whole(share);
    if (failed(type))
      return function.emitOpError()
             << "input " << argument.getArgNumber() << " (" << share
             << ") has no static first dimension to split over " << mesh.dp
             << " data-parallel replicas";
    argument.setType(*type);
    Value slice = shard::AllSliceOp::create(
        builder, function.getLoc(), share, argument, mesh.grid(),
        ArrayRef<int16_t>{mesh.dpAxis()}, 0);
    argument.replaceAllUsesExcept(slice, slice.getDefiningOp());
    inputs.push_back(*type);
  }
  Operation *terminator = body.getTerminator();
  builder.setInsertionPoint(terminator);
  for (OpOperand &operand : terminator->getOpOperands()) {
    FailureOr<RankedTensorType> type = whole(operand.get().getType());
    if (failed(type))
      return function.emitOpError()
             << "output " << operand.getOperandNumber()
             << " has no static first dimension to gather over " << mesh.dp
             << " data-parallel replicas";
    Value gathered = shard::AllGatherOp::create(
        builder, function.getLoc(), *type, mesh.grid(),
        ArrayRef<int16_t>{mesh.dpAxis()}, operand.get(), APInt(64, 0));
    operand.set(gathered);
    results.push_back(*type);
  }
  function.setType(builder.getFunctionType(inputs, results));
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
    Mesh mesh;
    mesh.pp = parsed->pp.value_or(1);
    mesh.dp = parsed->dp.value_or(1);
    mesh.ep = parsed->ep.value_or(1);
    mesh.tp = parsed->tp.value_or(1);
    mesh.alwaysExchange = singleDeviceGrid;
    // Micro-batches change what one run of the program covers, not how it
    // is split (moe-compile compiles one micro-batch, moe-run loops).
    check("etp", parsed->expertTp, mesh.tp);
    if (!unsupported.empty()) {
      module.emitError() << "plan \"" << text << "\" needs "
                         << llvm::join(unsupported, ", ")
                         << ", which the partitioner does not apply yet (it "
                            "applies pipeline stages, data-parallel "
                            "replicas, and expert and tensor parallelism "
                            "inside MoE layers: pp, dp, ep and tp with etp = "
                            "tp)";
      return signalPassFailure();
    }
    if (mesh.pp * mesh.dp * mesh.ep * mesh.tp == 1 && !singleDeviceGrid)
      return;

    SmallVector<LayerOp> layers;
    module.walk([&](LayerOp layer) { layers.push_back(layer); });
    if (layers.empty())
      return;
    if (Operation *clash = SymbolTable::lookupSymbolIn(module, mesh.grid())) {
      if (isa<shard::GridOp>(clash))
        clash->emitError() << "the module was partitioned before (it has a "
                              "grid @"
                           << mesh.grid() << ")";
      else
        clash->emitError() << "is named @" << mesh.grid()
                           << ", the name of the partitioner's grid; rename "
                              "it";
      return signalPassFailure();
    }
    // Layers per stage: the plan's, or as even as the count allows.
    int64_t numLayers = static_cast<int64_t>(layers.size());
    if (mesh.pp > numLayers) {
      module.emitError() << "plan \"" << text << "\" has " << mesh.pp
                         << " pipeline stages but the module has " << numLayers
                         << " MoE layers; every stage needs one";
      return signalPassFailure();
    }
    SmallVector<int64_t> stageOfLayer;
    if (!parsed->stageLayers.empty()) {
      for (auto [stage, count] : llvm::enumerate(parsed->stageLayers))
        stageOfLayer.append(count, stage);
    } else {
      for (int64_t stage = 0; stage < mesh.pp; ++stage) {
        int64_t count = numLayers / mesh.pp + (stage < numLayers % mesh.pp);
        stageOfLayer.append(count, stage);
      }
    }
    if (stageOfLayer.size() != layers.size() ||
        (mesh.pp > 1 && stageOfLayer.back() != mesh.pp - 1)) {
      module.emitError() << "plan \"" << text << "\" puts "
                         << stageOfLayer.size() << " MoE layers in " << mesh.pp
                         << " stages, but the module has " << layers.size()
                         << " MoE layers";
      return signalPassFailure();
    }
    OpBuilder builder = OpBuilder::atBlockBegin(module.getBody());
    shard::GridOp::create(builder, module.getLoc(), mesh.grid(), mesh.shape());
    SmallVector<Operation *> layerEnds;
    for (LayerOp layer : layers) {
      FailureOr<Value> result = LayerPartitioner(layer, mesh).run();
      if (failed(result))
        return signalPassFailure();
      layerEnds.push_back(result->getDefiningOp());
    }
    if (mesh.pp > 1 &&
        failed(assignStages(module, mesh, layerEnds, stageOfLayer)))
      return signalPassFailure();
    if (mesh.dp > 1 && failed(splitReplicas(module, mesh)))
      return signalPassFailure();
  }
};

} // namespace
