//===- PlanBench.cpp - planning time of a DeepSeek-V3-sized model ---------===//
//
// Part of moe-compiler.
//
// Plans a model (DeepSeek-V3 by default) for a machine (32 nodes x 8 H100 by
// default) from scratch several times per expert-load assumption, prints the
// report of the first run and the median wall time, and writes JSON with the
// host, the configuration, the times and the chosen plan. Planning touches
// no weight bytes: the model is a shape description.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/PlanSearch.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Host.h"

#include <algorithm>
#include <chrono>
#include <thread>

using namespace llvm;
using namespace moe::plan;

namespace {

cl::opt<std::string> modelName("model", cl::desc("deepseek-v3 or mixtral-8x7b"),
                               cl::init("deepseek-v3"));
cl::opt<int64_t> batch("batch", cl::desc("sequences per step"), cl::init(256));
cl::opt<int64_t> sequence("sequence", cl::desc("tokens per sequence"),
                          cl::init(4096));
cl::opt<std::string> machineName("machine",
                                 cl::desc("machine preset or JSON file"),
                                 cl::init("32x8xH100"));
cl::list<std::string>
    loads("load", cl::desc("expert load: uniform, zipf:S or a histogram file "
                           "(repeatable; default zipf:1.0 and uniform)"));
cl::opt<std::string> planString("plan", cl::desc("pinned choices"),
                                cl::init(""));
cl::opt<int> repeats("repeats", cl::desc("plans per expert load"), cl::init(5));
cl::opt<double> targetSeconds("target-seconds",
                              cl::desc("planning time to stay under"),
                              cl::init(5.0));
cl::opt<std::string> outputPath("o", cl::desc("JSON result file"),
                                cl::value_desc("file"), cl::init(""));

int fail(const Twine &message) {
  errs() << "moe-plan-bench: " << message << "\n";
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  cl::ParseCommandLineOptions(argc, argv,
                              "Measures how long plan search takes\n");
  ModelDescription model;
  if (modelName == "deepseek-v3")
    model = makeDeepSeekV3(batch, sequence);
  else if (modelName == "mixtral-8x7b")
    model = makeMixtral8x7B(batch, sequence);
  else
    return fail("unknown model '" + modelName +
                "'; use deepseek-v3 or mixtral-8x7b");
  Expected<MachineDescription> machine = resolveMachine(machineName);
  if (!machine)
    return fail(toString(machine.takeError()));
  SearchOptions options;
  Expected<PlanConstraints> pinned = parsePlanString(planString);
  if (!pinned)
    return fail(toString(pinned.takeError()));
  options.pinned = *pinned;
  std::vector<std::string> loadSpecs(loads.begin(), loads.end());
  if (loadSpecs.empty())
    loadSpecs = {"zipf:1.0", "uniform"};
  if (repeats < 1)
    return fail("--repeats must be at least 1");

  json::Array runs;
  bool meetsTarget = true;
  for (const std::string &spec : loadSpecs) {
    Expected<ExpertLoadModel> load = resolveExpertLoad(spec);
    if (!load)
      return fail(toString(load.takeError()));
    std::vector<double> seconds;
    std::optional<PlanReport> firstReport;
    for (int run = 0; run < repeats; ++run) {
      // A fresh cost model every time: no placement survives between runs.
      auto start = std::chrono::steady_clock::now();
      Expected<std::unique_ptr<CostModel>> costModel =
          CostModel::create(model, *machine, *load);
      if (!costModel)
        return fail(toString(costModel.takeError()));
      Expected<PlanReport> report = searchPlan(**costModel, options);
      if (!report)
        return fail(toString(report.takeError()));
      seconds.push_back(std::chrono::duration<double>(
                            std::chrono::steady_clock::now() - start)
                            .count());
      if (!firstReport)
        firstReport = std::move(*report);
    }
    std::vector<double> sorted = seconds;
    std::sort(sorted.begin(), sorted.end());
    double median =
        sorted.size() % 2
            ? sorted[sorted.size() / 2]
            : (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;
    meetsTarget &= median < targetSeconds;
    outs() << formatPlanReport(*firstReport);
    outs() << formatv("\nexpert load {0}: median planning time {1} over {2} "
                      "runs (target {3:F1} s)\n\n",
                      spec, formatSeconds(median), int(repeats),
                      double(targetSeconds));

    json::Value reportJSON = planReportToJSON(*firstReport);
    json::Object *reportObject = reportJSON.getAsObject();
    json::Object run{{"expert_load", spec},
                     {"wall_seconds", json::Array(seconds)},
                     {"median_wall_seconds", median},
                     {"plan", std::move(*reportObject->get("plan"))},
                     {"search", std::move(*reportObject->get("search"))}};
    json::Array placementFigures;
    for (const PlacementSummary &summary : firstReport->placements)
      placementFigures.push_back(json::Object{
          {"layers", json::Array(summary.layers)},
          {"expert_ranks", summary.placement->numRanks},
          {"slots", summary.placement->numSlotsUsed()},
          {"max_over_mean", summary.placement->maxOverMean()},
          {"contiguous_max_over_mean", summary.contiguousMaxOverMean},
          {"round_robin_max_over_mean", summary.roundRobinMaxOverMean}});
    run["placements"] = std::move(placementFigures);
    json::Array runnersUp;
    for (const RunnerUp &runnerUp : firstReport->runnersUp)
      runnersUp.push_back(json::Object{{"plan", runnerUp.plan.config.str()},
                                       {"seconds", runnerUp.plan.seconds()},
                                       {"reason", runnerUp.reason}});
    run["runners_up"] = std::move(runnersUp);
    runs.push_back(std::move(run));
  }

  // The placement acceptance figure for this model's expert count: Zipf(1.0)
  // over 256 experts on 32 expert ranks with 12.5 % extra slots.
  std::vector<double> zipf = zipfShares(256, 1.0);
  ExpertPlacement balanced = placeExpertsBalanced(zipf, 32, 9);
  json::Object placementFigure{
      {"experts", 256},
      {"expert_ranks", 32},
      {"slots", balanced.numSlotsUsed()},
      {"max_over_mean", balanced.maxOverMean()},
      {"contiguous_max_over_mean",
       placeExpertsContiguous(zipf, 32).maxOverMean()},
      {"round_robin_max_over_mean",
       placeExpertsRoundRobin(zipf, 32).maxOverMean()}};
  outs() << formatv("Zipf(1.0), 256 experts on 32 expert ranks: max/mean "
                    "{0:F4} with {1} slots (contiguous {2:F3}, round robin "
                    "{3:F3})\n",
                    balanced.maxOverMean(), balanced.numSlotsUsed(),
                    placeExpertsContiguous(zipf, 32).maxOverMean(),
                    placeExpertsRoundRobin(zipf, 32).maxOverMean());

  if (!outputPath.empty()) {
    json::Object result{
        {"benchmark", "plan search, no weight bytes"},
        {"host", json::Object{{"cpu", sys::getHostCPUName()},
                              {"triple", sys::getProcessTriple()},
                              {"hardware_threads",
                               int64_t(std::thread::hardware_concurrency())}}},
        {"config", json::Object{{"model", model.name},
                                {"parameters", model.numParameters()},
                                {"batch", model.batch},
                                {"sequence", model.sequence},
                                {"machine", toJSON(*machine)},
                                {"devices", machine->numDevices()},
                                {"pinned", options.pinned.str()},
                                {"repeats", int64_t(repeats)}}},
        {"runs", std::move(runs)},
        {"zipf_placement_256_experts_32_ranks", std::move(placementFigure)},
        {"target_seconds", double(targetSeconds)},
        {"meets_target", meetsTarget}};
    std::error_code error;
    raw_fd_ostream file(outputPath, error, sys::fs::OF_Text);
    if (error)
      return fail("cannot write " + outputPath + ": " + error.message());
    file << formatv("{0:2}", json::Value(std::move(result))) << "\n";
  }
  return meetsTarget ? 0 : 2;
}
