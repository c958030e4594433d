//===- CostModel.cpp - time and memory of a parallel plan -----------------===//
//
// Part of moe-compiler.
//
// Per decoder layer, per micro-batch, on one device of a tensor-parallel
// group holding t tokens (sequences of the group's data shard, micro-batch
// by micro-batch), with b bytes per element, h hidden, tp-split head counts
// H and KV, head width d, sequence length S:
//
//   attention   QKV GEMM [t, h] x [h, (H + 2 KV) d], causal core
//               2 S^2 d H flops per sequence (Q K^T and P V, half masked)
//               reading Q, K, V and writing O once (fused, FlashAttention),
//               output GEMM [t, H d] x [H d, h], 10 t h b bytes for two
//               RMSNorms (read + write) and two residual adds (2 reads + 1
//               write), then an all-reduce of t h b over tp;
//   dense MLP   gate/up GEMM [t, h] x [h, g I], activation (3 t I b bytes
//               gated, 2 t I b otherwise), down GEMM [t, I] x [I, h], then
//               an all-reduce of t h b over tp (I split over tp, g = 2 when
//               gated);
//   MoE block   router GEMM [t', h] x [h, E] on the t' = t etp / tp tokens
//               this expert rank dispatches, shared experts as one MLP of
//               shared x I_shared / tp columns, dispatch all-to-all of
//               t' k h b bytes per expert rank, the experts of each rank as
//               grouped GEMMs over the pairs it receives (its slots' weights
//               read once), combine all-to-all of the same bytes back, and
//               an all-reduce of t h b over tp.
// Every GEMM and element-wise pass is priced by the roofline separately
// (rooflineSeconds), GEMM bytes being weights + input + output once each.
// The expert step waits for its slowest expert rank; the difference to the
// average rank is reported as load imbalance.
//
// Memory per device: weights of the stage's layers (experts: the slots of
// the fullest expert rank, split etp ways), the KV cache of every sequence
// of the data shard, four residual-stream buffers of t h b (layer input,
// normalised input, block output, the next micro-batch arriving), and the
// largest scratch space of one block (QKV and attention output; MLP
// intermediates; router scores, all-to-all send and receive buffers and the
// received pairs' intermediates; logits, gathered over tp on the last stage).
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/CostModel.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace llvm;
using namespace moe::plan;

//===----------------------------------------------------------------------===//
// Roofline and collectives
//===----------------------------------------------------------------------===//

double moe::plan::rooflineSeconds(const OpCost &cost, DataType type,
                                  const MachineDescription &machine) {
  return std::max(cost.flops / machine.peakFlops(type),
                  cost.bytes / machine.memoryBandwidthBytesPerSecond);
}

GroupSpan moe::plan::groupSpan(const MachineDescription &machine,
                               int64_t firstRank, int64_t stride,
                               int64_t size) {
  GroupSpan span;
  span.size = size;
  // Members ascend, so every change of node is a new node.
  for (int64_t member = 1; member < size; ++member)
    if (machine.nodeOf(firstRank + member * stride) !=
        machine.nodeOf(firstRank + (member - 1) * stride))
      ++span.numNodes;
  return span;
}

double moe::plan::pointToPointSeconds(double bytes, const LinkSpec &link) {
  return link.latencySeconds + bytes / link.bandwidthBytesPerSecond;
}

double moe::plan::ringAllGatherSeconds(double totalBytes, GroupSpan group,
                                       const MachineDescription &machine) {
  if (group.size <= 1)
    return 0;
  int64_t steps = group.size - 1;
  int64_t interNodeSteps = group.numNodes - 1;
  double bandwidth = group.numNodes > 1
                         ? machine.interNode.bandwidthBytesPerSecond
                         : machine.intraNode.bandwidthBytesPerSecond;
  return (steps - interNodeSteps) * machine.intraNode.latencySeconds +
         interNodeSteps * machine.interNode.latencySeconds +
         double(steps) / group.size * totalBytes / bandwidth;
}

double moe::plan::ringReduceScatterSeconds(double totalBytes, GroupSpan group,
                                           const MachineDescription &machine) {
  // The mirror image of the all-gather: same steps, same bytes per step.
  return ringAllGatherSeconds(totalBytes, group, machine);
}

double moe::plan::ringAllReduceSeconds(double bytes, GroupSpan group,
                                       const MachineDescription &machine) {
  return ringReduceScatterSeconds(bytes, group, machine) +
         ringAllGatherSeconds(bytes, group, machine);
}

double moe::plan::treeAllReduceSeconds(double bytes, GroupSpan group,
                                       const MachineDescription &machine) {
  if (group.size <= 1)
    return 0;
  int64_t ranksPerNode = (group.size + group.numNodes - 1) / group.numNodes;
  double bandwidth = group.numNodes > 1
                         ? machine.interNode.bandwidthBytesPerSecond
                         : machine.intraNode.bandwidthBytesPerSecond;
  double latency = 2 * ((ranksPerNode - 1) * machine.intraNode.latencySeconds +
                        std::ceil(std::log2(double(group.numNodes))) *
                            machine.interNode.latencySeconds);
  return latency + 2 * bytes / bandwidth;
}

double moe::plan::allReduceSeconds(double bytes, GroupSpan group,
                                   const MachineDescription &machine) {
  return std::min(ringAllReduceSeconds(bytes, group, machine),
                  treeAllReduceSeconds(bytes, group, machine));
}

double moe::plan::raggedAllToAllSeconds(ArrayRef<double> sendBytes,
                                        ArrayRef<int64_t> rankOfPeer,
                                        const MachineDescription &machine) {
  int64_t peers = rankOfPeer.size();
  double latency = 0, linkTime = 0;
  for (int64_t peer = 0; peer < peers; ++peer) {
    double peerLatency = 0;
    double sendIntra = 0, sendInter = 0, receiveIntra = 0, receiveInter = 0;
    for (int64_t other = 0; other < peers; ++other) {
      if (other == peer)
        continue;
      bool sameNode =
          machine.nodeOf(rankOfPeer[peer]) == machine.nodeOf(rankOfPeer[other]);
      peerLatency += sameNode ? machine.intraNode.latencySeconds
                              : machine.interNode.latencySeconds;
      (sameNode ? sendIntra : sendInter) += sendBytes[peer * peers + other];
      (sameNode ? receiveIntra : receiveInter) +=
          sendBytes[other * peers + peer];
    }
    latency = std::max(latency, peerLatency);
    linkTime = std::max({linkTime,
                         std::max(sendIntra, receiveIntra) /
                             machine.intraNode.bandwidthBytesPerSecond,
                         std::max(sendInter, receiveInter) /
                             machine.interNode.bandwidthBytesPerSecond});
  }
  return latency + linkTime;
}

