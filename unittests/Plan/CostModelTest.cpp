//===- CostModelTest.cpp - formulas, memory and rejections ----------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/CostModel.h"

#include "gtest/gtest.h"

#include <cmath>

using namespace llvm;
using namespace moe::plan;

namespace {

MachineDescription preset(StringRef name) {
  Expected<MachineDescription> machine = getMachinePreset(name);
  EXPECT_TRUE(!!machine);
  return machine ? *machine : MachineDescription();
}

std::unique_ptr<CostModel> makeCostModel(ModelDescription model,
                                         MachineDescription machine,
                                         ExpertLoadModel load = {}) {
  Expected<std::unique_ptr<CostModel>> costModel =
      CostModel::create(std::move(model), std::move(machine), load);
  EXPECT_TRUE(!!costModel) << toString(costModel.takeError());
  return costModel ? std::move(*costModel) : nullptr;
}

ParallelConfig config(int64_t pp, int64_t dp, int64_t tp, int64_t ep,
                      int64_t expertTp = 1, int64_t microbatches = 1,
                      int64_t extraSlots = 0) {
  ParallelConfig result;
  result.pp = pp;
  result.dp = dp;
  result.tp = tp;
  result.ep = ep;
  result.expertTp = expertTp;
  result.microbatches = microbatches;
  result.extraExpertSlots = extraSlots;
  return result;
}

/// One MoE layer model, for exact all-to-all checks.
ModelDescription oneMoELayer(int64_t experts, int64_t topK) {
  LayerDescription layer;
  layer.kind = LayerKind::MoE;
  layer.hidden = 1024;
  layer.numHeads = 8;
  layer.numKVHeads = 8;
  layer.headDim = 128;
  layer.numExperts = experts;
  layer.topK = topK;
  layer.expertInter = 2048;
  ModelDescription model;
  model.name = "one-layer";
  model.layers = {layer};
  model.vocab = 1000;
  model.batch = 32;
  model.sequence = 256;
  return model;
}

constexpr double kRelative = 1e-12;

TEST(CollectiveFormulaTest, PointToPointIsLatencyPlusBandwidth) {
  LinkSpec link = {50e9, 14e-6};
  EXPECT_NEAR(pointToPointSeconds(1e9, link), 14e-6 + 0.02, 1e-15);
}

TEST(CollectiveFormulaTest, RingAndTreeInsideAndAcrossNodes) {
  MachineDescription machine = preset("4x8xH100");
  double n = 8e9;
  GroupSpan node = groupSpan(machine, 0, 1, 8);
  EXPECT_EQ(node.numNodes, 1);
  // p - 1 = 7 steps of n / p over NVLink.
  double allGather = 7 * 3.4e-6 + 7.0 / 8 * n / 450e9;
  EXPECT_NEAR(ringAllGatherSeconds(n, node, machine), allGather,
              allGather * kRelative);
  EXPECT_NEAR(ringReduceScatterSeconds(n, node, machine), allGather,
              allGather * kRelative);
  EXPECT_NEAR(ringAllReduceSeconds(n, node, machine), 2 * allGather,
              2 * allGather * kRelative);
  // Inside a node the tree is a chain: the same latency, twice the bytes,
  // so the ring wins.
  double tree = 2 * 7 * 3.4e-6 + 2 * n / 450e9;
  EXPECT_NEAR(treeAllReduceSeconds(n, node, machine), tree, tree * kRelative);
  EXPECT_NEAR(allReduceSeconds(n, node, machine), 2 * allGather,
              2 * allGather * kRelative);

  // 16 ranks over 2 nodes: 2 of the 2 (p - 1) steps cross the network.
  GroupSpan twoNodes = groupSpan(machine, 0, 1, 16);
  EXPECT_EQ(twoNodes.numNodes, 2);
  double ring = 2 * 14 * 3.4e-6 + 2 * 14e-6 + 2 * 15.0 / 16 * n / 50e9;
  EXPECT_NEAR(ringAllReduceSeconds(n, twoNodes, machine), ring,
              ring * kRelative);

  // 32 ranks over 4 nodes, small message: the tree's log2(4) = 2 network
  // hops beat the ring's 2 x 31 steps.
  GroupSpan fourNodes = groupSpan(machine, 0, 1, 32);
  EXPECT_EQ(fourNodes.numNodes, 4);
  double small = 1024;
  double treeSmall = 2 * (7 * 3.4e-6 + 2 * 14e-6) + 2 * small / 50e9;
  EXPECT_NEAR(treeAllReduceSeconds(small, fourNodes, machine), treeSmall,
              treeSmall * kRelative);
  EXPECT_LT(treeSmall, ringAllReduceSeconds(small, fourNodes, machine));
  EXPECT_NEAR(allReduceSeconds(small, fourNodes, machine), treeSmall,
              treeSmall * kRelative);

  EXPECT_EQ(groupSpan(machine, 6, 1, 4).numNodes, 2);
  EXPECT_EQ(groupSpan(machine, 0, 8, 4).numNodes, 4);
  EXPECT_EQ(ringAllReduceSeconds(n, GroupSpan{1, 1}, machine), 0);
}

TEST(CollectiveFormulaTest, RaggedAllToAllCountsPartnersAndBusiestLinks) {
  MachineDescription machine = preset("2x8xH100");
  // Four peers in one node, each sending 1 GB to every other: 3 partners,
  // 3 GB out and in over NVLink.
  std::vector<double> bytes(16, 1e9);
  double expected = 3 * 3.4e-6 + 3e9 / 450e9;
  EXPECT_NEAR(raggedAllToAllSeconds(bytes, {0, 1, 2, 3}, machine), expected,
              expected * kRelative);
  // Two peers per node: one intra and two inter partners each; the network
  // carries 2 GB per peer and dominates.
  expected = 3.4e-6 + 2 * 14e-6 + 2e9 / 50e9;
  EXPECT_NEAR(raggedAllToAllSeconds(bytes, {0, 1, 8, 9}, machine), expected,
              expected * kRelative);
  // Ragged: peer 3 receives everything, so its receive side is the busiest.
  std::vector<double> skewed(16, 0.0);
  for (int source = 0; source < 3; ++source)
    skewed[source * 4 + 3] = 2e9;
  expected = 3 * 3.4e-6 + 6e9 / 450e9;
  EXPECT_NEAR(raggedAllToAllSeconds(skewed, {0, 1, 2, 3}, machine), expected,
              expected * kRelative);
}

TEST(RooflineTest, TakesTheSlowerOfArithmeticAndTraffic) {
  MachineDescription machine = preset("8xH100");
  EXPECT_DOUBLE_EQ(rooflineSeconds({989e12, 1.0}, DataType::BF16, machine),
                   1.0);
  EXPECT_DOUBLE_EQ(rooflineSeconds({1.0, 3.35e12}, DataType::BF16, machine),
                   1.0);
  EXPECT_DOUBLE_EQ(rooflineSeconds({67e12, 0}, DataType::FP32, machine), 1.0);
}

TEST(CostModelTest, CreateRejectsModelsTheMachineCannotRun) {
  ModelDescription model = makeMixtral8x7B(8, 128);
  model.dtype = DataType::FP8;
  Expected<MachineDescription> machine = parseMachineDescription(
      R"({"base": "8xH100", "peak_tflops": {"fp8": 0}})", "no-fp8.json");
  ASSERT_TRUE(!!machine);
  Expected<std::unique_ptr<CostModel>> costModel =
      CostModel::create(model, *machine, ExpertLoadModel::uniform());
  ASSERT_FALSE(!!costModel);
  EXPECT_EQ(toString(costModel.takeError()),
            "machine 'no-fp8' gives no peak FLOP/s for fp8, the element type "
            "of model 'mixtral-8x7b'");

  model.layers[0].topK = 0;
  costModel =
      CostModel::create(model, preset("8xH100"), ExpertLoadModel::uniform());
  ASSERT_FALSE(!!costModel);
  EXPECT_NE(toString(costModel.takeError()).find("layer 0: top_k"),
            std::string::npos);
}

TEST(CostModelTest, ChecksSayWhyAConfigurationCannotWork) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(makeMixtral8x7B(8, 128), preset("8xH200"));
  ASSERT_TRUE(costModel);
  struct Case {
    ParallelConfig config;
    Rejection rejection;
    const char *reason;
  };
  const Case cases[] = {
      {config(1, 1, 1, 4), Rejection::Shape,
       "uses 4 devices, the machine has 8"},
      {config(1, 1, 8, 1, 3), Rejection::Shape, "etp=3 does not divide tp=8"},
      {config(1, 1, 8, 1, 8), Rejection::None, ""},
      {config(1, 8, 1, 1, 1, 2), Rejection::Batch,
       "microbatches=2 exceed the 1 sequences per data shard"},
      {config(1, 1, 1, 8, 1, 1, 1), Rejection::ExpertSlots,
       "extra_slots=1 exceeds the replication budget (12.5% more slots than "
       "experts allows 0 per expert rank)"},
  };
  for (const Case &c : cases) {
    auto [rejection, reason] = costModel->checkConfig(c.config);
    EXPECT_EQ(rejection, c.rejection) << c.config.str();
    EXPECT_EQ(reason, c.reason);
  }

