//===- PlanReport.cpp - plan reports as text and JSON ---------------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/PlanSearch.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace moe::plan;

namespace {

/// "0-2, 5, 7-60".
std::string formatLayerRanges(ArrayRef<int64_t> layers) {
  SmallVector<std::string> ranges;
  for (size_t begin = 0; begin < layers.size();) {
    size_t end = begin + 1;
    while (end < layers.size() && layers[end] == layers[end - 1] + 1)
      ++end;
    ranges.push_back(
        end - begin == 1
            ? itostr(layers[begin])
            : formatv("{0}-{1}", layers[begin], layers[end - 1]).str());
    begin = end;
  }
  return join(ranges, ", ");
}

std::string formatMemory(const MemoryBreakdown &memory) {
  return formatv("weights {0}, kv cache {1}, activations {2}, temporaries "
                 "{3}",
                 formatBytes(memory.weights), formatBytes(memory.kvCache),
                 formatBytes(memory.activations),
                 formatBytes(memory.temporaries))
      .str();
}

json::Object configToJSON(const ParallelConfig &config) {
  return json::Object{{"pp", config.pp},
                      {"dp", config.dp},
                      {"tp", config.tp},
                      {"ep", config.ep},
                      {"etp", config.expertTp},
                      {"microbatches", config.microbatches},
                      {"extra_slots", config.extraExpertSlots},
                      {"plan_string", config.str()}};
}

json::Object phasesToJSON(const PhaseTimes &time) {
  return json::Object{{"compute_s", time.compute},
                      {"all_to_all_s", time.allToAll},
                      {"tensor_parallel_s", time.tensorParallel},
                      {"point_to_point_s", time.pointToPoint},
                      {"bubble_s", time.bubble},
                      {"total_s", time.total()}};
}

json::Object memoryToJSON(const MemoryBreakdown &memory) {
  return json::Object{{"weights_bytes", memory.weights},
                      {"kv_cache_bytes", memory.kvCache},
                      {"activations_bytes", memory.activations},
                      {"temporaries_bytes", memory.temporaries},
                      {"total_bytes", memory.total()}};
}

json::Object planToJSON(const Plan &plan) {
  json::Array stages;
  for (const StagePlan &stage : plan.stages)
    stages.push_back(json::Object{
        {"first_layer", stage.firstLayer},
        {"layers", stage.numLayers},
        {"seconds_per_microbatch", stage.seconds()},
        {"time_per_microbatch", phasesToJSON(stage.perMicrobatch)},
        {"imbalance_per_microbatch_s", stage.imbalancePerMicrobatch},
        {"memory", memoryToJSON(stage.memory)}});
  json::Object time = phasesToJSON(plan.time);
  time["imbalance_s"] = plan.imbalanceSeconds;
  return json::Object{{"config", configToJSON(plan.config)},
                      {"seconds", plan.seconds()},
                      {"time", std::move(time)},
                      {"memory", memoryToJSON(plan.memory)},
                      {"stages", std::move(stages)}};
}

} // namespace