//===----------------------------------------------------------------------===//
// Plans
//===----------------------------------------------------------------------===//

std::string ParallelConfig::str() const {
  return formatv("pp={0} dp={1} tp={2} ep={3} etp={4} microbatches={5} "
                 "extra_slots={6}",
                 pp, dp, tp, ep, expertTp, microbatches, extraExpertSlots)
      .str();
}

bool moe::plan::planBefore(const Plan &a, const Plan &b) {
  if (a.seconds() != b.seconds())
    return a.seconds() < b.seconds();
  if (a.memory.total() != b.memory.total())
    return a.memory.total() < b.memory.total();
  return a.config < b.config;
}

StringRef moe::plan::rejectionName(Rejection rejection) {
  switch (rejection) {
  case Rejection::None:
    return "none";
  case Rejection::Shape:
    return "shape";
  case Rejection::Batch:
    return "batch";
  case Rejection::ExpertSlots:
    return "expert slots";
  case Rejection::Memory:
    return "memory";
  }
  llvm_unreachable("unknown rejection");
}

std::string moe::plan::formatBytes(double bytes) {
  if (bytes >= 1e9)
    return formatv("{0:F1} GB", bytes / 1e9).str();
  if (bytes >= 1e6)
    return formatv("{0:F1} MB", bytes / 1e6).str();
  return formatv("{0:F1} KB", bytes / 1e3).str();
}

std::string moe::plan::formatSeconds(double seconds) {
  if (seconds >= 1)
    return formatv("{0:F3} s", seconds).str();
  if (seconds >= 1e-3)
    return formatv("{0:F3} ms", seconds * 1e3).str();
  return formatv("{0:F3} us", seconds * 1e6).str();
}

//===----------------------------------------------------------------------===//
// Operation costs shared by the model and its lower bound
//===----------------------------------------------------------------------===//

namespace {

/// x[rows, inner] x w[inner, columns]: two flops per multiply-add; an ideal
/// tiled GEMM reads the input and the weights once and writes the output
/// once.
OpCost gemm(double rows, double inner, double columns, double bytes) {
  return {2 * rows * inner * columns,
          (inner * columns + rows * inner + rows * columns) * bytes};
}

OpCost memoryPasses(double bytes) { return {0, bytes}; }

/// Time of an MLP (or of `copies` experts as grouped GEMMs) over `rows` rows:
/// gate/up GEMM, activation, down GEMM, each by the roofline; `inter` is the
/// per-device intermediate width.
double mlpSeconds(double rows, double hidden, double inter, bool gated,
                  double copies, double bytes, DataType type,
                  const MachineDescription &machine) {
  double upColumns = (gated ? 2 : 1) * inter;
  OpCost gateUp = gemm(rows, hidden, upColumns, bytes);
  OpCost down = gemm(rows, inter, hidden, bytes);
  // Grouped GEMMs read every expert's weights once.
  gateUp.bytes += (copies - 1) * hidden * upColumns * bytes;
  down.bytes += (copies - 1) * inter * hidden * bytes;
  OpCost activation = memoryPasses((gated ? 3 : 2) * rows * inter * bytes);
  return rooflineSeconds(gateUp, type, machine) +
         rooflineSeconds(activation, type, machine) +
         rooflineSeconds(down, type, machine);
}

/// Per-device widths of a layer's attention under tp.
struct AttentionShape {
  double heads;
  double kvHeads;
  double qkvWidth;
  double outputWidth;
};

AttentionShape attentionShape(const LayerDescription &layer, int64_t tp) {
  AttentionShape shape;
  shape.heads = double(layer.numHeads / tp);
  // More ranks than key/value heads: each rank keeps one, replicated.
  shape.kvHeads = layer.numKVHeads >= tp ? double(layer.numKVHeads / tp) : 1.0;
  shape.qkvWidth = (shape.heads + 2 * shape.kvHeads) * layer.headDim;
  shape.outputWidth = shape.heads * layer.headDim;
  return shape;
}

/// Attention block compute plus norms and residual adds, for `tokens` tokens
/// in `sequences` sequences of `sequenceLength`.
double attentionSeconds(const LayerDescription &layer,
                        const AttentionShape &shape, double tokens,
                        double sequences, double sequenceLength, double bytes,
                        DataType type, const MachineDescription &machine) {
  double hidden = layer.hidden;
  OpCost core = {
      2 * sequences * sequenceLength * sequenceLength * layer.headDim *
          shape.heads,
      tokens * (2 * shape.outputWidth + 2 * shape.kvHeads * layer.headDim) *
          bytes};
  return rooflineSeconds(gemm(tokens, hidden, shape.qkvWidth, bytes), type,
                         machine) +
         rooflineSeconds(core, type, machine) +
         rooflineSeconds(gemm(tokens, shape.outputWidth, hidden, bytes), type,
                         machine) +
         rooflineSeconds(memoryPasses(10 * tokens * hidden * bytes), type,
                         machine);
}

/// Router scores and top-k selection over them.
double routerSeconds(const LayerDescription &layer, double routedTokens,
                     double bytes, DataType type,
                     const MachineDescription &machine) {
  return rooflineSeconds(
             gemm(routedTokens, layer.hidden, layer.numExperts, bytes), type,
             machine) +
         rooflineSeconds(
             memoryPasses(2 * routedTokens * layer.numExperts * bytes), type,
             machine);
}

} // namespace

//===----------------------------------------------------------------------===//
// CostModel
//===----------------------------------------------------------------------===//

/// What a configuration fixes before stages are split.
struct CostModel::Derived {
  ParallelConfig config;
  /// Sequences of the largest data shard (one tensor-parallel group) per
  /// step and per micro-batch; shards and micro-batches round up.
  int64_t sequencesPerShard = 0;
  int64_t sequencesPerMicrobatch = 0;
  /// Tokens of one tensor-parallel group per micro-batch.
  double tokens = 0;
  double elementBytes = 0;
};

/// The links a stage's groups use, as far as they differ between stages
/// (nodes are identical, so only positions relative to node boundaries
/// matter).
struct CostModel::StageLayout {
  /// The tensor-parallel group of the stage spanning the most nodes.
  GroupSpan tensorGroup;
  /// First ranks, modulo devices per node, of the stage's sets of expert
  /// ranks exchanging in one all-to-all (one per data-parallel replica and
  /// index inside an expert rank), without repeats.
  std::vector<int64_t> expertOffsets;
  /// Link to the next stage (the slowest any device of the stage uses).
  LinkSpec nextStageLink;

  bool sameGroups(const StageLayout &other) const {
    return tensorGroup.numNodes == other.tensorGroup.numNodes &&
           expertOffsets == other.expertOffsets;
  }
};