  std::unique_ptr<CostModel> small =
      makeCostModel(makeMixtral8x7B(4, 128), preset("cpu:64"));
  EXPECT_EQ(small->checkConfig(config(64, 1, 1, 1)).second,
            "pp=64 exceeds the 32 layers");
  EXPECT_EQ(small->checkConfig(config(1, 1, 64, 1)).second,
            "heads 32 of layer 0 not divisible by tp=64");
  ModelDescription grouped = makeMixtral8x7B(4, 128);
  for (LayerDescription &layer : grouped.layers) {
    layer.numHeads = 24;
    layer.numKVHeads = 6;
  }
  std::unique_ptr<CostModel> groupedModel =
      makeCostModel(grouped, preset("cpu:4"));
  EXPECT_EQ(groupedModel->checkConfig(config(1, 1, 4, 1)).second,
            "kv heads 6 of layer 0 neither divide nor are divisible by tp=4");
  EXPECT_EQ(small->checkConfig(config(8, 8, 1, 1)).second,
            "batch 4 has fewer sequences than the dp x ep = 8 data shards");
}

TEST(CostModelTest, MemoryMatchesParameterCountOnOneDevice) {
  ModelDescription model = makeMixtral8x7B(2, 512);
  Expected<MachineDescription> machine = parseMachineDescription(
      R"({"base": "8xH200", "devices_per_node": 1, "memory_per_device_gb": 1000})",
      "big.json");
  ASSERT_TRUE(!!machine);
  std::unique_ptr<CostModel> costModel = makeCostModel(model, *machine);
  Evaluation evaluation = costModel->evaluate(config(1, 1, 1, 1));
  ASSERT_TRUE(evaluation.feasible()) << evaluation.reason;
  EXPECT_DOUBLE_EQ(evaluation.plan->memory.weights, model.numParameters() * 2);
  // Keys and values of 8 heads of 128 for 2 x 512 tokens in 32 layers.
  EXPECT_DOUBLE_EQ(evaluation.plan->memory.kvCache,
                   32.0 * 2 * 512 * 2 * 8 * 128 * 2);
  EXPECT_DOUBLE_EQ(evaluation.plan->memory.activations,
                   4.0 * 2 * 512 * 4096 * 2);
}

