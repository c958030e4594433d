//===- CudaDispatchOrderTest.cpp - host side of the GPU permute -----------===//
//
// Part of moe-compiler's runtime tests. Host code only: runs on every
// machine, with or without a GPU.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaPermute.h"

#include <gtest/gtest.h>

using namespace moe::rt;
using namespace moe::rt::cuda;

namespace {

TEST(DispatchOrder, InvertsRowsAndMarksDroppedPairs) {
  // 3 tokens, top-2: pairs 0..5; rows hold pairs 4, 0, -1 (padding), 5, 2.
  std::vector<int64_t> rowOfPair;
  ASSERT_TRUE(invertDispatchOrder({4, 0, -1, 5, 2}, 6, rowOfPair));
  EXPECT_EQ(rowOfPair, (std::vector<int64_t>{1, -1, 4, -1, 0, 3}));
}

TEST(DispatchOrder, RejectsOutOfRangeAndDuplicatePairs) {
  std::vector<int64_t> rowOfPair;
  Status outOfRange = invertDispatchOrder({0, 7}, 6, rowOfPair);
  EXPECT_FALSE(outOfRange);
  EXPECT_EQ(outOfRange.message,
            "unpermute: row 1 holds pair 7, out of range for 6 pairs");
  Status duplicate = invertDispatchOrder({3, 1, 3}, 6, rowOfPair);
  EXPECT_FALSE(duplicate);
  EXPECT_EQ(duplicate.message, "unpermute: pair 3 is held by rows 0 and 2");
  EXPECT_FALSE(invertDispatchOrder({-2}, 6, rowOfPair));
}

} // namespace