/// One decoder layer, one micro-batch, the stage's worst device.
struct CostModel::LayerCost {
  double compute = 0;
  double allToAll = 0;
  double tensorParallel = 0;
  double imbalance = 0;
  double weights = 0;
  double kvCache = 0;
  double activations = 0;
  double temporaries = 0;
  double seconds() const { return compute + allToAll + tensorParallel; }
};

/// Embedding (first stage), final norm and LM head (last stage), and the
/// send to the next stage.
struct CostModel::StageExtras {
  double compute = 0;
  double tensorParallel = 0;
  double pointToPoint = 0;
  double weights = 0;
  double temporaries = 0;
  double seconds() const { return compute + tensorParallel + pointToPoint; }
};

CostModel::CostModel(ModelDescription model, MachineDescription machine,
                     ExpertLoadModel load, CostModelOptions options,
                     std::vector<std::vector<double>> shares)
    : model_(std::move(model)), machine_(std::move(machine)),
      load_(std::move(load)), options_(options), shares_(std::move(shares)) {
  for (auto [index, layer] : enumerate(model_.layers)) {
    if (layer.isMoE()) {
      moeLayerOfLayer_.push_back(moeLayerIndex_.size());
      moeLayerIndex_.push_back(index);
    } else {
      moeLayerOfLayer_.push_back(-1);
    }
  }
  for (int64_t moeLayer = 0, e = shares_.size(); moeLayer < e; ++moeLayer) {
    int64_t cls = moeLayer;
    for (int64_t earlier = 0; earlier < moeLayer; ++earlier)
      if (shares_[earlier] == shares_[moeLayer]) {
        cls = shareClass_[earlier];
        break;
      }
    shareClass_.push_back(cls);
  }
  for (int64_t layer = 0, e = model_.layers.size(); layer < e; ++layer) {
    int64_t cls = layer;
    for (int64_t earlier = 0; earlier < layer; ++earlier) {
      if (!(model_.layers[earlier] == model_.layers[layer]))
        continue;
      int64_t moeEarlier = moeLayerOfLayer_[earlier];
      int64_t moeLayer = moeLayerOfLayer_[layer];
      if (moeLayer >= 0 && shareClass_[moeEarlier] != shareClass_[moeLayer])
        continue;
      cls = layerClass_[earlier];
      break;
    }
    layerClass_.push_back(cls);
  }
}

Expected<std::unique_ptr<CostModel>>
CostModel::create(ModelDescription model, MachineDescription machine,
                  const ExpertLoadModel &load, CostModelOptions options) {
  if (Error err = validateModel(model))
    return std::move(err);
  if (machine.peakFlops(model.dtype) <= 0)
    return createStringError(
        inconvertibleErrorCode(),
        formatv("machine '{0}' gives no peak FLOP/s for {1}, the element "
                "type of model '{2}'",
                machine.name, dataTypeName(model.dtype), model.name)
            .str());
  if (!(options.maxExtraSlotFraction >= 0 &&
        options.maxExtraSlotFraction <= 16))
    return createStringError(
        inconvertibleErrorCode(),
        formatv("the extra expert slot fraction must be 0 to 16, got {0}",
                options.maxExtraSlotFraction)
            .str());
  Expected<std::vector<std::vector<double>>> shares =
      moe::plan::expertShares(load, model);
  if (!shares)
    return shares.takeError();
  return std::unique_ptr<CostModel>(new CostModel(
      std::move(model), std::move(machine), load, options, std::move(*shares)));
}

ArrayRef<double> CostModel::expertShares(int64_t moeLayer) const {
  return shares_[moeLayer];
}

int64_t CostModel::maxExtraExpertSlots(int64_t expertRanks) const {
  int64_t allowed = std::numeric_limits<int64_t>::max();
  bool anyMoE = false;
  for (const LayerDescription &layer : model_.layers) {
    if (!layer.isMoE())
      continue;
    anyMoE = true;
    int64_t experts = layer.numExperts;
    int64_t budget =
        experts +
        int64_t(std::floor(options_.maxExtraSlotFraction * experts + 1e-9));
    int64_t fewest = minSlotsPerRank(experts, expertRanks);
    int64_t most = std::min(experts, budget / expertRanks);
    allowed = std::min(allowed, std::max<int64_t>(0, most - fewest));
  }
  return anyMoE ? allowed : 0;
}

std::shared_ptr<const ExpertPlacement>
CostModel::placement(int64_t moeLayer, int64_t expertRanks,
                     int64_t slotsPerRank) {
  auto key = std::make_tuple(shareClass_[moeLayer], expertRanks, slotsPerRank);
  auto it = placements_.find(key);
  if (it != placements_.end())
    return it->second;
  auto placed = std::make_shared<const ExpertPlacement>(
      placeExpertsBalanced(shares_[moeLayer], expertRanks, slotsPerRank));
  placements_.emplace(key, placed);
  return placed;
}