TEST(CostModelTest, TensorParallelismSplitsWeightsAndAddsAllReduces) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(makeMixtral8x7B(8, 512), preset("8xH200"));
  Evaluation whole = costModel->evaluate(config(1, 8, 1, 1));
  Evaluation split = costModel->evaluate(config(1, 1, 8, 1, 8));
  ASSERT_TRUE(whole.feasible() && split.feasible());
  EXPECT_EQ(whole.plan->time.tensorParallel, 0);
  EXPECT_GT(split.plan->time.tensorParallel, 0);
  // Everything but norms and routers splits 8 ways; the 8 key/value heads
  // split exactly.
  EXPECT_NEAR(split.plan->memory.weights * 8, whole.plan->memory.weights,
              whole.plan->memory.weights * 1e-3);
}

TEST(CostModelTest, AllToAllFollowsThePlacement) {
  // One MoE layer on 2 x 8 H100 with ep = 16: the model's all-to-all is the
  // general ragged formula on the matrix the placement implies, dispatch
  // and combine.
  ModelDescription model = oneMoELayer(64, 4);
  MachineDescription machine = preset("2x8xH100");
  for (ExpertLoadModel load :
       {ExpertLoadModel::uniform(), ExpertLoadModel::zipf(1.2)}) {
    std::unique_ptr<CostModel> costModel = makeCostModel(model, machine, load);
    ParallelConfig chosen = config(1, 1, 1, 16);
    Evaluation evaluation = costModel->evaluate(chosen);
    ASSERT_TRUE(evaluation.feasible()) << evaluation.reason;
    std::shared_ptr<const ExpertPlacement> placement =
        evaluation.plan->placements.front().placement;
    // 32 sequences over 16 shards of 256 tokens, top-4, 1024 hidden, bf16.
    double dispatched = 2.0 * 256 * 4 * 1024 * 2;
    std::vector<double> bytes(16 * 16);
    std::vector<int64_t> ranks;
    for (int64_t source = 0; source < 16; ++source) {
      ranks.push_back(source);
      for (int64_t target = 0; target < 16; ++target)
        bytes[source * 16 + target] = dispatched * placement->rankLoad[target];
    }
    double expected = 2 * raggedAllToAllSeconds(bytes, ranks, machine);
    EXPECT_NEAR(evaluation.plan->time.allToAll, expected, expected * 1e-9);
  }
}

