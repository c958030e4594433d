//===- ModelDescriptionTest.cpp - built-in models and validation ----------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/ModelDescription.h"

#include "gtest/gtest.h"

using namespace llvm;
using namespace moe::plan;

namespace {

std::string errorOf(Error error) {
  return error ? toString(std::move(error)) : "";
}

TEST(ModelDescriptionTest, DeepSeekV3HasItsPublishedShape) {
  ModelDescription model = makeDeepSeekV3(256, 4096);
  ASSERT_EQ(model.layers.size(), 61u);
  EXPECT_EQ(model.numMoELayers(), 58);
  EXPECT_FALSE(model.layers[2].isMoE());
  EXPECT_TRUE(model.layers[3].isMoE());
  EXPECT_EQ(model.layers[3].numExperts, 256);
  EXPECT_EQ(model.layers[3].topK, 8);
  EXPECT_EQ(model.layers[0].denseInter, 18432);
  EXPECT_EQ(model.tokensPerStep(), 256 * 4096);
  // 671 B published parameters (without the multi-token prediction module).
  EXPECT_NEAR(model.numParameters() / 1e9, 671, 671 * 0.01);
  EXPECT_FALSE(errorOf(validateModel(model)).size());
}

TEST(ModelDescriptionTest, Mixtral8x7BHasItsPublishedShape) {
  ModelDescription model = makeMixtral8x7B(8, 1024);
  ASSERT_EQ(model.layers.size(), 32u);
  EXPECT_EQ(model.numMoELayers(), 32);
  EXPECT_EQ(model.layers[0].numKVHeads, 8);
  // 46.7 B published parameters.
  EXPECT_NEAR(model.numParameters() / 1e9, 46.7, 46.7 * 0.01);
  EXPECT_FALSE(errorOf(validateModel(model)).size());
}

TEST(ModelDescriptionTest, ValidationNamesTheModelLayerAndField) {
  ModelDescription model = makeMixtral8x7B(8, 1024);
  model.layers[5].topK = 9;
  EXPECT_EQ(errorOf(validateModel(model)),
            "model 'mixtral-8x7b': layer 5: top_k must be 1 to the 8 "
            "experts, got 9");

  model = makeMixtral8x7B(8, 1024);
  model.layers[1].numKVHeads = 5;
  EXPECT_EQ(errorOf(validateModel(model)),
            "model 'mixtral-8x7b': layer 1: kv_heads must be positive and "
            "divide the 32 heads, got 5");

  model = makeDeepSeekV3(8, 1024);
  model.layers[0].denseInter = 0;
  EXPECT_EQ(errorOf(validateModel(model)),
            "model 'deepseek-v3': layer 0: dense_inter must be positive in a "
            "dense layer, got 0");

  model.layers.clear();
  EXPECT_EQ(errorOf(validateModel(model)),
            "model 'deepseek-v3': has no layers");

  model = makeDeepSeekV3(0, 1024);
  EXPECT_EQ(errorOf(validateModel(model)),
            "model 'deepseek-v3': batch and sequence must be positive, got 0 "
            "x 1024");
}

} // namespace