std::pair<Rejection, std::string>
CostModel::checkConfig(const ParallelConfig &config) const {
  auto shape = [](const Twine &why) {
    return std::make_pair(Rejection::Shape, why.str());
  };
  if (config.pp < 1 || config.dp < 1 || config.tp < 1 || config.ep < 1 ||
      config.expertTp < 1 || config.microbatches < 1 ||
      config.extraExpertSlots < 0)
    return shape("degrees and micro-batches must be positive");
  // In floating point: pinned degrees may be large enough to overflow.
  double devices = double(config.pp) * config.dp * config.tp * config.ep;
  if (devices != double(machine_.numDevices()))
    return shape(formatv("uses {0:F0} devices, the machine has {1}", devices,
                         machine_.numDevices()));
  int64_t numLayers = model_.layers.size();
  if (config.pp > numLayers)
    return shape(
        formatv("pp={0} exceeds the {1} layers", config.pp, numLayers));
  bool hasMoE = !moeLayerIndex_.empty();
  if (!hasMoE &&
      (config.ep > 1 || config.expertTp > 1 || config.extraExpertSlots > 0))
    return shape("the model has no MoE layers, so ep, etp and extra_slots "
                 "must be 1, 1 and 0");
  if (config.tp % config.expertTp != 0)
    return shape(
        formatv("etp={0} does not divide tp={1}", config.expertTp, config.tp));
  bool tokenSplit = options_.layout == ExpertParallelLayout::TokenSplitLayers;
  // Layers outside the MoE blocks are split over tp only in the
  // data-parallel-attention layout.
  int64_t tp = tokenSplit ? 1 : config.tp;
  for (auto [index, layer] : enumerate(model_.layers)) {
    auto indivisible = [&, index = index](StringRef what, int64_t size,
                                          StringRef degree, int64_t by) {
      return shape(formatv("{0} {1} of layer {2} not divisible by {3}={4}",
                           what, size, index, degree, by));
    };
    if (layer.numHeads % tp != 0)
      return indivisible("heads", layer.numHeads, "tp", tp);
    if (layer.hidden % tp != 0)
      return indivisible("hidden", layer.hidden, "tp", tp);
    if (layer.numKVHeads % tp != 0 && tp % layer.numKVHeads != 0)
      return shape(formatv("kv heads {0} of layer {1} neither divide nor are "
                           "divisible by tp={2}",
                           layer.numKVHeads, index, tp));
    if (!layer.isMoE()) {
      if (layer.denseInter % tp != 0)
        return indivisible("inter", layer.denseInter, "tp", tp);
      continue;
    }
    if (layer.numSharedExperts > 0 && layer.sharedExpertInter % config.tp != 0)
      return indivisible("shared expert inter", layer.sharedExpertInter, "tp",
                         config.tp);
    if (layer.expertInter % config.expertTp != 0)
      return indivisible("expert inter", layer.expertInter, "etp",
                         config.expertTp);
  }
  if (tokenSplit && config.expertTp != config.tp)
    return shape(formatv("etp={0} differs from tp={1}: the token-split layout "
                         "splits the experts over all of tp",
                         config.expertTp, config.tp));
  int64_t shards = dataShards(config);
  if (shards > model_.batch)
    return {Rejection::Batch,
            formatv("batch {0} has fewer sequences than the {1} = {2} data "
                    "shards",
                    model_.batch, tokenSplit ? "dp" : "dp x ep", shards)};
  int64_t sequencesPerShard = (model_.batch + shards - 1) / shards;
  if (config.microbatches > sequencesPerShard)
    return {Rejection::Batch,
            formatv("microbatches={0} exceed the {1} sequences per data shard",
                    config.microbatches, sequencesPerShard)};
  if (tokenSplit && hasMoE) {
    int64_t tokens = (sequencesPerShard + config.microbatches - 1) /
                     config.microbatches * model_.sequence;
    if (tokens % config.ep != 0)
      return {Rejection::Batch,
              formatv("the {0} tokens of a micro-batch do not split evenly "
                      "over ep={1}",
                      tokens, config.ep)};
  }
  int64_t maxExtra = maxExtraExpertSlots(config.expertRanks());
  if (config.extraExpertSlots > maxExtra)
    return {Rejection::ExpertSlots,
            formatv("extra_slots={0} exceeds the replication budget ({1:P1} "
                    "more slots than experts allows {2} per expert rank)",
                    config.extraExpertSlots, options_.maxExtraSlotFraction,
                    maxExtra)};
  return {Rejection::None, ""};
}

int64_t CostModel::dataShards(const ParallelConfig &config) const {
  return options_.layout == ExpertParallelLayout::TokenSplitLayers
             ? config.dp
             : config.dp * config.ep;
}

CostModel::Derived CostModel::derive(const ParallelConfig &config) const {
  Derived derived;
  derived.config = config;
  int64_t shards = dataShards(config);
  derived.sequencesPerShard = (model_.batch + shards - 1) / shards;
  derived.sequencesPerMicrobatch =
      (derived.sequencesPerShard + config.microbatches - 1) /
      config.microbatches;
  derived.tokens = double(derived.sequencesPerMicrobatch) * model_.sequence;
  derived.elementBytes = dataTypeBytes(model_.dtype);
  return derived;
}

std::vector<CostModel::StageLayout>
CostModel::stageLayouts(const ParallelConfig &config) const {
  std::vector<StageLayout> layouts(config.pp);
  int64_t stageSize = config.devicesPerStage();
  for (int64_t stage = 0; stage < config.pp; ++stage) {
    StageLayout &layout = layouts[stage];
    int64_t stageBase = stage * stageSize;
    for (int64_t group = 0, e = config.dp * config.ep; group < e; ++group) {
      GroupSpan span =
          groupSpan(machine_, stageBase + group * config.tp, 1, config.tp);
      if (span.numNodes > layout.tensorGroup.numNodes)
        layout.tensorGroup = span;
    }
    layout.tensorGroup.size = config.tp;
    for (int64_t replica = 0; replica < config.dp; ++replica)
      for (int64_t index = 0; index < config.expertTp; ++index)
        layout.expertOffsets.push_back(
            (stageBase + replica * config.ep * config.tp + index) %
            machine_.devicesPerNode);
    sort(layout.expertOffsets);
    layout.expertOffsets.erase(unique(layout.expertOffsets),
                               layout.expertOffsets.end());
    layout.nextStageLink = machine_.intraNode;
    if (stage + 1 < config.pp)
      for (int64_t rank = stageBase; rank < stageBase + stageSize; ++rank)
        if (machine_.nodeOf(rank) != machine_.nodeOf(rank + stageSize))
          layout.nextStageLink = machine_.interNode;
  }
  return layouts;
}

std::pair<double, double>
CostModel::allToAllCoefficients(int64_t moeLayer, const Derived &derived,
                                int64_t offset) {
  const ParallelConfig &config = derived.config;
  int64_t ranks = config.expertRanks();
  int64_t slots =
      minSlotsPerRank(model_.layers[moeLayerIndex_[moeLayer]].numExperts,
                      ranks) +
      config.extraExpertSlots;
  auto key = std::make_tuple(shareClass_[moeLayer], ranks, slots,
                             config.expertTp, offset);
  auto it = allToAllCache_.find(key);
  if (it != allToAllCache_.end())
    return it->second;

  // Expert rank q is machine rank offset + q * etp (relative to a node
  // boundary). Every expert rank dispatches the same number of pairs with
  // the same expert distribution, so expert rank i sends a fraction load_j
  // of its bytes to expert rank j: send and receive volumes per unit of
  // bytes dispatched follow from per-node sums of the loads.
  std::shared_ptr<const ExpertPlacement> placed =
      placement(moeLayer, ranks, slots);
  std::vector<int64_t> nodeOfRank(ranks);
  for (int64_t rank = 0; rank < ranks; ++rank)
    nodeOfRank[rank] = machine_.nodeOf(offset + rank * config.expertTp);
  int64_t numNodes = nodeOfRank.back() - nodeOfRank.front() + 1;
  std::vector<double> nodeLoad(numNodes, 0.0);
  std::vector<int64_t> nodeRanks(numNodes, 0);
  for (int64_t rank = 0; rank < ranks; ++rank) {
    nodeLoad[nodeOfRank[rank] - nodeOfRank.front()] += placed->rankLoad[rank];
    ++nodeRanks[nodeOfRank[rank] - nodeOfRank.front()];
  }
  const LinkSpec &intra = machine_.intraNode;
  const LinkSpec &inter = machine_.interNode;
  double latency = 0, secondsPerByte = 0;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    int64_t node = nodeOfRank[rank] - nodeOfRank.front();
    double load = placed->rankLoad[rank];
    double sendIntra = nodeLoad[node] - load;
    double sendInter = 1.0 - nodeLoad[node];
    double receiveIntra = load * (nodeRanks[node] - 1);
    double receiveInter = load * (ranks - nodeRanks[node]);
    latency =
        std::max(latency, (nodeRanks[node] - 1) * intra.latencySeconds +
                              (ranks - nodeRanks[node]) * inter.latencySeconds);
    secondsPerByte = std::max(
        {secondsPerByte,
         std::max(sendIntra, receiveIntra) / intra.bandwidthBytesPerSecond,
         std::max(sendInter, receiveInter) / inter.bandwidthBytesPerSecond});
  }
  return allToAllCache_[key] = {latency, secondsPerByte};
}

