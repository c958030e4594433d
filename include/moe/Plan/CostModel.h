//===- CostModel.h - time and memory of a parallel plan ---------*- C++ -*-===//
//
// Part of moe-compiler.
//
// Prices one forward step (a prefill of batch x sequence tokens) of a model
// under a parallel configuration on a machine: time per phase and memory per
// device. The search (PlanSearch.h) compares plans only through this model.
//
// The mesh. world = pp x dp x ep x tp devices, rank
//   r = ((stage * dp + d) * ep + e) * tp + t,
// so tensor-parallel groups are consecutive ranks (inside a node when tp
// divides the node) and pipeline stages are the outermost blocks.
//  - Attention, dense MLPs, shared experts, embedding and LM head are split
//    over tp (Megatron-LM: heads, intermediate columns and vocabulary rows)
//    and replicated over dp and ep; the batch is split by sequences over the
//    dp x ep tensor-parallel groups (data-parallel attention), or, with
//    ExpertParallelLayout::TokenSplitLayers (what moe-partition builds),
//    over dp only, each MoE layer splitting its tokens over ep.
//  - Routed experts: the ep x tp devices of one stage and data-parallel
//    replica form R = ep x tp / etp expert ranks of etp devices each
//    (etp divides tp); expert rank q is devices q*etp .. q*etp+etp-1 of the
//    replica. An expert's matrices are split etp ways (intermediate
//    columns), and each expert rank has the same number of expert slots
//    (ExpertPlacement.h). The tokens of a tensor-parallel group are split
//    over its tp / etp expert ranks; dispatch and combine are ragged
//    all-to-alls among the R expert ranks (between devices with the same
//    index inside their expert rank).
//  - Pipeline: stages hold contiguous layers, the first also the embedding,
//    the last the final norm and LM head; micro-batches flow forward only
//    (no backward pass: this is inference), so a step takes
//      m * max_s t_s + (sum_s t_s - max_s t_s)
//    for m micro-batches and per-micro-batch stage times t_s (the first
//    micro-batch crosses every stage, then one leaves the slowest stage per
//    t_max; GPipe, Huang et al. 2019, with uneven stages). The second term is
//    the bubble; with equal stages it is (pp - 1) t.
//
// Per micro-batch and stage, time = compute + all-to-all + tensor-parallel
// collectives + point-to-point, without overlap. Formulas and their sources
// are next to each function below and in CostModel.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PLAN_COSTMODEL_H
#define MOE_PLAN_COSTMODEL_H

#include "moe/Plan/ExpertLoad.h"
#include "moe/Plan/ExpertPlacement.h"
#include "moe/Plan/MachineDescription.h"
#include "moe/Plan/ModelDescription.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace moe::plan {

//===----------------------------------------------------------------------===//
// Roofline and collectives
//===----------------------------------------------------------------------===//

/// Arithmetic and memory traffic of one operation on one device.
struct OpCost {
  double flops = 0;
  double bytes = 0;
  OpCost &operator+=(const OpCost &other) {
    flops += other.flops;
    bytes += other.bytes;
    return *this;
  }
};

/// Roofline (Williams, Waterman, Patterson 2009): an operation takes as long
/// as the slower of its arithmetic at peak FLOP/s and its memory traffic at
/// peak bandwidth.
double rooflineSeconds(const OpCost &cost, DataType type,
                       const MachineDescription &machine);

/// The ranks of a collective group as the link model sees them.
struct GroupSpan {
  int64_t size = 1;
  int64_t numNodes = 1;
};

/// The span of ranks first, first + stride, ... (size of them).
GroupSpan groupSpan(const MachineDescription &machine, int64_t firstRank,
                    int64_t stride, int64_t size);

/// alpha + n beta (Hockney 1994).
double pointToPointSeconds(double bytes, const LinkSpec &link);