std::string moe::plan::formatPlanReport(const PlanReport &report) {
  std::string text;
  raw_string_ostream os(text);
  const ModelDescription &model = report.model;
  const MachineDescription &machine = report.machine;
  const Plan &best = report.best;
  const ParallelConfig &config = best.config;

  os << formatv("Plan for {0} on {1}\n", model.name, machine.name);
  os << formatv("  model: {0} layers ({1} MoE), {2:F1} B parameters, {3}, "
                "{4} x {5} tokens per step\n",
                model.layers.size(), model.numMoELayers(),
                model.numParameters() / 1e9, dataTypeName(model.dtype),
                model.batch, model.sequence);
  os << formatv("  machine: {0} nodes x {1} devices, {2} per device\n",
                machine.numNodes, machine.devicesPerNode,
                formatBytes(machine.memoryBytesPerDevice));
  os << formatv("  expert load: {0}\n", report.expertLoad);
  if (!report.pinned.empty())
    os << formatv("  pinned: {0}\n", report.pinned.str());

  os << formatv("\nChosen: {0}\n", config.str());
  if (model.numMoELayers() > 0) {
    const ExpertPlacement &first = *best.placements.front().placement;
    os << formatv("  experts: {0} expert ranks per stage replica of etp={1} "
                  "device(s), {2} slot(s) each\n",
                  config.expertRanks(), config.expertTp, first.slotsPerRank);
  }
  os << formatv("  step time {0}\n", formatSeconds(best.seconds()));
  os << formatv("    compute             {0} (load imbalance {1})\n",
                formatSeconds(best.time.compute),
                formatSeconds(best.imbalanceSeconds));
  os << formatv("    all-to-all          {0}\n",
                formatSeconds(best.time.allToAll));
  os << formatv("    tensor-parallel     {0}\n",
                formatSeconds(best.time.tensorParallel));
  os << formatv("    pipeline transfers  {0}\n",
                formatSeconds(best.time.pointToPoint));
  os << formatv("    pipeline bubble     {0}\n",
                formatSeconds(best.time.bubble));
  os << formatv(
      "  memory per device {0} of {1}: {2}\n", formatBytes(best.memory.total()),
      formatBytes(machine.memoryBytesPerDevice), formatMemory(best.memory));
  os << "  stages:\n";
  for (auto [index, stage] : enumerate(best.stages))
    os << formatv("    {0}: layers {1}-{2} ({3}), {4} per micro-batch, {5} "
                  "per device\n",
                  index, stage.firstLayer,
                  stage.firstLayer + stage.numLayers - 1, stage.numLayers,
                  formatSeconds(stage.seconds()),
                  formatBytes(stage.memory.total()));

  if (!report.placements.empty()) {
    os << formatv("\nExpert placement: expert rank q of stage s and "
                  "data-parallel replica d is devices s*{0} + d*{1} + q*{2} "
                  "+ j, j < {2}\n",
                  config.devicesPerStage(), config.ep * config.tp,
                  config.expertTp);
    for (const PlacementSummary &summary : report.placements) {
      const ExpertPlacement &placement = *summary.placement;
      os << formatv("  MoE layers {0}: max/mean rank load {1:F3} "
                    "(load-blind placements: contiguous {2:F3}, round robin "
                    "{3:F3}), {4} slots for {5} experts\n",
                    formatLayerRanges(summary.layers), placement.maxOverMean(),
                    summary.contiguousMaxOverMean,
                    summary.roundRobinMaxOverMean, placement.numSlotsUsed(),
                    placement.ranksOfExpert.size());
      os << "    expert->expert ranks:";
      for (auto [expert, ranks] : enumerate(placement.ranksOfExpert)) {
        if (expert % 8 == 0)
          os << "\n     ";
        os << formatv(
            " {0}->{1}", expert,
            join(map_range(ranks, [](int64_t rank) { return itostr(rank); }),
                 ","));
      }
      os << "\n";
    }
  }

  if (!report.runnersUp.empty()) {
    os << "\nRunners-up (best of other meshes):\n";
    for (auto [index, runnerUp] : enumerate(report.runnersUp))
      os << formatv("  {0}. {1}: {2}, {3} per device; {4}\n", index + 2,
                    runnerUp.plan.config.str(),
                    formatSeconds(runnerUp.plan.seconds()),
                    formatBytes(runnerUp.plan.memory.total()), runnerUp.reason);
  }
  if (!report.rejectedFaster.empty()) {
    os << "\nFaster but rejected:\n";
    for (const RejectedPlan &rejected : report.rejectedFaster)
      os << formatv("  {0}: {1}; {2}\n", rejected.config.str(),
                    formatSeconds(rejected.seconds), rejected.reason);
  }
  if (!report.rejections.empty()) {
    os << "\nRejected configurations:\n";
    for (const RejectionSummary &summary : report.rejections)
      os << formatv("  {0}: {1} (e.g. {2}: {3})\n", rejectionName(summary.kind),
                    summary.count, summary.example.str(),
                    summary.exampleReason);
  }
  const SearchStatistics &statistics = report.statistics;
  os << formatv("\nSearch: {0} meshes, {1} pruned by the lower bound, {2} "
                "configurations priced in {3}\n",
                statistics.meshes, statistics.meshesPruned,
                statistics.evaluations, formatSeconds(statistics.seconds));
  return text;
}

json::Value moe::plan::planReportToJSON(const PlanReport &report) {
  const ModelDescription &model = report.model;
  json::Array placements;
  for (const PlacementSummary &summary : report.placements) {
    const ExpertPlacement &placement = *summary.placement;
    json::Array ranksOfExpert;
    for (const std::vector<int64_t> &ranks : placement.ranksOfExpert)
      ranksOfExpert.push_back(json::Array(ranks));
    placements.push_back(json::Object{
        {"layers", json::Array(summary.layers)},
        {"expert_ranks", placement.numRanks},
        {"slots_per_rank", placement.slotsPerRank},
        {"slots", placement.numSlotsUsed()},
        {"max_over_mean", placement.maxOverMean()},
        {"contiguous_max_over_mean", summary.contiguousMaxOverMean},
        {"round_robin_max_over_mean", summary.roundRobinMaxOverMean},
        {"rank_load", json::Array(placement.rankLoad)},
        {"ranks_of_expert", std::move(ranksOfExpert)}});
  }
  json::Array runnersUp;
  for (const RunnerUp &runnerUp : report.runnersUp) {
    json::Object entry = planToJSON(runnerUp.plan);
    entry["reason"] = runnerUp.reason;
    runnersUp.push_back(std::move(entry));
  }
  json::Array rejectedFaster;
  for (const RejectedPlan &rejected : report.rejectedFaster)
    rejectedFaster.push_back(
        json::Object{{"config", configToJSON(rejected.config)},
                     {"seconds", rejected.seconds},
                     {"memory_bytes", rejected.memoryBytes},
                     {"reason", rejected.reason}});
  json::Array rejections;
  for (const RejectionSummary &summary : report.rejections)
    rejections.push_back(
        json::Object{{"kind", rejectionName(summary.kind)},
                     {"count", summary.count},
                     {"example", configToJSON(summary.example)},
                     {"reason", summary.exampleReason}});
  const SearchStatistics &statistics = report.statistics;
  return json::Object{
      {"model", json::Object{{"name", model.name},
                             {"layers", int64_t(model.layers.size())},
                             {"moe_layers", model.numMoELayers()},
                             {"parameters", model.numParameters()},
                             {"dtype", dataTypeName(model.dtype)},
                             {"batch", model.batch},
                             {"sequence", model.sequence},
                             {"vocab", model.vocab}}},
      {"machine", toJSON(report.machine)},
      {"expert_load", report.expertLoad},
      {"pinned", report.pinned.str()},
      {"plan", planToJSON(report.best)},
      {"placements", std::move(placements)},
      {"runners_up", std::move(runnersUp)},
      {"rejected_faster", std::move(rejectedFaster)},
      {"rejections", std::move(rejections)},
      {"search", json::Object{{"meshes", statistics.meshes},
                              {"meshes_pruned", statistics.meshesPruned},
                              {"evaluations", statistics.evaluations},
                              {"seconds", statistics.seconds}}}};
}
