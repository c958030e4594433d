//===- MemoryPlanTest.cpp - placing values in one arena -------------------===//
//
// Part of moe-compiler's runtime tests.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/MemoryPlan.h"

#include <gtest/gtest.h>

#include <random>

using namespace moe::rt;

namespace {

/// Checks alignment, the arena bound and that buffers alive together never
/// share a byte.
void expectValid(const std::vector<BufferLifetime> &buffers,
                 const MemoryPlan &plan, int64_t alignment) {
  ASSERT_EQ(plan.offsets.size(), buffers.size());
  for (size_t a = 0; a < buffers.size(); ++a) {
    EXPECT_EQ(plan.offsets[a] % alignment, 0) << "buffer " << a;
    EXPECT_LE(plan.offsets[a] + buffers[a].bytes, plan.arenaBytes)
        << "buffer " << a;
    for (size_t b = a + 1; b < buffers.size(); ++b) {
      bool together = buffers[a].first <= buffers[b].last &&
                      buffers[b].first <= buffers[a].last;
      bool overlap = plan.offsets[a] < plan.offsets[b] + buffers[b].bytes &&
                     plan.offsets[b] < plan.offsets[a] + buffers[a].bytes;
      ASSERT_FALSE(together && overlap)
          << "buffers " << a << " and " << b << " are alive together at "
          << plan.offsets[a] << " and " << plan.offsets[b];
    }
  }
}

TEST(MemoryPlanTest, AChainReusesTwoBuffers) {
  // x0 -> x1 -> x2 -> x3: each op reads one value and writes the next, so
  // two buffers are alive at a time and the arena holds two.
  std::vector<BufferLifetime> chain;
  for (int64_t i = 0; i < 4; ++i)
    chain.push_back({1000, i, i + 1});
  MemoryPlan plan = planMemory(chain, 64);
  expectValid(chain, plan, 64);
  EXPECT_EQ(plan.arenaBytes, 2 * 1024);
  EXPECT_EQ(plan.offsets[0], plan.offsets[2]);
  EXPECT_NE(plan.offsets[0], plan.offsets[1]);
}

TEST(MemoryPlanTest, OperandsAndResultsOfOneOpNeverShare) {
  // The operand's last use is the op that writes the result.
  std::vector<BufferLifetime> buffers{{64, 0, 3}, {64, 3, 5}};
  MemoryPlan plan = planMemory(buffers, 64);
  expectValid(buffers, plan, 64);
  EXPECT_EQ(plan.arenaBytes, 128);
}

TEST(MemoryPlanTest, SmallBuffersFillGaps) {
  // Two long-lived buffers with a gap between them once the middle one
  // dies; a later small buffer goes into the gap, not past the end.
  std::vector<BufferLifetime> buffers{
      {4096, 0, 10}, {4096, 0, 2}, {4096, 0, 10}, {1024, 5, 6}};
  MemoryPlan plan = planMemory(buffers, 64);
  expectValid(buffers, plan, 64);
  EXPECT_EQ(plan.arenaBytes, 3 * 4096);
}

TEST(MemoryPlanTest, RandomLifetimesNeverCollide) {
  std::mt19937 generator(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<BufferLifetime> buffers;
    int64_t total = 0;
    for (int i = 0; i < 60; ++i) {
      int64_t first = static_cast<int64_t>(generator() % 40);
      int64_t bytes = 1 + static_cast<int64_t>(generator() % 5000);
      int64_t last = first + static_cast<int64_t>(generator() % 10);
      buffers.push_back({bytes, first, last});
      total += (bytes + 63) / 64 * 64;
    }
    MemoryPlan plan = planMemory(buffers, 64);
    expectValid(buffers, plan, 64);
    EXPECT_LE(plan.arenaBytes, total);
  }
}

} // namespace
