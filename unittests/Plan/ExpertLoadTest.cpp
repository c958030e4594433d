//===- ExpertLoadTest.cpp - assumed and measured expert load --------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/ExpertLoad.h"

#include "gtest/gtest.h"

#include <cmath>

using namespace llvm;
using namespace moe::plan;

namespace {

template <typename T> std::string errorOf(Expected<T> value) {
  return value ? "" : toString(value.takeError());
}

/// A model with `moeLayers` MoE layers of `experts` experts after one dense
/// layer.
ModelDescription smallModel(int64_t moeLayers, int64_t experts) {
  LayerDescription dense;
  dense.hidden = 64;
  dense.numHeads = 4;
  dense.numKVHeads = 4;
  dense.headDim = 16;
  dense.denseInter = 128;
  LayerDescription moe = dense;
  moe.kind = LayerKind::MoE;
  moe.numExperts = experts;
  moe.topK = 2;
  moe.expertInter = 32;
  ModelDescription model;
  model.name = "small";
  model.layers.push_back(dense);
  model.layers.insert(model.layers.end(), moeLayers, moe);
  model.vocab = 100;
  return model;
}

TEST(ExpertLoadTest, ZipfSharesFollowThePowerLaw) {
  std::vector<double> shares = zipfShares(256, 1.0);
  double total = 0;
  for (double share : shares)
    total += share;
  EXPECT_NEAR(total, 1.0, 1e-12);
  EXPECT_NEAR(shares[0] / shares[1], 2.0, 1e-12);
  EXPECT_NEAR(shares[0] / shares[255], 256.0, 1e-9);
  std::vector<double> steep = zipfShares(8, 2.0);
  EXPECT_NEAR(steep[0] / steep[2], 9.0, 1e-12);
}

TEST(ExpertLoadTest, ParsesMoeRunOutputSummingRanks) {
  // As moe-run --expert-load writes it, two ranks and two MoE layers.
  Expected<ExpertLoadModel> load = parseExpertLoadHistogram(
      R"({"layer": 0, "rank": 0, "line": 12, "tokens_per_expert": [3, 1, 0, 4], "max": 4, "mean": 2, "max_over_mean": 2}
{"layer": 1, "rank": 0, "line": 30, "tokens_per_expert": [2, 2, 2, 2], "max": 2, "mean": 2, "max_over_mean": 1}

{"layer": 0, "rank": 1, "line": 12, "tokens_per_expert": [1, 1, 2, 0], "max": 2, "mean": 1, "max_over_mean": 2}
{"layer": 1, "rank": 1, "line": 30, "tokens_per_expert": [0, 0, 0, 8], "max": 8, "mean": 2, "max_over_mean": 4}
)",
      "load.jsonl");
  ASSERT_TRUE(!!load) << errorOf(std::move(load));
  EXPECT_EQ(load->kind, ExpertLoadModel::Kind::Histogram);
  ASSERT_EQ(load->tokensPerExpert.size(), 2u);
  EXPECT_EQ(load->tokensPerExpert[0], (std::vector<double>{4, 2, 2, 4}));
  EXPECT_EQ(load->tokensPerExpert[1], (std::vector<double>{2, 2, 2, 10}));
  EXPECT_EQ(load->describe(), "histogram load.jsonl");

  Expected<std::vector<std::vector<double>>> shares =
      expertShares(*load, smallModel(2, 4));
  ASSERT_TRUE(!!shares) << errorOf(std::move(shares));
  EXPECT_EQ((*shares)[0],
            (std::vector<double>{1.0 / 3, 1.0 / 6, 1.0 / 6, 1.0 / 3}));
  EXPECT_DOUBLE_EQ((*shares)[1][3], 10.0 / 16);
}

