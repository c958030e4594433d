//===- PlanSearch.h - the cheapest plan under the cost model ----*- C++ -*-===//
//
// Part of moe-compiler.
//
// Finds the plan the cost model (CostModel.h) prices fastest, ties broken by
// planBefore. The space: every factorisation world = pp x dp x tp x ep, every
// expert tensor split etp dividing tp, every micro-batch count up to
// SearchOptions::maxMicrobatches, every extra expert slot count the
// replication budget allows; stages split by the cost model. Any choice can
// be pinned with a plan string:
//
//   "ep=8 tp=2 pp=2 dp=1 microbatches=4 etp=1 extra_slots=0 stages=16,16"
//
// The search is exact but prunes: it groups configurations by mesh
// (pp, dp, tp, ep, etp), visits meshes in increasing order of a lower bound
// on their step time (CostModel::lowerBoundSeconds) and stops when the bound
// exceeds the plan it would have to beat; inside a mesh it skips micro-batch
// counts that give the same micro-batch size as a smaller count (equal
// stage times, more of them). A GoogleTest checks it against brute force.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PLAN_PLANSEARCH_H
#define MOE_PLAN_PLANSEARCH_H

#include "moe/Plan/CostModel.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <optional>
#include <string>
#include <vector>

namespace moe::plan {

/// Choices fixed by hand; unset ones are searched.
struct PlanConstraints {
  std::optional<int64_t> pp, dp, tp, ep, expertTp, microbatches,
      extraExpertSlots;
  /// Layers per stage; empty: split by the cost model.
  std::vector<int64_t> stageLayers;

  bool empty() const;
  /// The plan string form.
  std::string str() const;
};

/// Parses "key=value" words separated by spaces; keys pp, dp, tp, ep, etp,
/// microbatches, extra_slots, stages (comma-separated layer counts, which
/// also fix pp). Errors quote the string and name the key.
llvm::Expected<PlanConstraints> parsePlanString(llvm::StringRef text);

struct SearchOptions {
  PlanConstraints pinned;
  /// Micro-batch counts searched (a pinned count may exceed it).
  int64_t maxMicrobatches = 64;
  /// Runners-up in the report: the best plans of other meshes.
  int64_t numRunnersUp = 5;
};

struct RunnerUp {
  Plan plan;
  /// Why it lost, e.g. "slower: all-to-all 3.100 ms vs 1.200 ms (step ...)".
  std::string reason;
};

/// A configuration that would have been faster than the winner but does
/// not fit in memory.
struct RejectedPlan {
  ParallelConfig config;
  double seconds = 0;
  double memoryBytes = 0;
  std::string reason;
};

/// Configurations rejected for one kind of reason, with the first example.
struct RejectionSummary {
  Rejection kind = Rejection::None;
  int64_t count = 0;
  ParallelConfig example;
  std::string exampleReason;
};

struct SearchStatistics {
  /// Meshes (pp, dp, tp, ep, etp) that passed the shape checks.
  int64_t meshes = 0;
  /// Meshes skipped because their lower bound could not win.
  int64_t meshesPruned = 0;
  /// Configurations priced by CostModel::evaluate.
  int64_t evaluations = 0;
  /// Wall time of the search.
  double seconds = 0;
};

/// The winner's placement of a group of MoE layers sharing it, beside the
/// placements that ignore the load.
struct PlacementSummary {
  /// Decoder layer indices.
  std::vector<int64_t> layers;
  std::shared_ptr<const ExpertPlacement> placement;
  double contiguousMaxOverMean = 0;
  double roundRobinMaxOverMean = 0;
};

struct PlanReport {
  ModelDescription model;
  MachineDescription machine;
  std::string expertLoad;
  PlanConstraints pinned;
  Plan best;
  std::vector<RunnerUp> runnersUp;
  std::vector<RejectedPlan> rejectedFaster;
  std::vector<RejectionSummary> rejections;
  std::vector<PlacementSummary> placements;
  SearchStatistics statistics;
};

/// Searches the plan space of `costModel`'s model and machine. Fails when no
/// configuration is feasible, saying why (the pinned choices that cannot
/// work, or the smallest memory need against the device memory).
llvm::Expected<PlanReport> searchPlan(CostModel &costModel,
                                      const SearchOptions &options = {});

/// Human-readable report: degrees, stages, time per phase, memory per
/// device, expert -> rank(s) map, runners-up with the reason each lost.
std::string formatPlanReport(const PlanReport &report);

/// The same as JSON; every field is deterministic except
/// "search"."seconds".
llvm::json::Value planReportToJSON(const PlanReport &report);

} // namespace moe::plan

#endif // MOE_PLAN_PLANSEARCH_H
