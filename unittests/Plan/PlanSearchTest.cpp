//===- PlanSearchTest.cpp - search against brute force, reports -----------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/PlanSearch.h"

#include "gtest/gtest.h"

#include <cmath>
#include <functional>
#include <map>

using namespace llvm;
using namespace moe::plan;

namespace {

template <typename T> std::string errorOf(Expected<T> value) {
  return value ? "" : toString(value.takeError());
}

/// A small MoE model in fp32, as the CPU runtime runs them.
ModelDescription tinyMoE(int64_t experts, int64_t topK, int64_t batch) {
  LayerDescription layer;
  layer.kind = LayerKind::MoE;
  layer.hidden = 256;
  layer.numHeads = 8;
  layer.numKVHeads = 2;
  layer.headDim = 32;
  layer.numExperts = experts;
  layer.topK = topK;
  layer.expertInter = 512;
  ModelDescription model;
  model.name = "tiny-moe";
  model.layers.assign(4, layer);
  model.vocab = 1000;
  model.dtype = DataType::FP32;
  model.batch = batch;
  model.sequence = 128;
  return model;
}

ModelDescription tinyDense() {
  ModelDescription model = tinyMoE(1, 1, 8);
  model.name = "tiny-dense";
  for (LayerDescription &layer : model.layers) {
    layer.kind = LayerKind::Dense;
    layer.denseInter = 1024;
  }
  return model;
}

/// Two dense layers, then six MoE layers of 10 experts (a count no power
/// of two divides), top-3, non-gated.
ModelDescription mixedModel() {
  ModelDescription model = tinyMoE(10, 3, 12);
  model.name = "mixed";
  for (LayerDescription &layer : model.layers)
    layer.gatedMLP = false;
  LayerDescription dense = model.layers.front();
  dense.kind = LayerKind::Dense;
  dense.denseInter = 2048;
  model.layers.insert(model.layers.begin(), 2, dense);
  model.layers.insert(model.layers.end(), 2, model.layers.back());
  return model;
}

/// Qwen1.5-MoE-A2.7B-like: 60 experts of 1408, top-4, a shared expert of
/// 5632.
ModelDescription sharedExpertModel(int64_t batch) {
  LayerDescription layer;
  layer.kind = LayerKind::MoE;
  layer.hidden = 2048;
  layer.numHeads = 16;
  layer.numKVHeads = 16;
  layer.headDim = 128;
  layer.numExperts = 60;
  layer.topK = 4;
  layer.expertInter = 1408;
  layer.numSharedExperts = 1;
  layer.sharedExpertInter = 5632;
  ModelDescription model;
  model.name = "shared-expert-moe";
  model.layers.assign(24, layer);
  model.vocab = 151936;
  model.batch = batch;
  model.sequence = 1024;
  return model;
}

MachineDescription machineFrom(StringRef spec) {
  Expected<MachineDescription> machine =
      spec.starts_with("{") ? parseMachineDescription(spec, "test.json")
                            : getMachinePreset(spec);
  EXPECT_TRUE(!!machine) << errorOf(std::move(machine));
  return machine ? *machine : MachineDescription();
}

std::unique_ptr<CostModel>
makeCostModel(ModelDescription model, StringRef machine, StringRef loadSpec) {
  Expected<ExpertLoadModel> load = resolveExpertLoad(loadSpec);
  EXPECT_TRUE(!!load);
  Expected<std::unique_ptr<CostModel>> costModel =
      CostModel::create(std::move(model), machineFrom(machine), *load);
  EXPECT_TRUE(!!costModel) << errorOf(std::move(costModel));
  return costModel ? std::move(*costModel) : nullptr;
}

//===----------------------------------------------------------------------===//
// Brute force
//===----------------------------------------------------------------------===//

/// Every configuration of the documented space, priced without any pruning:
/// each factorisation, each etp up to tp, each micro-batch count up to the
/// limit, each extra slot count up to one past the budget. Keeps the best
/// plan of every mesh.
struct BruteForce {
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>, Plan>
      bestOfMesh;
  int64_t evaluations = 0;