TEST(ExpertLoadTest, HistogramErrorsNameFileLineAndField) {
  struct Case {
    const char *text;
    const char *expected;
  };
  const Case cases[] = {
      {"{\"layer\": 0, \"rank\": 0, \"tokens_per_expert\": [1]}\n{oops",
       "h.jsonl:2: not valid JSON"},
      {R"({"rank": 0, "tokens_per_expert": [1]})",
       "h.jsonl:1: field 'layer': expected a non-negative integer"},
      {R"({"layer": 0, "tokens_per_expert": [1]})",
       "h.jsonl:1: field 'rank': expected a non-negative integer"},
      {R"({"layer": 0, "rank": 0})",
       "h.jsonl:1: field 'tokens_per_expert': expected a non-empty array"},
      {R"({"layer": 0, "rank": 0, "tokens_per_expert": [1, -2]})",
       "h.jsonl:1: field 'tokens_per_expert': entry 1 is not a non-negative "
       "number"},
      {"{\"layer\": 0, \"rank\": 0, \"tokens_per_expert\": [1]}\n"
       "{\"layer\": 0, \"rank\": 0, \"tokens_per_expert\": [1]}",
       "h.jsonl:2: layer 0 rank 0 already appeared on line 1"},
      {"{\"layer\": 0, \"rank\": 0, \"tokens_per_expert\": [1, 2]}\n"
       "{\"layer\": 0, \"rank\": 1, \"tokens_per_expert\": [1]}",
       "h.jsonl:2: layer 0 has 1 experts here but 2 on line 1"},
      {R"({"layer": 1, "rank": 0, "tokens_per_expert": [1]})",
       "h.jsonl: MoE layer 0 has no lines"},
      {"\n\n", "h.jsonl: no expert-load lines"},
  };
  for (const Case &c : cases) {
    std::string message = errorOf(parseExpertLoadHistogram(c.text, "h.jsonl"));
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "text: " << c.text << "\nmessage: " << message;
  }
}

TEST(ExpertLoadTest, HistogramMustMatchTheModel) {
  ExpertLoadModel load;
  load.kind = ExpertLoadModel::Kind::Histogram;
  load.source = "h.jsonl";
  load.tokensPerExpert = {{1, 2, 3, 4}, {1, 1, 1, 1}};
  EXPECT_EQ(errorOf(expertShares(load, smallModel(3, 4))),
            "h.jsonl: has 2 MoE layers but model 'small' has 3");
  EXPECT_EQ(errorOf(expertShares(load, smallModel(2, 8))),
            "h.jsonl: MoE layer 0 has 4 experts but layer 1 of model 'small' "
            "has 8");
  load.tokensPerExpert = {{0, 0, 0, 0}};
  EXPECT_NE(errorOf(expertShares(load, smallModel(3, 4)))
                .find("h.jsonl: MoE layer 0 routed no tokens"),
            std::string::npos);

  // One row stands for every MoE layer.
  load.tokensPerExpert = {{1, 1, 1, 5}};
  Expected<std::vector<std::vector<double>>> shares =
      expertShares(load, smallModel(3, 4));
  ASSERT_TRUE(!!shares) << errorOf(std::move(shares));
  ASSERT_EQ(shares->size(), 3u);
  EXPECT_DOUBLE_EQ((*shares)[2][3], 5.0 / 8);
}

TEST(ExpertLoadTest, ResolvesAssumedDistributionsAndFiles) {
  Expected<ExpertLoadModel> uniform = resolveExpertLoad("uniform");
  ASSERT_TRUE(!!uniform);
  EXPECT_EQ(uniform->kind, ExpertLoadModel::Kind::Uniform);
  Expected<ExpertLoadModel> zipf = resolveExpertLoad("zipf:1.5");
  ASSERT_TRUE(!!zipf);
  EXPECT_EQ(zipf->kind, ExpertLoadModel::Kind::Zipf);
  EXPECT_DOUBLE_EQ(zipf->zipfExponent, 1.5);
  EXPECT_EQ(zipf->describe(), "zipf:1.5");
  EXPECT_NE(errorOf(resolveExpertLoad("zipf:-1")).find("positive"),
            std::string::npos);
  EXPECT_NE(errorOf(resolveExpertLoad("zipf:abc")).find("'zipf:abc'"),
            std::string::npos);
  EXPECT_NE(errorOf(resolveExpertLoad("/nonexistent/load.jsonl"))
                .find("/nonexistent/load.jsonl: cannot read"),
            std::string::npos);

  Expected<std::vector<std::vector<double>>> shares =
      expertShares(*uniform, smallModel(2, 4));
  ASSERT_TRUE(!!shares);
  EXPECT_EQ((*shares)[1], (std::vector<double>(4, 0.25)));
}

} // namespace
