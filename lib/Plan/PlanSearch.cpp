//===- PlanSearch.cpp - branch and bound over parallel plans --------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/PlanSearch.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <chrono>

using namespace llvm;
using namespace moe::plan;

//===----------------------------------------------------------------------===//
// Plan strings
//===----------------------------------------------------------------------===//

bool PlanConstraints::empty() const {
  return !pp && !dp && !tp && !ep && !expertTp && !microbatches &&
         !extraExpertSlots && stageLayers.empty();
}

std::string PlanConstraints::str() const {
  SmallVector<std::string> words;
  auto add = [&](StringRef key, const std::optional<int64_t> &value) {
    if (value)
      words.push_back(formatv("{0}={1}", key, *value).str());
  };
  add("pp", pp);
  add("dp", dp);
  add("tp", tp);
  add("ep", ep);
  add("etp", expertTp);
  add("microbatches", microbatches);
  add("extra_slots", extraExpertSlots);
  if (!stageLayers.empty())
    words.push_back(
        "stages=" +
        join(map_range(stageLayers, [](int64_t n) { return itostr(n); }), ","));
  return join(words, " ");
}

Expected<PlanConstraints> moe::plan::parsePlanString(StringRef text) {
  PlanConstraints constraints;
  auto fail = [&](const Twine &what) {
    return createStringError(
        inconvertibleErrorCode(),
        formatv("plan string '{0}': {1}", text, what.str()).str());
  };
  SmallVector<StringRef> words;
  SplitString(text, words);
  for (StringRef word : words) {
    auto [key, value] = word.split('=');
    if (value.empty())
      return fail(formatv("'{0}' is not key=value", word));
    if (key == "stages") {
      if (!constraints.stageLayers.empty())
        return fail("'stages' given twice");
      SmallVector<StringRef> counts;
      value.split(counts, ',');
      for (StringRef count : counts) {
        int64_t layers = 0;
        if (count.getAsInteger(10, layers) || layers < 1)
          return fail(formatv("'stages' needs positive layer counts separated "
                              "by commas, got '{0}'",
                              value));
        constraints.stageLayers.push_back(layers);
      }
      continue;
    }
    std::optional<int64_t> *slot =
        StringSwitch<std::optional<int64_t> *>(key)
            .Case("pp", &constraints.pp)
            .Case("dp", &constraints.dp)
            .Case("tp", &constraints.tp)
            .Case("ep", &constraints.ep)
            .Case("etp", &constraints.expertTp)
            .Case("microbatches", &constraints.microbatches)
            .Case("extra_slots", &constraints.extraExpertSlots)
            .Default(nullptr);
    if (!slot)
      return fail(formatv("unknown key '{0}'; keys are pp, dp, tp, ep, etp, "
                          "microbatches, extra_slots, stages",
                          key));
    if (*slot)
      return fail(formatv("'{0}' given twice", key));
    int64_t number = 0;
    int64_t smallest = key == "extra_slots" ? 0 : 1;
    if (value.getAsInteger(10, number) || number < smallest)
      return fail(formatv("'{0}' needs an integer >= {1}, got '{2}'", key,
                          smallest, value));
    *slot = number;
  }
  if (!constraints.stageLayers.empty()) {
    int64_t stages = constraints.stageLayers.size();
    if (constraints.pp && *constraints.pp != stages)
      return fail(formatv("pp={0} but 'stages' lists {1} stages",
                          *constraints.pp, stages));
    constraints.pp = stages;
  }
  return constraints;
}

//===----------------------------------------------------------------------===//
// Search
//===----------------------------------------------------------------------===//

namespace {

std::vector<int64_t> divisorsOf(int64_t n) {
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= n; ++d)
    if (n % d == 0)
      divisors.push_back(d);
  return divisors;
}

bool matches(const std::optional<int64_t> &pinned, int64_t value) {
  return !pinned || *pinned == value;
}

/// The phase that grew most, as the reason a plan lost.
std::string whyLost(const Plan &plan, const Plan &best) {
  if (plan.seconds() > best.seconds()) {
    struct Phase {
      StringRef name;
      double PhaseTimes::*field;
    };
    const Phase phases[] = {
        {"compute", &PhaseTimes::compute},
        {"all-to-all", &PhaseTimes::allToAll},
        {"tensor-parallel collectives", &PhaseTimes::tensorParallel},
        {"pipeline transfers", &PhaseTimes::pointToPoint},
        {"pipeline bubble", &PhaseTimes::bubble},
    };
    const Phase *worst = &phases[0];
    for (const Phase &phase : phases)
      if (plan.time.*(phase.field) - best.time.*(phase.field) >
          plan.time.*(worst->field) - best.time.*(worst->field))
        worst = &phase;
    return formatv("slower: {0} {1} vs {2} (step {3} vs {4})", worst->name,
                   formatSeconds(plan.time.*(worst->field)),
                   formatSeconds(best.time.*(worst->field)),
                   formatSeconds(plan.seconds()), formatSeconds(best.seconds()))
        .str();
  }
  if (plan.memory.total() > best.memory.total())
    return formatv("as fast, more memory: {0} vs {1} per device",
                   formatBytes(plan.memory.total()),
                   formatBytes(best.memory.total()))
        .str();
  return "as fast and as small; ordered after the winner by degrees";
}