/// Ring all-gather of `totalBytes` (the gathered result) and ring
/// reduce-scatter of `totalBytes` (the input of each rank): p - 1 steps, each
/// moving n / p bytes per rank (Thakur, Rabenseifner, Gropp 2005):
///   (p - 1 - s) alpha_intra + s alpha_inter + (p - 1) / p * n / bw,
/// where s = nodes - 1 steps cross nodes and bw is the inter-node bandwidth
/// when the group spans nodes (every ring crosses a node boundary), as in
/// NCCL's tuning model (src/graph/tuning.cc).
double ringAllGatherSeconds(double totalBytes, GroupSpan group,
                            const MachineDescription &machine);
double ringReduceScatterSeconds(double totalBytes, GroupSpan group,
                                const MachineDescription &machine);

/// Ring all-reduce = reduce-scatter + all-gather:
///   2 (p - 1 - s) alpha_intra + 2 s alpha_inter + 2 (p - 1) / p * n / bw.
double ringAllReduceSeconds(double bytes, GroupSpan group,
                            const MachineDescription &machine);

/// Tree all-reduce (NCCL's double binary tree, Sanders, Speck, Traff 2009):
/// a chain inside each node and a binary tree over nodes, reduce then
/// broadcast:
///   2 ((p / nodes - 1) alpha_intra + ceil(log2 nodes) alpha_inter) + 2 n / bw.
double treeAllReduceSeconds(double bytes, GroupSpan group,
                            const MachineDescription &machine);

/// The faster of ring and tree, as NCCL's tuner picks.
double allReduceSeconds(double bytes, GroupSpan group,
                        const MachineDescription &machine);

/// Ragged all-to-all by pairwise exchange (Thakur et al. 2005): a peer talks
/// to the p - 1 others in turn, paying one latency per partner (intra- or
/// inter-node); its bytes cross full-duplex links (send and receive
/// concurrent) and its intra- and inter-node links work side by side:
///   max_i sum_{j != i} alpha(i, j)
///   + max_i max(max(send_intra_i, recv_intra_i) / bw_intra,
///               max(send_inter_i, recv_inter_i) / bw_inter),
/// the latency of the peer with the most remote partners plus the link time
/// of the busiest peer. `sendBytes` is row-major p x p (bytes from peer i to
/// peer j); `rankOfPeer` maps peers to machine ranks. Bytes a peer sends
/// itself cost nothing.
double raggedAllToAllSeconds(llvm::ArrayRef<double> sendBytes,
                             llvm::ArrayRef<int64_t> rankOfPeer,
                             const MachineDescription &machine);

/// "97.1 GB", "512.0 MB", "3.0 KB" (powers of 1000, as machine files).
std::string formatBytes(double bytes);
/// "1.234 s", "3.100 ms", "12.000 us".
std::string formatSeconds(double seconds);

//===----------------------------------------------------------------------===//
// Plans
//===----------------------------------------------------------------------===//

struct ParallelConfig {
  int64_t pp = 1;
  int64_t dp = 1;
  int64_t tp = 1;
  int64_t ep = 1;
  /// Tensor split inside each expert; divides tp.
  int64_t expertTp = 1;
  int64_t microbatches = 1;
  /// Expert slots per expert rank beyond the fewest that hold every expert;
  /// they hold replicas of hot experts.
  int64_t extraExpertSlots = 0;

  int64_t numDevices() const { return pp * dp * tp * ep; }
  int64_t devicesPerStage() const { return dp * ep * tp; }
  int64_t expertRanks() const { return ep * tp / expertTp; }
  /// "pp=1 dp=1 tp=2 ep=4 etp=1 microbatches=2 extra_slots=0", the plan
  /// string syntax.
  std::string str() const;

  std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>
  key() const {
    return {pp, dp, tp, ep, expertTp, microbatches, extraExpertSlots};
  }
  bool operator==(const ParallelConfig &other) const {
    return key() == other.key();
  }
  bool operator<(const ParallelConfig &other) const {
    return key() < other.key();
  }
};