  BruteForce(CostModel &costModel, int64_t maxMicrobatches) {
    int64_t devices = costModel.machine().numDevices();
    for (int64_t pp = 1; pp <= devices; ++pp) {
      if (devices % pp)
        continue;
      for (int64_t dp = 1; dp <= devices / pp; ++dp) {
        if ((devices / pp) % dp)
          continue;
        for (int64_t tp = 1; tp <= devices / pp / dp; ++tp) {
          if ((devices / pp / dp) % tp)
            continue;
          int64_t ep = devices / pp / dp / tp;
          for (int64_t etp = 1; etp <= tp; ++etp)
            searchMesh(costModel, maxMicrobatches, pp, dp, tp, ep, etp);
        }
      }
    }
  }

  void searchMesh(CostModel &costModel, int64_t maxMicrobatches, int64_t pp,
                  int64_t dp, int64_t tp, int64_t ep, int64_t etp) {
    int64_t slotLimit =
        tp % etp ? 0 : costModel.maxExtraExpertSlots(ep * tp / etp) + 1;
    for (int64_t microbatches = 1; microbatches <= maxMicrobatches;
         ++microbatches) {
      for (int64_t extra = 0; extra <= slotLimit; ++extra) {
        ParallelConfig config;
        config.pp = pp;
        config.dp = dp;
        config.tp = tp;
        config.ep = ep;
        config.expertTp = etp;
        config.microbatches = microbatches;
        config.extraExpertSlots = extra;
        Evaluation evaluation = costModel.evaluate(config);
        ++evaluations;
        if (!evaluation.feasible())
          continue;
        const Plan &plan = *evaluation.plan;
        // The search's pruning is only sound if the bound is (up to
        // rounding, which the search's margin covers).
        EXPECT_LE(costModel.lowerBoundSeconds(config),
                  plan.seconds() * (1 + 1e-12))
            << config.str();
        auto key = std::make_tuple(pp, dp, tp, ep, etp);
        auto it = bestOfMesh.find(key);
        if (it == bestOfMesh.end())
          bestOfMesh.emplace(key, plan);
        else if (planBefore(plan, it->second))
          it->second = plan;
      }
    }
  }