/// Micro-batch counts worth pricing: the smallest count for each
/// micro-batch size ceil(sequences / m).
std::vector<int64_t> microbatchCounts(int64_t sequencesPerShard,
                                      int64_t maxMicrobatches) {
  std::vector<int64_t> counts;
  int64_t previousSize = 0;
  for (int64_t m = 1; m <= std::min(sequencesPerShard, maxMicrobatches); ++m) {
    int64_t size = (sequencesPerShard + m - 1) / m;
    if (size != previousSize)
      counts.push_back(m);
    previousSize = size;
  }
  return counts;
}

class Search {
public:
  Search(CostModel &costModel, const SearchOptions &options)
      : costModel(costModel), options(options),
        maxLeaders(std::max<int64_t>(0, options.numRunnersUp) + 1),
        maxMicrobatches(std::max<int64_t>(1, options.maxMicrobatches)) {}

  Expected<PlanReport> run();

private:
  struct Mesh {
    ParallelConfig config;
    double lowerBound;
  };

  void reject(const ParallelConfig &config, Rejection kind,
              const std::string &reason);
  void searchMesh(const ParallelConfig &mesh);
  Error noPlanError() const;

  CostModel &costModel;
  const SearchOptions &options;
  int64_t maxLeaders;
  int64_t maxMicrobatches;
  /// The best plan of each mesh visited so far, at most maxLeaders, in
  /// planBefore order.
  std::vector<Plan> leaders;
  std::vector<RejectedPlan> memoryRejected;
  std::vector<RejectionSummary> rejections;
  SearchStatistics statistics;
};

void Search::reject(const ParallelConfig &config, Rejection kind,
                    const std::string &reason) {
  auto summary = find_if(rejections, [&](const RejectionSummary &entry) {
    return entry.kind == kind;
  });
  if (summary == rejections.end()) {
    rejections.push_back({kind, 0, config, reason});
    summary = rejections.end() - 1;
  }
  ++summary->count;
}

void Search::searchMesh(const ParallelConfig &mesh) {
  const PlanConstraints &pinned = options.pinned;
  std::vector<int64_t> slotChoices;
  if (pinned.extraExpertSlots) {
    slotChoices.push_back(*pinned.extraExpertSlots);
  } else {
    for (int64_t extra = 0,
                 e = costModel.maxExtraExpertSlots(mesh.expertRanks());
         extra <= e; ++extra)
      slotChoices.push_back(extra);
  }
  int64_t shards = costModel.dataShards(mesh);
  int64_t sequencesPerShard = (costModel.model().batch + shards - 1) / shards;
  std::vector<int64_t> microbatchChoices =
      pinned.microbatches
          ? std::vector<int64_t>{*pinned.microbatches}
          : microbatchCounts(sequencesPerShard, maxMicrobatches);

  std::optional<Plan> best;
  for (int64_t extra : slotChoices) {
    for (int64_t microbatches : microbatchChoices) {
      ParallelConfig config = mesh;
      config.extraExpertSlots = extra;
      config.microbatches = microbatches;
      Evaluation evaluation = costModel.evaluate(config, pinned.stageLayers);
      ++statistics.evaluations;
      if (!evaluation.feasible()) {
        reject(config, evaluation.rejection, evaluation.reason);
        if (evaluation.rejection == Rejection::Memory)
          memoryRejected.push_back({config, evaluation.plan->seconds(),
                                    evaluation.plan->memory.total(),
                                    evaluation.reason});
        continue;
      }
      if (!best || planBefore(*evaluation.plan, *best))
        best = std::move(evaluation.plan);
    }
  }
  if (!best)
    return;
  leaders.insert(upper_bound(leaders, *best, planBefore), std::move(*best));
  if (int64_t(leaders.size()) > maxLeaders)
    leaders.pop_back();
}

Error Search::noPlanError() const {
  const CostModel &model = costModel;
  std::string what = formatv("no plan for model '{0}' on machine '{1}'",
                             model.model().name, model.machine().name)
                         .str();
  if (!options.pinned.empty())
    what += formatv(" with '{0}'", options.pinned.str()).str();
  if (rejections.empty())
    return createStringError(inconvertibleErrorCode(),
                             formatv("{0}: no mesh of the {1} devices matches",
                                     what, model.machine().numDevices())
                                 .str());
  // The memory shortfall is the most useful news, then the first reason of
  // each kind.
  SmallVector<std::string> reasons;
  if (!memoryRejected.empty()) {
    const RejectedPlan &smallest =
        *std::min_element(memoryRejected.begin(), memoryRejected.end(),
                          [](const RejectedPlan &a, const RejectedPlan &b) {
                            return a.memoryBytes != b.memoryBytes
                                       ? a.memoryBytes < b.memoryBytes
                                       : a.config < b.config;
                          });
    reasons.push_back(
        formatv("the smallest memory need is {0} per device ({1}), the "
                "devices have {2}",
                formatBytes(smallest.memoryBytes), smallest.config.str(),
                formatBytes(model.machine().memoryBytesPerDevice))
            .str());
  }
  for (const RejectionSummary &summary : rejections)
    reasons.push_back(formatv("{0} (e.g. {1}: {2})",
                              rejectionName(summary.kind),
                              summary.example.str(), summary.exampleReason)
                          .str());
  return createStringError(
      inconvertibleErrorCode(),
      formatv("{0}; rejected: {1}", what, join(reasons, "; ")).str());
}

