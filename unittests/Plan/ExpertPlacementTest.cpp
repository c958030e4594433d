//===- ExpertPlacementTest.cpp - load-balanced expert placement -----------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/ExpertPlacement.h"
#include "moe/Plan/ExpertLoad.h"

#include "gtest/gtest.h"

#include <random>
#include <set>

using namespace moe::plan;

namespace {

/// Every expert placed, no rank over its slots or holding an expert twice,
/// the loads consistent with the shares.
void expectValid(const ExpertPlacement &placement,
                 const std::vector<double> &shares) {
  int64_t numExperts = shares.size();
  ASSERT_EQ(placement.ranksOfExpert.size(), shares.size());
  ASSERT_EQ(int64_t(placement.expertsOnRank.size()), placement.numRanks);
  double total = 0;
  for (double share : shares)
    total += share;
  for (int64_t rank = 0; rank < placement.numRanks; ++rank) {
    const std::vector<int64_t> &experts = placement.expertsOnRank[rank];
    EXPECT_LE(int64_t(experts.size()), placement.slotsPerRank);
    EXPECT_EQ(std::set<int64_t>(experts.begin(), experts.end()).size(),
              experts.size())
        << "rank " << rank << " holds an expert twice";
    double load = 0;
    for (int64_t expert : experts)
      load += shares[expert] / total / placement.ranksOfExpert[expert].size();
    EXPECT_NEAR(placement.rankLoad[rank], load, 1e-12);
  }
  for (int64_t expert = 0; expert < numExperts; ++expert)
    EXPECT_FALSE(placement.ranksOfExpert[expert].empty())
        << "expert " << expert << " is nowhere";
}

// The acceptance figure: Zipf(1.0) over 256 experts on 32 expert ranks with
// 12.5 % extra slots (9 per rank, 288 in all).
TEST(ExpertPlacementTest, ZipfOver256ExpertsOn32RanksIsBalanced) {
  std::vector<double> shares = zipfShares(256, 1.0);
  ASSERT_EQ(minSlotsPerRank(256, 32), 8);
  ExpertPlacement balanced = placeExpertsBalanced(shares, 32, 9);
  expectValid(balanced, shares);
  EXPECT_LE(balanced.numSlotsUsed(), 288);
  EXPECT_LE(balanced.maxOverMean(), 1.05);

  ExpertPlacement contiguous = placeExpertsContiguous(shares, 32);
  ExpertPlacement roundRobin = placeExpertsRoundRobin(shares, 32);
  expectValid(contiguous, shares);
  expectValid(roundRobin, shares);
  // Rank 0 of the contiguous placement holds the 8 hottest experts:
  // H(8) / H(256) * 32.
  double harmonic8 = 0, harmonic256 = 0;
  for (int i = 1; i <= 256; ++i)
    (i <= 8 ? harmonic8 : harmonic256) += 1.0 / i;
  harmonic256 += harmonic8;
  EXPECT_NEAR(contiguous.maxOverMean(), harmonic8 / harmonic256 * 32, 1e-9);
  EXPECT_GT(roundRobin.maxOverMean(), 5.0);
  // Without extra slots the hottest expert alone is 5.2 times the mean, so
  // the extra slots are what makes balance possible.
  EXPECT_GT(placeExpertsBalanced(shares, 32, 8).maxOverMean(), 5.0);

  ::testing::Test::RecordProperty("balanced_max_over_mean",
                                  std::to_string(balanced.maxOverMean()));
  ::testing::Test::RecordProperty("contiguous_max_over_mean",
                                  std::to_string(contiguous.maxOverMean()));
  ::testing::Test::RecordProperty("round_robin_max_over_mean",
                                  std::to_string(roundRobin.maxOverMean()));
  std::printf("Zipf(1.0), 256 experts, 32 ranks: balanced %.4f with %lld "
              "slots; contiguous %.4f, round robin %.4f\n",
              balanced.maxOverMean(),
              static_cast<long long>(balanced.numSlotsUsed()),
              contiguous.maxOverMean(), roundRobin.maxOverMean());
}

TEST(ExpertPlacementTest, UniformLoadOnDividingRanksIsPerfect) {
  std::vector<double> shares(64, 1.0);
  ExpertPlacement placement = placeExpertsBalanced(shares, 16, 4);
  expectValid(placement, shares);
  EXPECT_DOUBLE_EQ(placement.maxOverMean(), 1.0);
  EXPECT_EQ(placement.numSlotsUsed(), 64);
}

TEST(ExpertPlacementTest, UnevenExpertCountsFillEverySlot) {
  // 10 experts on 4 ranks: 3 slots each, so two experts get a second replica.
  std::vector<double> shares(10, 1.0);
  ExpertPlacement placement = placeExpertsBalanced(shares, 4, 3);
  expectValid(placement, shares);
  EXPECT_EQ(placement.numSlotsUsed(), 12);
  int64_t replicated = 0;
  for (const std::vector<int64_t> &ranks : placement.ranksOfExpert)
    replicated += ranks.size() == 2;
  EXPECT_EQ(replicated, 2);
  // Best possible: 10 units over 4 ranks, halves allowed, is 2.5 per rank.
  EXPECT_DOUBLE_EQ(placement.maxOverMean(), 1.0);
}

TEST(ExpertPlacementTest, MoreRanksThanExpertsReplicates) {
  std::vector<double> shares = {4, 2, 1, 1};
  ExpertPlacement placement = placeExpertsBalanced(shares, 8, 1);
  expectValid(placement, shares);
  EXPECT_EQ(placement.numSlotsUsed(), 8);
  EXPECT_EQ(placement.ranksOfExpert[0].size(), 4u);
  EXPECT_EQ(placement.ranksOfExpert[1].size(), 2u);
  EXPECT_DOUBLE_EQ(placement.maxOverMean(), 1.0);
}

TEST(ExpertPlacementTest, OneRankHoldsEverything) {
  std::vector<double> shares = zipfShares(6, 1.0);
  ExpertPlacement placement = placeExpertsBalanced(shares, 1, 8);
  expectValid(placement, shares);
  EXPECT_EQ(placement.numSlotsUsed(), 6);
  EXPECT_DOUBLE_EQ(placement.maxOverMean(), 1.0);
}

TEST(ExpertPlacementTest, RandomLoadsGiveValidDeterministicPlacements) {
  std::mt19937 generator(2024);
  std::uniform_int_distribution<int64_t> experts(1, 40), ranks(1, 12),
      extra(0, 3);
  std::exponential_distribution<double> share(1.0);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<double> shares(experts(generator));
    for (double &value : shares)
      value = trial % 7 == 0 ? 0.0 : share(generator);
    int64_t numRanks = ranks(generator);
    int64_t slots = minSlotsPerRank(shares.size(), numRanks) + extra(generator);
    ExpertPlacement placement = placeExpertsBalanced(shares, numRanks, slots);
    SCOPED_TRACE(testing::Message()
                 << "trial " << trial << ": " << shares.size() << " experts, "
                 << numRanks << " ranks, " << slots << " slots");
    std::vector<double> effective = shares;
    if (trial % 7 == 0)
      effective.assign(shares.size(), 1.0);
    expectValid(placement, effective);
    EXPECT_EQ(placement.numSlotsUsed(),
              numRanks * std::min<int64_t>(slots, shares.size()));
    EXPECT_TRUE(placement == placeExpertsBalanced(shares, numRanks, slots));
    // Balanced never loses to the load-blind placements.
    if (slots == minSlotsPerRank(shares.size(), numRanks)) {
      EXPECT_LE(placement.maxOverMean(),
                placeExpertsRoundRobin(shares, numRanks).maxOverMean() + 1e-12);
    }
  }
}

} // namespace