CostModel::LayerCost CostModel::layerCost(int64_t layerIndex,
                                          const Derived &derived,
                                          const StageLayout &layout) {
  const LayerDescription &layer = model_.layers[layerIndex];
  const ParallelConfig &config = derived.config;
  DataType type = model_.dtype;
  double bytes = derived.elementBytes;
  double tokens = derived.tokens;
  double hidden = layer.hidden;
  bool tokenSplit = options_.layout == ExpertParallelLayout::TokenSplitLayers;
  // The tensor-parallel degree of the layers outside the MoE blocks.
  int64_t denseTp = tokenSplit ? 1 : config.tp;
  AttentionShape shape = attentionShape(layer, denseTp);

  LayerCost cost;
  cost.compute = attentionSeconds(
      layer, shape, tokens, double(derived.sequencesPerMicrobatch),
      double(model_.sequence), bytes, type, machine_);
  cost.weights =
      (hidden * shape.qkvWidth + shape.outputWidth * hidden + 2 * hidden) *
      bytes;
  double cacheWidth = layer.kvCacheElementsPerToken > 0
                          ? double(layer.kvCacheElementsPerToken)
                          : 2 * shape.kvHeads * layer.headDim;
  cost.kvCache =
      double(derived.sequencesPerShard) * model_.sequence * cacheWidth * bytes;
  cost.activations = 4 * tokens * hidden * bytes;
  double attentionScratch =
      tokens * (shape.qkvWidth + shape.outputWidth) * bytes;
  if (denseTp > 1)
    cost.tensorParallel = 2 * allReduceSeconds(tokens * hidden * bytes,
                                               layout.tensorGroup, machine_);
  double upFactor = layer.gatedMLP ? 2 : 1;

  if (!layer.isMoE()) {
    double inter = double(layer.denseInter / denseTp);
    cost.compute += mlpSeconds(tokens, hidden, inter, layer.gatedMLP, 1, bytes,
                               type, machine_);
    cost.weights += layer.mlpMatrices() * hidden * inter * bytes;
    cost.temporaries =
        std::max(attentionScratch, tokens * (upFactor + 1) * inter * bytes);
    return cost;
  }

  int64_t moeLayer = moeLayerOfLayer_[layerIndex];
  // The tokens of this group that its MoE layers see: all of them, or their
  // share when the layer splits the replica's tokens over ep.
  double layerTokens = tokens;
  if (tokenSplit) {
    // The layer's exchanges besides dispatch and combine: its output summed
    // over the tp ranks (each computed a column slice of every expert) and
    // gathered over ep.
    layerTokens = tokens / config.ep;
    if (config.ep > 1)
      cost.allToAll += ringAllGatherSeconds(
          tokens * hidden * bytes, groupSpan(machine_, 0, config.tp, config.ep),
          machine_);
    if (config.tp > 1)
      cost.tensorParallel += allReduceSeconds(layerTokens * hidden * bytes,
                                              layout.tensorGroup, machine_);
  }
  double routedTokens = layerTokens * config.expertTp / config.tp;
  double experts = layer.numExperts;
  cost.compute += routerSeconds(layer, routedTokens, bytes, type, machine_);
  cost.weights += hidden * experts * bytes;
  double moeScratch = routedTokens * experts * bytes +
                      2 * routedTokens * layer.topK * hidden * bytes;
  if (layer.numSharedExperts > 0) {
    double inter =
        double(layer.numSharedExperts * (layer.sharedExpertInter / config.tp));
    cost.compute += mlpSeconds(layerTokens, hidden, inter, layer.gatedMLP, 1,
                               bytes, type, machine_);
    cost.weights += layer.mlpMatrices() * hidden * inter * bytes;
    moeScratch += layerTokens * (upFactor + 1) * inter * bytes;
  }

  int64_t ranks = config.expertRanks();
  std::shared_ptr<const ExpertPlacement> placed = placement(
      moeLayer, ranks,
      minSlotsPerRank(layer.numExperts, ranks) + config.extraExpertSlots);
  double expertInter = double(layer.expertInter / config.expertTp);
  // Routed pairs of one stage replica (its ep tensor-parallel groups).
  double pairs = config.ep * layerTokens * layer.topK;
  double slowest = 0, total = 0, mostPairs = 0;
  size_t mostSlots = 0;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    double rankPairs = pairs * placed->rankLoad[rank];
    double slots = placed->expertsOnRank[rank].size();
    double seconds = mlpSeconds(rankPairs, hidden, expertInter, layer.gatedMLP,
                                slots, bytes, type, machine_);
    slowest = std::max(slowest, seconds);
    total += seconds;
    mostPairs = std::max(mostPairs, rankPairs);
    mostSlots = std::max(mostSlots, placed->expertsOnRank[rank].size());
  }
  cost.compute += slowest;
  cost.imbalance = slowest - total / ranks;
  cost.weights +=
      double(mostSlots) * layer.mlpMatrices() * hidden * expertInter * bytes;
  moeScratch += mostPairs * (2 * hidden + (upFactor + 1) * expertInter) * bytes;
  cost.temporaries = std::max(attentionScratch, moeScratch);

  if (ranks > 1) {
    double dispatched = routedTokens * layer.topK * hidden * bytes;
    double worst = 0;
    for (int64_t offset : layout.expertOffsets) {
      auto [latency, secondsPerByte] =
          allToAllCoefficients(moeLayer, derived, offset);
      worst = std::max(worst, latency + dispatched * secondsPerByte);
    }
    // Dispatch, then combine: the same bytes in the other direction.
    cost.allToAll = 2 * worst;
  }
  return cost;
}

