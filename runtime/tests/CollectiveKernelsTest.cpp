//===- CollectiveKernelsTest.cpp - kernels of partitioned programs -------===//
//
// Part of moe-compiler's runtime tests.
//
// transpose_chunks on one rank; all_slice, all_gather, all_reduce and
// ragged_all_to_all on thread ranks, each rank's expected result written out
// by hand from the operation's definition.
//
//===----------------------------------------------------------------------===//

#include "KernelTestUtils.h"

#include "moe/Runtime/Collectives.h"

#include <functional>
#include <thread>

using namespace moe::rt;
using namespace moe::rt::test;

namespace {

/// Runs `body(rank, context)` on `size` thread ranks whose contexts hold
/// the group "g[0]" of all ranks.
void onRanks(int size,
             const std::function<void(int rank, KernelContext &)> &body) {
  std::vector<std::unique_ptr<Communicator>> ranks;
  ASSERT_TRUE(createThreadGroup(size, CommunicatorOptions(), ranks));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      KernelContext context;
      context.groups[groupKey("g", {0})] = ranks[rank].get();
      body(rank, context);
    });
  }
  for (std::thread &thread : threads)
    thread.join();
}

Status run(const std::string &op, const Attributes &attrs,
           const std::vector<const Tensor *> &inputs,
           const std::vector<Tensor *> &outputs, KernelContext &context) {
  return findKernel(op)(attrs, inputs, outputs, context);
}

Attrs onGrid() {
  return std::move(Attrs().string("grid", "g").array("grid_axes", {0}));
}

TEST(CollectiveKernelsTest, TransposeChunksRegroupsAndZeroesTheTail) {
  // 2 x 3 chunks of rows (a, b) with counts [[1, 0, 2], [2, 1, 0]]; one
  // value per row names its chunk (10 a + b) and the row within it.
  Tensor rows = f32({8, 1}, {0.0f, 2.0f, 2.1f, 10.0f, 10.1f, 11.0f, 7, 7});
  Tensor counts = i64({2, 3}, {1, 0, 2, 2, 1, 0});
  Tensor result(DType::F32, {8, 1});
  KernelContext context;
  ASSERT_TRUE(
      run("transpose_chunks", Attrs(), {&rows, &counts}, {&result}, context));
  // Order (b, a): (0,0) (1,0) (0,1) (1,1) (0,2) (1,2), then zeros.
  EXPECT_EQ(
      contents<float>(result),
      (std::vector<float>{0.0f, 10.0f, 10.1f, 11.0f, 2.0f, 2.1f, 0.0f, 0.0f}));
  // Transposed counts undo it.
  Tensor countsBack = i64({3, 2}, {1, 2, 0, 1, 2, 0});
  Tensor back(DType::F32, {8, 1});
  ASSERT_TRUE(run("transpose_chunks", Attrs(), {&result, &countsBack}, {&back},
                  context));
  EXPECT_EQ(contents<float>(back),
            (std::vector<float>{0.0f, 2.0f, 2.1f, 10.0f, 10.1f, 11.0f, 0, 0}));
}

TEST(CollectiveKernelsTest, TransposeChunksRejectsBadCounts) {
  Tensor rows(DType::F32, {4, 2});
  Tensor result(DType::F32, {4, 2});
  KernelContext context;
  Tensor tooMany = i64({1, 2}, {3, 2});
  Status status =
      run("transpose_chunks", Attrs(), {&rows, &tooMany}, {&result}, context);
  EXPECT_FALSE(status);
  EXPECT_EQ(status.message, "transpose_chunks: chunk_counts add up to 5 rows "
                            "but there are 4");
  Tensor negative = i64({1, 2}, {-1, 2});
  status =
      run("transpose_chunks", Attrs(), {&rows, &negative}, {&result}, context);
  EXPECT_EQ(status.message,
            "transpose_chunks: chunk_counts[0] is negative (-1)");
}