  std::vector<Plan> ranked() const {
    std::vector<Plan> plans;
    for (const auto &entry : bestOfMesh)
      plans.push_back(entry.second);
    std::sort(plans.begin(), plans.end(), planBefore);
    return plans;
  }
};

struct SearchCase {
  const char *name;
  std::function<ModelDescription()> model;
  const char *machine;
  const char *load;
};

void PrintTo(const SearchCase &searchCase, std::ostream *os) {
  *os << searchCase.name;
}

class BruteForceTest : public ::testing::TestWithParam<SearchCase> {};

TEST_P(BruteForceTest, SearchFindsTheBruteForceOptimum) {
  const SearchCase &searchCase = GetParam();
  std::unique_ptr<CostModel> costModel =
      makeCostModel(searchCase.model(), searchCase.machine, searchCase.load);
  ASSERT_TRUE(costModel);
  SearchOptions options;
  Expected<PlanReport> report = searchPlan(*costModel, options);
  BruteForce brute(*costModel, options.maxMicrobatches);
  std::vector<Plan> ranked = brute.ranked();
  if (ranked.empty()) {
    EXPECT_FALSE(!!report) << "brute force finds no feasible plan";
    consumeError(report.takeError());
    return;
  }
  ASSERT_TRUE(!!report) << errorOf(std::move(report));
  EXPECT_EQ(report->best.config.str(), ranked.front().config.str());
  EXPECT_EQ(report->best.seconds(), ranked.front().seconds());
  // Runners-up are the next meshes in brute-force order.
  size_t expectedRunnersUp =
      std::min<size_t>(options.numRunnersUp, ranked.size() - 1);
  ASSERT_EQ(report->runnersUp.size(), expectedRunnersUp);
  for (size_t index = 0; index < expectedRunnersUp; ++index)
    EXPECT_EQ(report->runnersUp[index].plan.config.str(),
              ranked[index + 1].config.str());
  EXPECT_LT(report->statistics.evaluations, brute.evaluations);
}

ModelDescription mixtral() { return makeMixtral8x7B(16, 2048); }
ModelDescription deepSeekSmallBatch() { return makeDeepSeekV3(64, 1024); }
ModelDescription deepSeekLarge() { return makeDeepSeekV3(256, 1024); }

// 3 nodes of 4 H100 each: a device count with a factor of 3 and node
// boundaries that groups of 8 straddle.
constexpr const char *kThreeNodes =
    R"({"base": "2x8xH100", "nodes": 3, "devices_per_node": 4})";
// CPU ranks with little memory, so that tiny models must split.
constexpr const char *kSmallCPUs =
    R"({"base": "cpu:4", "memory_per_device_gb": 0.04})";

const SearchCase kCases[] = {
    {"MixtralOn8xH200Uniform", mixtral, "8xH200", "uniform"},
    {"MixtralOn8xH200Zipf", mixtral, "8xH200", "zipf:1.0"},
    {"MixtralOn2x8xH100Uniform", mixtral, "2x8xH100", "uniform"},
    {"MixtralOn2x8xH100Zipf", mixtral, "2x8xH100", "zipf:1.2"},
    {"MixtralOn4xL40SUniform", mixtral, "4xL40S", "uniform"},
    {"MixtralOn4xL40SZipf", mixtral, "4xL40S", "zipf:1.0"},
    {"MixtralOn3x4xH100Zipf", mixtral, kThreeNodes, "zipf:1.0"},
    {"DeepSeekV3On2x8xH200Zipf", deepSeekSmallBatch, "2x8xH200", "zipf:1.0"},
    {"DeepSeekV3On2x8xH100NothingFits", deepSeekSmallBatch, "2x8xH100",
     "uniform"},
    {"DeepSeekV3On32x8xH100Zipf", deepSeekLarge, "32x8xH100", "zipf:1.0"},
    {"TinyMoEOnCPU4Uniform", [] { return tinyMoE(6, 2, 8); }, "cpu:4",
     "uniform"},
    {"TinyMoEOnCPU4Zipf", [] { return tinyMoE(6, 2, 8); }, "cpu:4", "zipf:1.0"},
    {"TinyMoEOnCPU6Zipf", [] { return tinyMoE(6, 2, 12); }, "cpu:6",
     "zipf:1.0"},
    {"TinyMoEOnCPU3Uniform", [] { return tinyMoE(8, 2, 6); }, "cpu:3",
     "uniform"},
    {"TinyMoEOnCPU8Zipf", [] { return tinyMoE(16, 4, 16); }, "cpu:8",
     "zipf:0.8"},
    {"TinyMoEOnCPU5Zipf", [] { return tinyMoE(16, 2, 10); }, "cpu:5",
     "zipf:1.0"},
    {"TinyMoEOnSmallCPUs", [] { return tinyMoE(16, 2, 8); }, kSmallCPUs,
     "zipf:1.0"},
    {"TinyDenseOnCPU4", tinyDense, "cpu:4", "uniform"},
    {"TinyDenseOn8xH200", tinyDense, "8xH200", "uniform"},
    {"SharedExpertOn8xH200Zipf", [] { return sharedExpertModel(32); }, "8xH200",
     "zipf:1.0"},
    {"SharedExpertOn2x8xH100Uniform", [] { return sharedExpertModel(32); },
     "2x8xH100", "uniform"},
    {"SharedExpertOn4xL40SZipf", [] { return sharedExpertModel(16); }, "4xL40S",
     "zipf:1.0"},
    {"MixedOnCPU8Zipf", mixedModel, "cpu:8", "zipf:1.0"},
    {"MixedOn2x8xH100Uniform", mixedModel, "2x8xH100", "uniform"},
};

INSTANTIATE_TEST_SUITE_P(ModelsAndMachines, BruteForceTest,
                         ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<SearchCase> &info) {
                           return std::string(info.param.name);
                         });

//===----------------------------------------------------------------------===//
// Plan strings, pinning, reports
//===----------------------------------------------------------------------===//

TEST(PlanStringTest, ParsesEveryKey) {
  Expected<PlanConstraints> constraints = parsePlanString(
      "ep=8 tp=2  pp=2 dp=1 microbatches=4 etp=2 extra_slots=0");
  ASSERT_TRUE(!!constraints) << errorOf(std::move(constraints));
  EXPECT_EQ(constraints->ep, 8);
  EXPECT_EQ(constraints->tp, 2);
  EXPECT_EQ(constraints->pp, 2);
  EXPECT_EQ(constraints->dp, 1);
  EXPECT_EQ(constraints->microbatches, 4);
  EXPECT_EQ(constraints->expertTp, 2);
  EXPECT_EQ(constraints->extraExpertSlots, 0);
  EXPECT_EQ(constraints->str(),
            "pp=2 dp=1 tp=2 ep=8 etp=2 microbatches=4 extra_slots=0");

  Expected<PlanConstraints> stages = parsePlanString("stages=20,20,21");
  ASSERT_TRUE(!!stages);
  EXPECT_EQ(stages->pp, 3);
  EXPECT_EQ(stages->stageLayers, (std::vector<int64_t>{20, 20, 21}));
  Expected<PlanConstraints> none = parsePlanString("  ");
  ASSERT_TRUE(!!none);
  EXPECT_TRUE(none->empty());
}