CostModel::StageExtras CostModel::stageExtras(int64_t stage,
                                              const Derived &derived,
                                              const StageLayout &layout) const {
  const ParallelConfig &config = derived.config;
  DataType type = model_.dtype;
  double bytes = derived.elementBytes;
  double tokens = derived.tokens;
  int64_t denseTp =
      options_.layout == ExpertParallelLayout::TokenSplitLayers ? 1 : config.tp;
  double vocabRows = double((model_.vocab + denseTp - 1) / denseTp);
  StageExtras extras;
  if (stage == 0) {
    double hidden = model_.layers.front().hidden;
    // Vocabulary-parallel embedding (Megatron-LM): each rank gathers the rows
    // it owns and the all-reduce fills in the rest.
    extras.compute += rooflineSeconds(memoryPasses(2 * tokens * hidden * bytes),
                                      type, machine_);
    if (denseTp > 1)
      extras.tensorParallel += allReduceSeconds(tokens * hidden * bytes,
                                                layout.tensorGroup, machine_);
    extras.weights += vocabRows * hidden * bytes;
  }
  if (stage == config.pp - 1) {
    double hidden = model_.layers.back().hidden;
    double logits = tokens * vocabRows * bytes;
    extras.compute +=
        rooflineSeconds(memoryPasses(2 * tokens * hidden * bytes), type,
                        machine_) +
        rooflineSeconds(gemm(tokens, hidden, vocabRows, bytes), type, machine_);
    extras.weights += (vocabRows * hidden + hidden) * bytes;
    extras.temporaries = logits;
    if (denseTp > 1) {
      extras.tensorParallel +=
          ringAllGatherSeconds(logits * denseTp, layout.tensorGroup, machine_);
      extras.temporaries += logits * denseTp;
    }
  } else {
    double hidden = model_.layers.front().hidden;
    extras.pointToPoint =
        pointToPointSeconds(tokens * hidden * bytes, layout.nextStageLink);
  }
  return extras;
}

namespace {

/// Splits layers into contiguous stages. Costs are per stage layout: stage
/// s costs prefix[s][j] - prefix[s][i] + its extras for layers [i, j).
class StageSplitter {
public:
  StageSplitter(int64_t numStages, int64_t numLayers)
      : numStages(numStages), numLayers(numLayers), seconds(numStages),
        sums(numStages), activations(numStages), temporaries(numStages),
        extraSeconds(numStages), extraWeights(numStages),
        extraTemporaries(numStages) {}

  void setStage(int64_t stage, ArrayRef<double> layerSeconds,
                ArrayRef<double> layerSums, ArrayRef<double> layerActivations,
                ArrayRef<double> layerTemporaries, double stageSeconds,
                double stageWeights, double stageTemporaries) {
    seconds[stage] = prefix(layerSeconds);
    sums[stage] = prefix(layerSums);
    activations[stage].assign(layerActivations.begin(), layerActivations.end());
    temporaries[stage].assign(layerTemporaries.begin(), layerTemporaries.end());
    extraSeconds[stage] = stageSeconds;
    extraWeights[stage] = stageWeights;
    extraTemporaries[stage] = stageTemporaries;
  }

  /// Layer counts minimising the slowest stage among splits whose every
  /// stage needs at most `capacity` bytes; empty when none does.
  std::vector<int64_t> fastest(double capacity) const {
    return split([&](int64_t stage, int64_t first, int64_t end,
                     double memory) -> double {
      if (memory > capacity)
        return kInfinity;
      return stageSeconds(stage, first, end);
    });
  }

  /// Layer counts minimising the largest stage memory.
  std::vector<int64_t> smallest() const {
    return split(
        [](int64_t, int64_t, int64_t, double memory) { return memory; });
  }

private:
  static constexpr double kInfinity = std::numeric_limits<double>::infinity();

  static std::vector<double> prefix(ArrayRef<double> values) {
    std::vector<double> sums(1, 0.0);
    for (double value : values)
      sums.push_back(sums.back() + value);
    return sums;
  }

  double stageSeconds(int64_t stage, int64_t first, int64_t end) const {
    return seconds[stage][end] - seconds[stage][first] + extraSeconds[stage];
  }

  /// Min-max dynamic programming: best[s][j] is the smallest possible
  /// largest stage cost when s stages hold the first j layers. Each stage
  /// gets at least one layer. Memory grows as a stage takes more layers, so
  /// the inner loop walks segments from short to long with running maxima.
  template <typename CostFn>
  std::vector<int64_t> split(CostFn stageCost) const {
    std::vector<std::vector<double>> best(
        numStages + 1, std::vector<double>(numLayers + 1, kInfinity));
    std::vector<std::vector<int64_t>> choice(
        numStages + 1, std::vector<int64_t>(numLayers + 1, -1));
    best[0][0] = 0;
    for (int64_t stage = 1; stage <= numStages; ++stage) {
      int64_t s = stage - 1;
      for (int64_t end = stage; end <= numLayers - (numStages - stage); ++end) {
        double maxActivations = 0, maxTemporaries = extraTemporaries[s];
        for (int64_t first = end - 1; first >= stage - 1; --first) {
          maxActivations = std::max(maxActivations, activations[s][first]);
          maxTemporaries = std::max(maxTemporaries, temporaries[s][first]);
          if (best[stage - 1][first] == kInfinity)
            continue;
          double memory = sums[s][end] - sums[s][first] + maxActivations +
                          maxTemporaries + extraWeights[s];
          double cost = std::max(best[stage - 1][first],
                                 stageCost(s, first, end, memory));
          if (cost < best[stage][end]) {
            best[stage][end] = cost;
            choice[stage][end] = first;
          }
        }
      }
    }
    if (best[numStages][numLayers] == kInfinity)
      return {};
    std::vector<int64_t> counts(numStages);
    for (int64_t stage = numStages, end = numLayers; stage > 0; --stage) {
      int64_t first = choice[stage][end];
      counts[stage - 1] = end - first;
      end = first;
    }
    return counts;
  }

  int64_t numStages;
  int64_t numLayers;
  std::vector<std::vector<double>> seconds;
  /// Weights plus KV cache, which add up over a stage's layers.
  std::vector<std::vector<double>> sums;
  /// Activations and temporaries, of which a stage needs the largest.
  std::vector<std::vector<double>> activations;
  std::vector<std::vector<double>> temporaries;
  std::vector<double> extraSeconds;
  std::vector<double> extraWeights;
  std::vector<double> extraTemporaries;
};

} // namespace