TEST(CollectiveKernelsTest, AllSliceTakesTheRanksBlock) {
  // [2, 6] sliced along axis 1 over 3 ranks: rank r gets columns 2r, 2r+1.
  Tensor input = f32({2, 6}, {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15});
  onRanks(3, [&](int rank, KernelContext &context) {
    Tensor result(DType::F32, {2, 2});
    Attrs attrs = onGrid();
    attrs.integer("slice_axis", 1);
    ASSERT_TRUE(run("all_slice", attrs, {&input}, {&result}, context));
    float c = 2.0f * rank;
    EXPECT_EQ(contents<float>(result),
              (std::vector<float>{c, c + 1, 10 + c, 11 + c}));
  });
}

TEST(CollectiveKernelsTest, AllGatherConcatenatesInRankOrder) {
  for (int64_t axis : {0, 1}) {
    onRanks(2, [&](int rank, KernelContext &context) {
      float r = static_cast<float>(rank);
      Tensor input = f32({2, 2}, {r, r + 0.1f, r + 0.2f, r + 0.3f});
      Tensor result(DType::F32, axis == 0 ? Shape{4, 2} : Shape{2, 4});
      Attrs attrs = onGrid();
      attrs.integer("gather_axis", axis);
      ASSERT_TRUE(run("all_gather", attrs, {&input}, {&result}, context));
      std::vector<float> expected =
          axis == 0
              ? std::vector<float>{0, 0.1f, 0.2f, 0.3f, 1, 1.1f, 1.2f, 1.3f}
              : std::vector<float>{0, 0.1f, 1, 1.1f, 0.2f, 0.3f, 1.2f, 1.3f};
      EXPECT_EQ(contents<float>(result), expected) << "axis " << axis;
    });
  }
}

TEST(CollectiveKernelsTest, AllReduceSums) {
  onRanks(3, [&](int rank, KernelContext &context) {
    Tensor input = f32({2}, {1.0f + rank, 10.0f * rank});
    Tensor result(DType::F32, {2});
    ASSERT_TRUE(run("all_reduce", onGrid(), {&input}, {&result}, context));
    EXPECT_EQ(contents<float>(result), (std::vector<float>{6.0f, 30.0f}));
  });
}

TEST(CollectiveKernelsTest, RaggedAllToAllFillsABoundAndZeroesTheRest) {
  // The example of the op's documentation: rank 0 sends a0 | a1 a2, rank 1
  // sends b0 | b1; the results hold room for 4 rows.
  onRanks(2, [&](int rank, KernelContext &context) {
    Tensor input = rank == 0 ? f32({3, 1}, {1, 2, 3}) : f32({2, 1}, {4, 5});
    Tensor send = rank == 0 ? i64({2}, {1, 2}) : i64({2}, {1, 1});
    Tensor result(DType::F32, {4, 1});
    std::fill_n(result.as<float>(), 4, -1.0f);
    Tensor received(DType::I64, {2});
    ASSERT_TRUE(run("ragged_all_to_all", onGrid(), {&input, &send},
                    {&result, &received}, context));
    if (rank == 0) {
      EXPECT_EQ(contents<float>(result), (std::vector<float>{1, 4, 0, 0}));
      EXPECT_EQ(contents<int64_t>(received), (std::vector<int64_t>{1, 1}));
    } else {
      EXPECT_EQ(contents<float>(result), (std::vector<float>{2, 3, 5, 0}));
      EXPECT_EQ(contents<int64_t>(received), (std::vector<int64_t>{2, 1}));
    }
  });
}

TEST(CollectiveKernelsTest, MissingGroupIsAnError) {
  Tensor input(DType::F32, {4});
  Tensor result(DType::F32, {2});
  KernelContext context;
  Attrs attrs = onGrid();
  attrs.integer("slice_axis", 0);
  Status status = run("all_slice", attrs, {&input}, {&result}, context);
  EXPECT_FALSE(status);
  EXPECT_EQ(status.message,
            "all_slice: no device group for grid 'g' along the listed axes; "
            "the program's grids were not set up for this run");
}

} // namespace