TEST(CostModelTest, ExtraSlotsRemoveExpertImbalance) {
  ModelDescription model = oneMoELayer(64, 4);
  std::unique_ptr<CostModel> costModel =
      makeCostModel(model, preset("8xH100"), ExpertLoadModel::zipf(1.0));
  Evaluation plain = costModel->evaluate(config(1, 1, 1, 8));
  Evaluation replicated = costModel->evaluate(config(1, 1, 1, 8, 1, 1, 1));
  ASSERT_TRUE(plain.feasible() && replicated.feasible());
  EXPECT_GT(plain.plan->imbalanceSeconds, 0);
  EXPECT_LT(replicated.plan->imbalanceSeconds,
            plain.plan->imbalanceSeconds / 4);
  EXPECT_GT(replicated.plan->memory.weights, plain.plan->memory.weights);
  EXPECT_LT(replicated.plan->placements.front().placement->maxOverMean(),
            plain.plan->placements.front().placement->maxOverMean());
}

TEST(CostModelTest, PipelineStepIsSlowestStageTimesMicrobatchesPlusFill) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(makeMixtral8x7B(16, 512), preset("4xL40S"));
  Evaluation evaluation = costModel->evaluate(config(4, 1, 1, 1, 1, 8));
  ASSERT_TRUE(evaluation.feasible()) << evaluation.reason;
  const Plan &plan = *evaluation.plan;
  ASSERT_EQ(plan.stages.size(), 4u);
  double slowest = 0, sum = 0;
  int64_t layers = 0;
  for (const StagePlan &stage : plan.stages) {
    slowest = std::max(slowest, stage.seconds());
    sum += stage.seconds();
    EXPECT_EQ(stage.firstLayer, layers);
    layers += stage.numLayers;
    EXPECT_LE(stage.memory.total(), 48e9);
  }
  EXPECT_EQ(layers, 32);
  EXPECT_NEAR(plan.seconds(), 8 * slowest + sum - slowest,
              plan.seconds() * kRelative);
  EXPECT_NEAR(plan.time.bubble, sum - slowest, sum * kRelative);
  // Every stage but the last sends its activations on.
  EXPECT_GT(plan.stages[0].perMicrobatch.pointToPoint, 0);
  EXPECT_EQ(plan.stages[3].perMicrobatch.pointToPoint, 0);

  Evaluation single = costModel->evaluate(config(4, 1, 1, 1, 1, 1));
  ASSERT_TRUE(single.feasible());
  // One micro-batch: the stages run one after another.
  double inTurn = 0;
  for (const StagePlan &stage : single.plan->stages)
    inTurn += stage.seconds();
  EXPECT_NEAR(single.plan->seconds(), inTurn, inTurn * kRelative);
}