Evaluation CostModel::evaluate(const ParallelConfig &config,
                               ArrayRef<int64_t> stageLayers) {
  Evaluation result;
  std::tie(result.rejection, result.reason) = checkConfig(config);
  if (!result.feasible())
    return result;
  int64_t numLayers = model_.layers.size();
  if (!stageLayers.empty()) {
    bool inRange = all_of(stageLayers, [&](int64_t count) {
      return count > 0 && count <= numLayers;
    });
    int64_t total = 0;
    for (int64_t count : stageLayers)
      total += inRange ? count : 0;
    if (!inRange || int64_t(stageLayers.size()) != config.pp ||
        total != numLayers) {
      result.rejection = Rejection::Shape;
      result.reason =
          formatv("stages={0} must give pp={1} positive layer counts "
                  "summing to the {2} layers",
                  join(map_range(stageLayers,
                                 [](int64_t count) { return itostr(count); }),
                       ","),
                  config.pp, numLayers)
              .str();
      return result;
    }
  }

  Derived derived = derive(config);
  std::vector<StageLayout> layouts = stageLayouts(config);
  // Layer costs once per distinct layout and layer class.
  std::vector<int64_t> layoutOfStage;
  std::vector<int64_t> distinctLayouts;
  for (int64_t stage = 0; stage < config.pp; ++stage) {
    auto same = find_if(distinctLayouts, [&](int64_t other) {
      return layouts[other].sameGroups(layouts[stage]);
    });
    if (same != distinctLayouts.end()) {
      layoutOfStage.push_back(same - distinctLayouts.begin());
      continue;
    }
    layoutOfStage.push_back(distinctLayouts.size());
    distinctLayouts.push_back(stage);
  }
  std::vector<std::vector<LayerCost>> costs;
  for (int64_t stage : distinctLayouts) {
    std::vector<std::optional<LayerCost>> byClass(numLayers);
    std::vector<LayerCost> layerCosts;
    for (int64_t layer = 0; layer < numLayers; ++layer) {
      std::optional<LayerCost> &known = byClass[layerClass_[layer]];
      if (!known)
        known = layerCost(layer, derived, layouts[stage]);
      layerCosts.push_back(*known);
    }
    costs.push_back(std::move(layerCosts));
  }
  std::vector<StageExtras> extras;
  for (int64_t stage = 0; stage < config.pp; ++stage)
    extras.push_back(stageExtras(stage, derived, layouts[stage]));

  // Splits: pinned, or the fastest that fits, or else the one needing the
  // least memory, which shows by how much the configuration misses.
  std::vector<int64_t> counts(stageLayers.begin(), stageLayers.end());
  if (counts.empty()) {
    StageSplitter splitter(config.pp, numLayers);
    for (int64_t stage = 0; stage < config.pp; ++stage) {
      std::vector<double> seconds, sums, activations, temporaries;
      for (const LayerCost &cost : costs[layoutOfStage[stage]]) {
        seconds.push_back(cost.seconds());
        sums.push_back(cost.weights + cost.kvCache);
        activations.push_back(cost.activations);
        temporaries.push_back(cost.temporaries);
      }
      splitter.setStage(stage, seconds, sums, activations, temporaries,
                        extras[stage].seconds(), extras[stage].weights,
                        extras[stage].temporaries);
    }
    counts = splitter.fastest(machine_.memoryBytesPerDevice);
    if (counts.empty())
      counts = splitter.smallest();
  }

  Plan plan;
  plan.config = config;
  int64_t first = 0;
  for (int64_t stage = 0; stage < config.pp; ++stage) {
    StagePlan stagePlan;
    stagePlan.firstLayer = first;
    stagePlan.numLayers = counts[stage];
    const StageExtras &extra = extras[stage];
    PhaseTimes &time = stagePlan.perMicrobatch;
    time.compute = extra.compute;
    time.tensorParallel = extra.tensorParallel;
    time.pointToPoint = extra.pointToPoint;
    MemoryBreakdown &memory = stagePlan.memory;
    memory.weights = extra.weights;
    memory.temporaries = extra.temporaries;
    for (int64_t layer = first; layer < first + counts[stage]; ++layer) {
      const LayerCost &cost = costs[layoutOfStage[stage]][layer];
      time.compute += cost.compute;
      time.allToAll += cost.allToAll;
      time.tensorParallel += cost.tensorParallel;
      stagePlan.imbalancePerMicrobatch += cost.imbalance;
      memory.weights += cost.weights;
      memory.kvCache += cost.kvCache;
      memory.activations = std::max(memory.activations, cost.activations);
      memory.temporaries = std::max(memory.temporaries, cost.temporaries);
    }
    if (machine_.cores > 0) {
      // CPU ranks time-sharing fewer cores: the ranks of a stage compute at
      // once (and, with micro-batches, up to min(pp, m) stages), so their
      // compute takes at least their total work over the cores. A rank's
      // work is the stage's compute less the wait for the slowest expert
      // rank.
      double active = double(config.devicesPerStage()) *
                      double(std::min(config.pp, config.microbatches));
      double work = (time.compute - stagePlan.imbalancePerMicrobatch) * active /
                    double(machine_.cores);
      if (work > time.compute) {
        time.compute = work;
        stagePlan.imbalancePerMicrobatch = 0;
      }
    }
    first += counts[stage];
    plan.stages.push_back(stagePlan);
  }

  // m t_max + (sum_s t_s - t_max): the slowest stage sets the pace, the
  // others add their share of filling and draining the pipeline.
  const StagePlan *slowest = &plan.stages.front();
  const StagePlan *fullest = &plan.stages.front();
  double sumOfStages = 0;
  for (const StagePlan &stage : plan.stages) {
    sumOfStages += stage.seconds();
    if (stage.seconds() > slowest->seconds())
      slowest = &stage;
    if (stage.memory.total() > fullest->memory.total())
      fullest = &stage;
  }
  double m = config.microbatches;
  plan.time.compute = m * slowest->perMicrobatch.compute;
  plan.time.allToAll = m * slowest->perMicrobatch.allToAll;
  plan.time.tensorParallel = m * slowest->perMicrobatch.tensorParallel;
  plan.time.pointToPoint = m * slowest->perMicrobatch.pointToPoint;
  plan.time.bubble = sumOfStages - slowest->seconds();
  plan.imbalanceSeconds = m * slowest->imbalancePerMicrobatch;
  plan.memory = fullest->memory;

  int64_t ranks = config.expertRanks();
  for (auto [moeLayer, layer] : enumerate(moeLayerIndex_))
    plan.placements.push_back(
        {layer,
         placement(moeLayer, ranks,
                   minSlotsPerRank(model_.layers[layer].numExperts, ranks) +
                       config.extraExpertSlots)});

  if (plan.memory.total() > machine_.memoryBytesPerDevice) {
    int64_t stage = fullest - &plan.stages.front();
    result.rejection = Rejection::Memory;
    result.reason =
        formatv("does not fit: {0} > {1} per device (stage {2}: weights "
                "{3}, kv cache {4}, activations {5}, temporaries {6})",
                formatBytes(plan.memory.total()),
                formatBytes(machine_.memoryBytesPerDevice), stage,
                formatBytes(plan.memory.weights),
                formatBytes(plan.memory.kvCache),
                formatBytes(plan.memory.activations),
                formatBytes(plan.memory.temporaries))
            .str();
  }
  result.plan = std::move(plan);
  return result;
}