TEST(PlanStringTest, ErrorsQuoteTheStringAndNameTheKey) {
  struct Case {
    const char *text;
    const char *expected;
  };
  const Case cases[] = {
      {"ep=8 qp=2", "plan string 'ep=8 qp=2': unknown key 'qp'"},
      {"tp", "plan string 'tp': 'tp' is not key=value"},
      {"tp=0", "plan string 'tp=0': 'tp' needs an integer >= 1, got '0'"},
      {"tp=two", "'tp' needs an integer >= 1, got 'two'"},
      {"extra_slots=-1", "'extra_slots' needs an integer >= 0"},
      {"ep=2 ep=4", "'ep' given twice"},
      {"pp=2 stages=10,10,12", "pp=2 but 'stages' lists 3 stages"},
      {"stages=10,,12", "'stages' needs positive layer counts"},
  };
  for (const Case &c : cases) {
    std::string message = errorOf(parsePlanString(c.text));
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "text: " << c.text << "\nmessage: " << message;
  }
}

TEST(PlanSearchTest, PinnedChoicesAreHonoured) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(mixtral(), "8xH200", "zipf:1.0");
  SearchOptions options;
  options.pinned = *parsePlanString("ep=8 tp=1 pp=1");
  Expected<PlanReport> report = searchPlan(*costModel, options);
  ASSERT_TRUE(!!report) << errorOf(std::move(report));
  EXPECT_EQ(report->best.config.ep, 8);
  EXPECT_EQ(report->best.config.dp, 1);
  EXPECT_EQ(report->best.config.pp, 1);
  EXPECT_NE(formatPlanReport(*report).find("pinned: pp=1 tp=1 ep=8"),
            std::string::npos);

  options.pinned = *parsePlanString("stages=4,28 microbatches=4 tp=1 dp=1");
  report = searchPlan(*costModel, options);
  ASSERT_TRUE(!!report) << errorOf(std::move(report));
  EXPECT_EQ(report->best.config.pp, 2);
  EXPECT_EQ(report->best.config.ep, 4);
  EXPECT_EQ(report->best.stages[0].numLayers, 4);
  EXPECT_EQ(report->best.config.microbatches, 4);
}

TEST(PlanSearchTest, ImpossiblePinsSayWhy) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(mixtral(), "8xH200", "uniform");
  SearchOptions options;
  options.pinned = *parsePlanString("tp=3");
  EXPECT_EQ(errorOf(searchPlan(*costModel, options)),
            "no plan for model 'mixtral-8x7b' on machine '8xH200' with "
            "'tp=3': no mesh of the 8 devices matches");

  options.pinned = *parsePlanString("tp=8 microbatches=100");
  std::string message = errorOf(searchPlan(*costModel, options));
  EXPECT_NE(message.find("microbatches=100 exceed the 16 sequences per data "
                         "shard"),
            std::string::npos)
      << message;
}