/// Seconds per phase. Compute includes the time lost to uneven expert load.
struct PhaseTimes {
  double compute = 0;
  double allToAll = 0;
  /// All-reduce and all-gather of tensor parallelism.
  double tensorParallel = 0;
  /// Activations sent between pipeline stages.
  double pointToPoint = 0;
  double bubble = 0;
  double total() const {
    return compute + allToAll + tensorParallel + pointToPoint + bubble;
  }
};

/// Bytes per device.
struct MemoryBreakdown {
  double weights = 0;
  /// Keys and values (or latents) of every token of the step, kept for
  /// decoding.
  double kvCache = 0;
  /// Residual-stream buffers of the micro-batch in flight.
  double activations = 0;
  /// The largest scratch space one operation needs.
  double temporaries = 0;
  double total() const { return weights + kvCache + activations + temporaries; }
};

struct StagePlan {
  int64_t firstLayer = 0;
  int64_t numLayers = 0;
  /// One micro-batch through this stage (bubble is 0).
  PhaseTimes perMicrobatch;
  /// Part of perMicrobatch.compute spent waiting for the most loaded expert
  /// rank (max minus mean expert-rank time).
  double imbalancePerMicrobatch = 0;
  /// The device of this stage that needs the most.
  MemoryBreakdown memory;
  double seconds() const { return perMicrobatch.total(); }
};

/// Expert placement of one MoE layer (the same on every stage replica).
struct LayerPlacement {
  /// Decoder layer index.
  int64_t layer = 0;
  std::shared_ptr<const ExpertPlacement> placement;
};

struct Plan {
  ParallelConfig config;
  std::vector<StagePlan> stages;
  /// The whole step.
  PhaseTimes time;
  /// Part of time.compute lost to uneven expert load.
  double imbalanceSeconds = 0;
  /// The stage whose devices need the most memory.
  MemoryBreakdown memory;
  std::vector<LayerPlacement> placements;
  double seconds() const { return time.total(); }
};

/// The order that defines the optimum: less time, then less memory per
/// device, then the smaller ParallelConfig::key.
bool planBefore(const Plan &a, const Plan &b);

enum class Rejection {
  None,
  /// Degrees do not match the devices, the layers or the model's sizes.
  Shape,
  /// Fewer sequences than data shards or micro-batches.
  Batch,
  /// More expert slots than the replication budget allows.
  ExpertSlots,
  /// Does not fit in device memory.
  Memory,
};
llvm::StringRef rejectionName(Rejection rejection);

struct Evaluation {
  Rejection rejection = Rejection::None;
  /// Why the configuration was rejected; empty when it was not.
  std::string reason;
  /// The plan when feasible; for Memory rejections the stage split that
  /// needs the least memory, priced as if it fitted.
  std::optional<Plan> plan;
  bool feasible() const { return rejection == Rejection::None; }
};

/// How the ep ranks of a data-parallel replica share the layers outside
/// the experts.
enum class ExpertParallelLayout {
  /// The batch is split by sequences over the dp x ep tensor-parallel groups
  /// (data-parallel attention, as DeepSeek-V3 serves): needs at least
  /// dp x ep sequences.
  DataParallelAttention,
  /// The batch is split by sequences over dp only; the ep groups of a
  /// replica run the non-expert layers on all its tokens, and each MoE layer
  /// splits those tokens ep ways (router, shared experts and dispatch on
  /// t / ep tokens) and all-gathers its output (t h b over ep). What
  /// moe-partition builds; needs the tokens of a micro-batch divisible by
  /// ep.
  TokenSplitLayers,
};

struct CostModelOptions {
  /// Expert slots beyond one per expert may reach this fraction of the
  /// experts (0.125: at most 288 slots for 256 experts); 0 to 16.
  double maxExtraSlotFraction = 0.125;
  ExpertParallelLayout layout = ExpertParallelLayout::DataParallelAttention;
};

/// Prices configurations of one model on one machine. It caches expert
/// placements and all-to-all coefficients, so it is not thread-safe.
class CostModel {
public:
  /// Validates the model and resolves the expert load against it.
  static llvm::Expected<std::unique_ptr<CostModel>>
  create(ModelDescription model, MachineDescription machine,
         const ExpertLoadModel &load, CostModelOptions options = {});