//===----------------------------------------------------------------------===//
// Lower bound
//===----------------------------------------------------------------------===//
//
// For a mesh, every plan's step time T satisfies
//   T = m t_max + sum_s t_s - t_max >= m t_max >= (1 / pp) sum_s m t_s,
// and m t_s, the work of stage s over all micro-batches, is at least the sum
// over its layers and extras of:
//  - for each roofline term max(F / P, B / W): summed over micro-batches it
//    is at least max(sum F / P, sum B / W), and with rounded-up shards
//    sum F is at least the FLOPs of the exact whole-step token count, sum B
//    at least one read of the weights plus the whole step's activations; so
//    the term priced once with the exact step tokens is a lower bound;
//  - experts: the slowest rank is at least the mean rank, and the mean of
//    roofline terms is at least the roofline of the means (mean pairs, at
//    least experts / ranks slots), whatever the placement;
//  - all-reduce: the ring bandwidth term 2 (p - 1) / p n / bw (the tree's
//    2 n / bw is larger), latency dropped; all-gather and point to point
//    likewise;
//  - all-to-all: some expert rank has at most the mean load 1 / R, so it
//    sends at least (1 - 1 / R) of its bytes, over intra- and inter-node
//    links at best side by side: bytes / (bw_intra + bw_inter), or
//    bytes / bw_intra within one node.
// Layer terms take the cheapest stage layout, since the split is unknown.

double CostModel::lowerBoundSeconds(const ParallelConfig &mesh) {
  ParallelConfig config = mesh;
  config.microbatches = 1;
  config.extraExpertSlots = 0;
  DataType type = model_.dtype;
  double bytes = dataTypeBytes(type);
  double sequences = double(model_.batch) / (config.dp * config.ep);
  double tokens = sequences * model_.sequence;
  std::vector<StageLayout> layouts = stageLayouts(config);
  const LinkSpec &intra = machine_.intraNode;
  const LinkSpec &inter = machine_.interNode;
  auto bandwidthOf = [&](const GroupSpan &group) {
    return group.numNodes > 1 ? inter.bandwidthBytesPerSecond
                              : intra.bandwidthBytesPerSecond;
  };
  double tpFactor = double(config.tp - 1) / config.tp;
  int64_t ranks = config.expertRanks();

  double work = 0;
  std::vector<std::optional<double>> byClass(model_.layers.size());
  for (auto [index, layer] : enumerate(model_.layers)) {
    std::optional<double> &known = byClass[layerClass_[index]];
    if (known) {
      work += *known;
      continue;
    }
    AttentionShape shape = attentionShape(layer, config.tp);
    double hidden = layer.hidden;
    double compute =
        attentionSeconds(layer, shape, tokens, sequences,
                         double(model_.sequence), bytes, type, machine_);
    if (!layer.isMoE()) {
      compute +=
          mlpSeconds(tokens, hidden, double(layer.denseInter / config.tp),
                     layer.gatedMLP, 1, bytes, type, machine_);
    } else {
      double routedTokens = tokens * config.expertTp / config.tp;
      compute += routerSeconds(layer, routedTokens, bytes, type, machine_);
      if (layer.numSharedExperts > 0)
        compute += mlpSeconds(tokens, hidden,
                              double(layer.numSharedExperts *
                                     (layer.sharedExpertInter / config.tp)),
                              layer.gatedMLP, 1, bytes, type, machine_);
      compute += mlpSeconds(config.ep * tokens * layer.topK / ranks, hidden,
                            double(layer.expertInter / config.expertTp),
                            layer.gatedMLP, double(layer.numExperts) / ranks,
                            bytes, type, machine_);
    }
    double cheapestLinks = std::numeric_limits<double>::infinity();
    for (const StageLayout &layout : layouts) {
      // Two all-reduces of the hidden state; one, of the MoE layers only,
      // in the token-split layout.
      double allReduces =
          options_.layout == ExpertParallelLayout::TokenSplitLayers
              ? (layer.isMoE() ? 1 : 0)
              : 2;
      double links = allReduces * 2 * tpFactor * tokens * hidden * bytes /
                     bandwidthOf(layout.tensorGroup);
      if (layer.isMoE() && ranks > 1) {
        double dispatched = tokens * config.expertTp / config.tp * layer.topK *
                            hidden * bytes * (1 - 1.0 / ranks);
        double allToAll = 0;
        for (int64_t offset : layout.expertOffsets) {
          GroupSpan peers = groupSpan(machine_, offset, config.expertTp, ranks);
          double bandwidth = peers.numNodes > 1
                                 ? intra.bandwidthBytesPerSecond +
                                       inter.bandwidthBytesPerSecond
                                 : intra.bandwidthBytesPerSecond;
          // Dispatch and combine.
          allToAll = std::max(allToAll, 2 * dispatched / bandwidth);
        }
        links += allToAll;
      }
      cheapestLinks = std::min(cheapestLinks, links);
    }
    known = compute + cheapestLinks;
    work += *known;
  }

  double firstHidden = model_.layers.front().hidden;
  double lastHidden = model_.layers.back().hidden;
  double vocabRows = double((model_.vocab + config.tp - 1) / config.tp);
  // The embedding's all-reduce and the logits' all-gather, when the
  // vocabulary is split over tp.
  double vocabTpFactor =
      options_.layout == ExpertParallelLayout::TokenSplitLayers ? 0 : tpFactor;
  work += rooflineSeconds(memoryPasses(2 * tokens * firstHidden * bytes), type,
                          machine_) +
          2 * vocabTpFactor * tokens * firstHidden * bytes /
              bandwidthOf(layouts.front().tensorGroup);
  work += rooflineSeconds(memoryPasses(2 * tokens * lastHidden * bytes), type,
                          machine_) +
          rooflineSeconds(gemm(tokens, lastHidden, vocabRows, bytes), type,
                          machine_) +
          vocabTpFactor * tokens * vocabRows * config.tp * bytes /
              bandwidthOf(layouts.back().tensorGroup);
  for (int64_t stage = 0; stage + 1 < config.pp; ++stage)
    work += tokens * firstHidden * bytes /
            layouts[stage].nextStageLink.bandwidthBytesPerSecond;
  return work / config.pp;
}