TEST(PlanSearchTest, NothingFittingNamesTheSmallestNeed) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(deepSeekSmallBatch(), "8xH100", "uniform");
  std::string message = errorOf(searchPlan(*costModel));
  EXPECT_NE(message.find("no plan for model 'deepseek-v3' on machine "
                         "'8xH100'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("the smallest memory need is "), std::string::npos)
      << message;
  EXPECT_NE(message.find("the devices have 80.0 GB"), std::string::npos)
      << message;
}

TEST(PlanSearchTest, ReportShowsPlanPlacementAndRunnersUp) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(mixtral(), "2x8xH100", "zipf:1.0");
  Expected<PlanReport> report = searchPlan(*costModel);
  ASSERT_TRUE(!!report) << errorOf(std::move(report));
  std::string text = formatPlanReport(*report);
  for (StringRef expected :
       {"Plan for mixtral-8x7b on 2x8xH100", "Chosen: pp=", "step time",
        "all-to-all", "pipeline bubble", "memory per device",
        "Expert placement", "max/mean rank load", "contiguous", "round robin",
        "expert->expert ranks:", "Runners-up", "Search: "})
    EXPECT_NE(text.find(expected.str()), std::string::npos)
        << "missing '" << expected.str() << "' in\n"
        << text;
  ASSERT_FALSE(report->runnersUp.empty());
  for (const RunnerUp &runnerUp : report->runnersUp)
    EXPECT_TRUE(StringRef(runnerUp.reason).starts_with("slower: ") ||
                StringRef(runnerUp.reason).starts_with("as fast"))
        << runnerUp.reason;
  ASSERT_FALSE(report->placements.empty());
  const PlacementSummary &placement = report->placements.front();
  EXPECT_EQ(placement.layers.size(), 32u);
  EXPECT_LE(placement.placement->maxOverMean(),
            placement.roundRobinMaxOverMean);

  json::Value value = planReportToJSON(*report);
  const json::Object *object = value.getAsObject();
  ASSERT_TRUE(object);
  const json::Object *config = object->getObject("plan")->getObject("config");
  EXPECT_EQ(config->getInteger("ep"), report->best.config.ep);
  EXPECT_EQ(object->getArray("runners_up")->size(), report->runnersUp.size());
  const json::Object *first =
      object->getArray("placements")->front().getAsObject();
  EXPECT_EQ(first->getArray("ranks_of_expert")->size(), 8u);
  EXPECT_TRUE(first->getNumber("contiguous_max_over_mean").has_value());
}

// The placement acceptance through the whole pipeline: a Zipf(1.0)
// histogram as moe-run --expert-load writes it (two ranks, every MoE layer),
// DeepSeek-V3 with 32 expert ranks and 12.5 % extra slots.
TEST(PlanSearchTest, ZipfHistogramOn32ExpertRanksIsBalancedInTheReport) {
  std::vector<double> shares = zipfShares(256, 1.0);
  std::string lines;
  for (int layer = 0; layer < 58; ++layer) {
    for (int rank = 0; rank < 2; ++rank) {
      std::string counts;
      for (double share : shares)
        counts += (counts.empty() ? "" : ", ") +
                  std::to_string(int64_t(std::llround(share * 131072)));
      lines += "{\"layer\": " + std::to_string(layer) +
               ", \"rank\": " + std::to_string(rank) +
               ", \"tokens_per_expert\": [" + counts + "]}\n";
    }
  }
  Expected<ExpertLoadModel> load =
      parseExpertLoadHistogram(lines, "zipf.jsonl");
  ASSERT_TRUE(!!load) << errorOf(std::move(load));
  Expected<std::unique_ptr<CostModel>> costModel =
      CostModel::create(deepSeekLarge(), machineFrom("32x8xH100"), *load);
  ASSERT_TRUE(!!costModel) << errorOf(std::move(costModel));
  SearchOptions options;
  options.pinned = *parsePlanString("ep=32 tp=1 extra_slots=1");
  Expected<PlanReport> report = searchPlan(**costModel, options);
  ASSERT_TRUE(!!report) << errorOf(std::move(report));

  // Every layer has the same counts, so one placement serves all 58.
  ASSERT_EQ(report->placements.size(), 1u);
  const PlacementSummary &summary = report->placements.front();
  EXPECT_EQ(summary.layers.size(), 58u);
  EXPECT_EQ(summary.placement->numRanks, 32);
  EXPECT_LE(summary.placement->numSlotsUsed(), 288);
  EXPECT_LE(summary.placement->maxOverMean(), 1.05);
  EXPECT_NEAR(summary.contiguousMaxOverMean, 14.2, 0.05);
  EXPECT_NEAR(summary.roundRobinMaxOverMean, 5.64, 0.05);
  std::string text = formatPlanReport(*report);
  EXPECT_NE(text.find("(load-blind placements: contiguous 14.2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("288 slots for 256 experts"), std::string::npos) << text;
  EXPECT_NE(text.find("expert load: histogram zipf.jsonl"), std::string::npos);
}

TEST(PlanSearchTest, ResultsAreDeterministic) {
  auto plan = [] {
    std::unique_ptr<CostModel> costModel =
        makeCostModel(deepSeekSmallBatch(), "2x8xH200", "zipf:1.0");
    Expected<PlanReport> report = searchPlan(*costModel);
    EXPECT_TRUE(!!report);
    json::Value value = planReportToJSON(*report);
    value.getAsObject()->getObject("search")->erase("seconds");
    std::string text;
    raw_string_ostream(text) << value;
    return text;
  };
  EXPECT_EQ(plan(), plan());
}

} // namespace