Expected<PlanReport> Search::run() {
  auto start = std::chrono::steady_clock::now();
  const PlanConstraints &pinned = options.pinned;
  int64_t devices = costModel.machine().numDevices();

  std::vector<Mesh> meshes;
  for (int64_t pp : divisorsOf(devices)) {
    for (int64_t dp : divisorsOf(devices / pp)) {
      for (int64_t tp : divisorsOf(devices / pp / dp)) {
        int64_t ep = devices / pp / dp / tp;
        if (!matches(pinned.pp, pp) || !matches(pinned.dp, dp) ||
            !matches(pinned.tp, tp) || !matches(pinned.ep, ep))
          continue;
        for (int64_t etp : divisorsOf(tp)) {
          if (!matches(pinned.expertTp, etp))
            continue;
          ParallelConfig mesh;
          mesh.pp = pp;
          mesh.dp = dp;
          mesh.tp = tp;
          mesh.ep = ep;
          mesh.expertTp = etp;
          auto [rejection, reason] = costModel.checkConfig(mesh);
          if (rejection != Rejection::None) {
            reject(mesh, rejection, reason);
            continue;
          }
          meshes.push_back({mesh, costModel.lowerBoundSeconds(mesh)});
        }
      }
    }
  }
  statistics.meshes = meshes.size();
  std::sort(meshes.begin(), meshes.end(), [](const Mesh &a, const Mesh &b) {
    return a.lowerBound != b.lowerBound ? a.lowerBound < b.lowerBound
                                        : a.config < b.config;
  });

  for (auto [index, mesh] : enumerate(meshes)) {
    // Later meshes have larger bounds: none can enter the leaders. The
    // margin keeps rounding in the bound from pruning a tie.
    if (int64_t(leaders.size()) == maxLeaders &&
        mesh.lowerBound > leaders.back().seconds() * (1 + 1e-9)) {
      statistics.meshesPruned = meshes.size() - index;
      break;
    }
    searchMesh(mesh.config);
  }
  statistics.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (leaders.empty())
    return noPlanError();

  PlanReport report;
  report.model = costModel.model();
  report.machine = costModel.machine();
  report.expertLoad = costModel.load().describe();
  report.pinned = pinned;
  report.best = leaders.front();
  for (const Plan &plan : drop_begin(leaders))
    report.runnersUp.push_back({plan, whyLost(plan, report.best)});

  // Faster but too big: the fastest configuration of each such mesh.
  sort(memoryRejected, [](const RejectedPlan &a, const RejectedPlan &b) {
    return a.seconds != b.seconds ? a.seconds < b.seconds : a.config < b.config;
  });
  for (const RejectedPlan &rejected : memoryRejected) {
    if (rejected.seconds >= report.best.seconds() ||
        int64_t(report.rejectedFaster.size()) >= maxLeaders - 1)
      break;
    bool meshListed = any_of(report.rejectedFaster, [&](const RejectedPlan &r) {
      return r.config.pp == rejected.config.pp &&
             r.config.dp == rejected.config.dp &&
             r.config.tp == rejected.config.tp &&
             r.config.ep == rejected.config.ep &&
             r.config.expertTp == rejected.config.expertTp;
    });
    if (!meshListed)
      report.rejectedFaster.push_back(rejected);
  }
  report.rejections = rejections;
  report.statistics = statistics;

  for (auto [moeLayer, layer] : enumerate(report.best.placements)) {
    auto same = find_if(report.placements, [&](const PlacementSummary &p) {
      return p.placement == layer.placement;
    });
    if (same != report.placements.end()) {
      same->layers.push_back(layer.layer);
      continue;
    }
    PlacementSummary summary;
    summary.layers.push_back(layer.layer);
    summary.placement = layer.placement;
    ArrayRef<double> shares = costModel.expertShares(moeLayer);
    int64_t ranks = layer.placement->numRanks;
    summary.contiguousMaxOverMean =
        placeExpertsContiguous(shares, ranks).maxOverMean();
    summary.roundRobinMaxOverMean =
        placeExpertsRoundRobin(shares, ranks).maxOverMean();
    report.placements.push_back(std::move(summary));
  }
  return report;
}

} // namespace

Expected<PlanReport> moe::plan::searchPlan(CostModel &costModel,
                                           const SearchOptions &options) {
  return Search(costModel, options).run();
}