TEST(CostModelTest, StagesCanBePinnedAndMustAddUp) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(makeMixtral8x7B(16, 512), preset("4xL40S"));
  Evaluation pinned =
      costModel->evaluate(config(4, 1, 1, 1, 1, 8), {5, 9, 9, 9});
  ASSERT_TRUE(pinned.feasible()) << pinned.reason;
  EXPECT_EQ(pinned.plan->stages[0].numLayers, 5);
  EXPECT_EQ(pinned.plan->stages[3].firstLayer, 23);
  Evaluation balanced = costModel->evaluate(config(4, 1, 1, 1, 1, 8));
  EXPECT_GT(pinned.plan->seconds(), balanced.plan->seconds());

  Evaluation wrong = costModel->evaluate(config(4, 1, 1, 1, 1, 8), {8, 8, 8});
  EXPECT_EQ(wrong.rejection, Rejection::Shape);
  EXPECT_EQ(wrong.reason, "stages=8,8,8 must give pp=4 positive layer counts "
                          "summing to the 32 layers");
}

TEST(CostModelTest, TooLargeConfigurationsSayByHowMuch) {
  std::unique_ptr<CostModel> costModel =
      makeCostModel(makeDeepSeekV3(64, 1024), preset("2x8xH100"));
  Evaluation evaluation = costModel->evaluate(config(1, 1, 1, 16, 1, 1));
  EXPECT_EQ(evaluation.rejection, Rejection::Memory);
  ASSERT_TRUE(evaluation.plan.has_value());
  EXPECT_GT(evaluation.plan->memory.total(), 80e9);
  EXPECT_EQ(evaluation.reason.rfind("does not fit: ", 0), 0u)
      << evaluation.reason;
  EXPECT_NE(evaluation.reason.find("> 80.0 GB per device (stage 0: weights "),
            std::string::npos)
      << evaluation.reason;
}

TEST(CostModelTest, MultiHeadLatentCacheIsWholeOnEveryRank) {
  ModelDescription model = makeDeepSeekV3(8, 1024);
  std::unique_ptr<CostModel> costModel =
      makeCostModel(model, preset("32x8xH100"));
  Evaluation evaluation = costModel->evaluate(config(4, 1, 8, 8, 8, 1));
  ASSERT_TRUE(evaluation.plan.has_value()) << evaluation.reason;
  const StagePlan &stage = evaluation.plan->stages.front();
  // 1 sequence per shard of 1024 tokens, 576 latent elements in bf16.
  EXPECT_DOUBLE_EQ(stage.memory.kvCache, stage.numLayers * 1024.0 * 576 * 2);
}

TEST(CostModelTest, LowerBoundNeverExceedsAPlan) {
  std::unique_ptr<CostModel> costModel = makeCostModel(
      makeMixtral8x7B(32, 256), preset("2x8xH100"), ExpertLoadModel::zipf(1));
  int64_t checked = 0;
  for (int64_t pp : {1, 2, 4})
    for (int64_t tp : {1, 2, 4})
      for (int64_t ep : {1, 2, 4, 8}) {
        int64_t dp = 16 / (pp * tp * ep);
        if (dp * pp * tp * ep != 16)
          continue;
        for (int64_t microbatches : {1, 2, 3})
          for (int64_t extra : {0, 1}) {
            ParallelConfig chosen =
                config(pp, dp, tp, ep, 1, microbatches, extra);
            Evaluation evaluation = costModel->evaluate(chosen);
            if (!evaluation.feasible())
              continue;
            ++checked;
            EXPECT_LE(costModel->lowerBoundSeconds(chosen),
                      evaluation.plan->seconds())
                << chosen.str();
          }
      }
  EXPECT_GT(checked, 20);
}

TEST(CostModelTest, EvaluationIsDeterministic) {
  ModelDescription model = makeDeepSeekV3(64, 1024);
  auto price = [&] {
    std::unique_ptr<CostModel> costModel =
        makeCostModel(model, preset("4x8xH100"), ExpertLoadModel::zipf(1.0));
    return costModel->evaluate(config(2, 1, 2, 8, 1, 4, 1));
  };
  Evaluation first = price(), second = price();
  ASSERT_TRUE(first.plan && second.plan);
  EXPECT_EQ(first.plan->seconds(), second.plan->seconds());
  EXPECT_EQ(first.plan->memory.total(), second.plan->memory.total());
  EXPECT_TRUE(*first.plan->placements.back().placement ==
              *second.plan->placements.back().placement);
}

} // namespace