  const ModelDescription &model() const { return model_; }
  const MachineDescription &machine() const { return machine_; }
  const ExpertLoadModel &load() const { return load_; }
  const CostModelOptions &options() const { return options_; }

  /// The data shards the batch is split into by sequences: dp x ep or dp
  /// (CostModelOptions::layout).
  int64_t dataShards(const ParallelConfig &config) const;

  /// Why `config` cannot be realised, whatever the memory: wrong device
  /// count, too many stages, sizes tensor parallelism does not divide, too
  /// few sequences, slots over budget. Rejection::None when it can.
  std::pair<Rejection, std::string>
  checkConfig(const ParallelConfig &config) const;

  /// Prices `config`. Stages are split to minimise the slowest stage among
  /// splits that fit in memory (exact, dynamic programming over prefix
  /// sums), unless `stageLayers` gives the layer count of every stage.
  Evaluation evaluate(const ParallelConfig &config,
                      llvm::ArrayRef<int64_t> stageLayers = {});

  /// A lower bound on the step time of every plan with the degrees of
  /// `mesh` (pp, dp, tp, ep, expertTp), whatever its micro-batches, expert
  /// slots and stage split; `mesh` must pass checkConfig with one
  /// micro-batch. Used to prune the search; see CostModel.cpp for the proof
  /// sketch.
  double lowerBoundSeconds(const ParallelConfig &mesh);

  /// The largest extraExpertSlots the budget allows for R expert ranks
  /// (0 for dense models).
  int64_t maxExtraExpertSlots(int64_t expertRanks) const;

  /// Balanced placement of MoE layer `moeLayer` (model order among MoE
  /// layers), cached.
  std::shared_ptr<const ExpertPlacement>
  placement(int64_t moeLayer, int64_t expertRanks, int64_t slotsPerRank);

  /// Shares of the experts of MoE layer `moeLayer`.
  llvm::ArrayRef<double> expertShares(int64_t moeLayer) const;

  /// Decoder layer index of MoE layer `moeLayer`.
  int64_t layerOfMoELayer(int64_t moeLayer) const {
    return moeLayerIndex_[moeLayer];
  }

private:
  CostModel(ModelDescription model, MachineDescription machine,
            ExpertLoadModel load, CostModelOptions options,
            std::vector<std::vector<double>> shares);

  struct Derived;
  struct StageLayout;
  struct LayerCost;
  struct StageExtras;

  Derived derive(const ParallelConfig &config) const;
  std::vector<StageLayout> stageLayouts(const ParallelConfig &config) const;
  LayerCost layerCost(int64_t layer, const Derived &derived,
                      const StageLayout &layout);
  StageExtras stageExtras(int64_t stage, const Derived &derived,
                          const StageLayout &layout) const;
  /// Per-unit cost of one dispatch all-to-all: seconds of latency, and
  /// seconds per byte each expert rank sends per routed pair share.
  std::pair<double, double> allToAllCoefficients(int64_t moeLayer,
                                                 const Derived &derived,
                                                 int64_t offset);

  ModelDescription model_;
  MachineDescription machine_;
  ExpertLoadModel load_;
  CostModelOptions options_;
  std::vector<std::vector<double>> shares_;
  /// Per decoder layer: its MoE layer index, or -1.
  std::vector<int64_t> moeLayerOfLayer_;
  std::vector<int64_t> moeLayerIndex_;
  /// Layers with equal descriptions and equal expert shares share a class,
  /// so their costs are computed once per configuration.
  std::vector<int64_t> layerClass_;
  /// MoE layers with equal shares share a placement.
  std::vector<int64_t> shareClass_;

  std::map<std::tuple<int64_t, int64_t, int64_t>,
           std::shared_ptr<const ExpertPlacement>>
      placements_;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>,
           std::pair<double, double>>
      allToAllCache_;
};

} // namespace moe::plan

#endif // MOE_PLAN_COSTMODEL_H
