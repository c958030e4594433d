//===- CudaSupportTest.cpp - what the CUDA backend accepts ----------------===//
//
// Part of moe-compiler's runtime. Host code: runs without a GPU.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaExecutor.h"
#include "moe/Runtime/CudaExpertGemm.h"
#include "moe/Runtime/NCCLCommunicator.h"

#include "gtest/gtest.h"

using namespace moe::rt;

namespace {

Program parse(const std::string &body) {
  Program program;
  Status status = parseProgram("moe-program 1\n" + body, "t.moe", program);
  EXPECT_TRUE(status) << status.message;
  return program;
}

TEST(CudaSupportTest, AcceptsWhatTheExecutorRuns) {
  Program program =
      parse("input 0 x f32 4x8\n"
            "weight 1 w f32 8x8 m.onnx 0 256\n"
            "weight 2 up f32 2x8x16 m.onnx 0 1024\n"
            "weight 3 down f32 2x16x8 m.onnx 0 1024\n"
            "weight 4 up_bias f32 2x16 m.onnx 0 128\n"
            "const 5 i64 4x1 0\n"
            "op matmul 6:f32:4x8 = 0,1\n"
            "op reshape 7:f32:4x8 = 6\n"
            "op dispatch 8:f32:4x8,9:i64:2,10:i64:4 = 7,5 num_experts=i:2\n"
            "op expert_ffn 11:f32:4x8 = 8,9,-,2,3,-,4,- activation=s:relu\n"
            // Capacity mode: 2 experts of 2 rows each.
            "op expert_ffn 14:f32:4x8 = 8,9,-,2,3,-,4,- activation=s:relu "
            "capacity=i:2\n"
            "const 12 f32 4x1 1\n"
            "op combine 13:f32:4x8 = 11,10,12\n"
            "output 13 y\n");
  EXPECT_FALSE(cuda::isCudaProgram(program));
  Status status = cuda::checkCudaSupport(program);
  EXPECT_TRUE(status) << status.message;
  // A program of one micro-batch: moe-run runs it once per micro-batch.
  program.microbatches = 2;
  status = cuda::checkCudaSupport(program);
  EXPECT_TRUE(status) << status.message;
}

TEST(CudaSupportTest, WeightOnlyOperationsRunOnTheHostAtLoad) {
  // A dequantisation of weights has no CUDA kernel; it runs once at load
  // through the CPU kernel. The same op on an input would be refused.
  Program program = parse("input 0 x f32 4x8\n"
                          "weight 1 w f32 8x8 m.onnx 0 256\n"
                          "op neg 2:f32:8x8 = 1\n"
                          "op matmul 3:f32:4x8 = 0,2\n"
                          "output 3 y\n");
  EXPECT_TRUE(cuda::checkCudaSupport(program));
  Program dynamic = parse("input 0 x f32 4x8\n"
                          "op neg 1:f32:4x8 = 0\n"
                          "output 1 y\n");
  Status status = cuda::checkCudaSupport(dynamic);
  ASSERT_FALSE(status);
  EXPECT_NE(status.message.find("line 3 (neg): has no CUDA implementation"),
            std::string::npos)
      << status.message;
}

TEST(CudaSupportTest, NamesWhatItCannotRunYet) {
  struct Case {
    const char *body;
    const char *message;
  } cases[] = {
      {"grid ep 2\ninput 0 x f16 4x8\nop all_reduce 1:f16:4x8 = 0 grid=s:ep "
       "grid_axes=a:0\noutput 1 y\n",
       "line 4 (all_reduce): all_reduce of f16 is not supported"},
      {"input 0 x f32 4x8\nop relu 1:f32:4x8 = 0\noutput 1 y\n",
       "line 3 (relu): has no CUDA implementation"},
      {"input 0 x f16 4x8\ninput 1 w f16 8x8\nop matmul 2:f16:4x8 = 0,1\n"
       "output 2 y\n",
       "line 4 (matmul): only f32 matmul"},
      {"input 0 x f32 2x4x8\ninput 1 w f32 1x8x8\n"
       "op matmul 2:f32:2x4x8 = 0,1\noutput 2 y\n",
       "broadcast leading dimensions"},
      {"input 0 x f32 4x8\ninput 1 c i64 2\ninput 2 up f32 2x8x8\n"
       "input 3 down f32 2x8x8\n"
       "op expert_ffn 4:f32:4x8 = 0,1,-,2,3,-,-,- activation=s:swiglu\n"
       "output 4 y\n",
       "activation 'swiglu' without a gate weight"},
  };
  for (const Case &c : cases) {
    Status status = cuda::checkCudaSupport(parse(c.body));
    ASSERT_FALSE(status) << c.body;
    EXPECT_NE(status.message.find(c.message), std::string::npos)
        << status.message;
  }
}

TEST(CudaSupportTest, RunsTheCollectivesAndCountsOfExpertParallelism) {
  // The exchange of an expert-parallel layer as the partitioner writes it:
  // counts summed on the host, rows and counts exchanged, chunks
  // reordered, the result gathered.
  Program program = parse(
      "grid ep 2\ninput 0 x f32 8x4\ninput 1 counts i64 8\n"
      "op reshape 2:i64:2x4 = 1\n"
      "op reduce 3:i64:2 = 2 kind=s:sum axes=a:1\n"
      "op ragged_all_to_all 4:i64:8,5:i64:2 = 1,3 grid=s:ep grid_axes=a:0\n"
      "op ragged_all_to_all 6:f32:16x4,7:i64:2 = 0,3 grid=s:ep "
      "grid_axes=a:0\n"
      "op reshape 8:i64:2x4 = 4\n"
      "op transpose_chunks 9:f32:16x4 = 6,8\n"
      "op all_gather 10:f32:32x4 = 9 gather_axis=i:0 grid=s:ep "
      "grid_axes=a:0\n"
      "op all_reduce 11:f32:32x4 = 10 grid=s:ep grid_axes=a:0\n"
      "output 11 y\n");
  Status status = cuda::checkCudaSupport(program);
  EXPECT_TRUE(status) << status.message;
}

TEST(CudaSupportTest, RefusesAFeedForwardTypeItHasNoKernelsFor) {
  // Checked before anything needs a GPU.
  cuda::CudaOptions options;
  options.feedForwardType = DType::I8;
  std::unique_ptr<cuda::CudaExecutor> executor;
  Status status =
      cuda::CudaExecutor::create(parse("input 0 x f32 4\noutput 0 y\n"), ".", 0,
                                 executor, nullptr, options);
  ASSERT_FALSE(status);
  EXPECT_NE(status.message.find("feed-forward GEMMs in i8 are not "
                                "supported (f32, bf16 and f16 are)"),
            std::string::npos)
      << status.message;
}

TEST(CudaGraphsTest, StretchesStopWhereTheHostIsNeeded) {
  const char *launch =
      "launches=s:k0%3Ak0%201%2C1%2C1%204%2C1%2C1%20in0%20out0 "
      "scratch=a:\n";
  Program program = parse(
      std::string("gpu-module k0 .version%208.0\ninput 0 x f32 4x8\n"
                  "weight 1 w f32 8x8 m.onnx 0 256\n"
                  "weight 2 up f32 2x8x8 m.onnx 0 512\n"
                  "weight 3 down f32 2x8x8 m.onnx 0 512\n"
                  "const 4 i64 4x1 0\n") +
      // 0-2: launch, matmul, reshape: one stretch.
      "op launch 5:f32:4x8 = 0 " + launch + "op matmul 6:f32:4x8 = 5,1\n" +
      "op reshape 7:f32:4x8 = 6\n" +
      // 3: dispatch needs the host; 4: a reshape of counts keeps their host
      // copy; 5: expert_ffn sizes its GEMMs on the host.
      "op dispatch 8:f32:4x8,9:i64:2,10:i64:4 = 7,4 num_experts=i:2\n" +
      "op reshape 11:i64:1x2 = 9\n" +
      "op expert_ffn 12:f32:4x8 = 8,9,-,2,3,-,-,- activation=s:relu\n" +
      // 6: a lone launch is not worth a graph; 7: combine; 8-10: a stretch.
      "op launch 13:f32:4x8 = 12 " + launch +
      "op combine 14:f32:4x8 = 13,10,0\n" + "op launch 15:f32:4x8 = 14 " +
      launch + "op matmul 16:f32:4x8 = 15,1\n" +
      "op matmul 17:f32:4x8 = 16,1\n" + "output 17 y\n");
  std::vector<bool> skipped(program.operations.size(), false);
  std::vector<bool> lowPrecision(program.operations.size(), false);
  using Stretches = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(cuda::graphStretches(program, skipped, lowPrecision),
            (Stretches{{0, 2}, {8, 10}}));
  // An operation another stage runs neither ends a stretch nor counts.
  skipped[9] = true;
  EXPECT_EQ(cuda::graphStretches(program, skipped, lowPrecision),
            (Stretches{{0, 2}, {8, 10}}));
  skipped[9] = false;
  skipped[1] = true;
  skipped[2] = true;
  EXPECT_EQ(cuda::graphStretches(program, skipped, lowPrecision),
            (Stretches{{8, 10}}));
}

TEST(CudaOverlapTest, MovesWorkThatNeedsNoExchangeToTheCollectiveBefore) {
  Program program = parse(
      "grid ep 2\ninput 0 x f32 8x4\ninput 1 counts i64 8\n"
      "weight 2 w f32 4x4 m.onnx 0 64\nweight 3 up f32 4x8 m.onnx 0 128\n"
      "weight 4 down f32 8x4 m.onnx 0 128\n"
      "weight 5 square f32 8x8 m.onnx 0 256\n"
      // 0-1: counts on the host; 2-3: the exchange of counts and rows.
      "op reshape 6:i64:2x4 = 1\n"
      "op reduce 7:i64:2 = 6 kind=s:sum axes=a:1\n"
      "op ragged_all_to_all 8:i64:8,9:i64:2 = 1,7 grid=s:ep grid_axes=a:0\n"
      "op ragged_all_to_all 10:f32:16x4,11:i64:2 = 0,7 grid=s:ep "
      "grid_axes=a:0\n"
      // 4-5: a gate and a shared expert on the input: to the first exchange.
      "op matmul 12:f32:8x4 = 0,2\n"
      "op ffn 13:f32:8x4 = 0,-,3,4,-,-,- activation=s:relu\n"
      // 6: reads the rows exchanged at 3, and no exchange is left before it.
      "op reshape 14:f32:8x8 = 10\n"
      // 7: an all-reduce of the gate's product.
      "op all_reduce 15:f32:8x4 = 12 grid=s:ep grid_axes=a:0\n"
      // 8: reads the moved shared expert: moves with it (the second stream
      // runs in order); 9: reads 6, so moves to 7; 10: reads the
      // all-reduce; 11: counts stay on the host.
      "op matmul 16:f32:8x4 = 13,2\n"
      "op matmul 17:f32:8x8 = 14,5\n"
      "op matmul 18:f32:8x4 = 15,2\n"
      "op reshape 19:i64:2x4 = 8\n"
      "output 16 a\noutput 17 b\noutput 18 c\noutput 19 d\n");
  ASSERT_TRUE(cuda::checkCudaSupport(program));
  std::vector<bool> skipped(program.operations.size(), false);
  EXPECT_EQ(cuda::overlapPlan(program, skipped),
            (std::vector<int>{-1, -1, -1, -1, 2, 2, -1, -1, 2, 7, -1, -1}));
  // Without the exchanges (another stage's), only the all-reduce is left
  // to overlap with, and nothing moves before it runs.
  skipped[2] = skipped[3] = true;
  EXPECT_EQ(cuda::overlapPlan(program, skipped),
            (std::vector<int>{-1, -1, -1, -1, -1, -1, -1, -1, 7, 7, -1, -1}));
  // Skipped operations stay where they are.
  skipped[8] = true;
  EXPECT_EQ(cuda::overlapPlan(program, skipped)[8], -1);
}

TEST(CudaOverlapTest, MovesNoFurtherBackThanAboutOneLayer) {
  // Five all-reduces of the input, then a matmul of the input: it moves
  // to the fourth-last all-reduce, not the first; a matmul of the third
  // all-reduce's result moves to the fourth.
  std::string body = "grid tp 2\ninput 0 x f32 8x4\n"
                     "weight 1 w f32 4x4 m.onnx 0 64\n";
  for (int r = 0; r < 5; ++r)
    body += "op all_reduce " + std::to_string(2 + r) +
            ":f32:8x4 = 0 grid=s:tp grid_axes=a:0\noutput " +
            std::to_string(2 + r) + " r" + std::to_string(r) + "\n";
  body += "op matmul 7:f32:8x4 = 0,1\nop matmul 8:f32:8x4 = 4,1\n"
          "output 7 a\noutput 8 b\n";
  Program program = parse(body);
  std::vector<bool> skipped(program.operations.size(), false);
  EXPECT_EQ(cuda::overlapPlan(program, skipped),
            (std::vector<int>{-1, -1, -1, -1, -1, 1, 3}));
}

TEST(ExpertGemmStrategyTest, LargeGroupsGetAGemmEachSmallOnesOneCall) {
  using cuda::GemmStrategy;
  int64_t big = cuda::perExpertMinRows;
  // Prefill: every expert with rows has plenty.
  EXPECT_EQ(cuda::resolveStrategy(GemmStrategy::Auto, {big, 0, big + 5, big}),
            GemmStrategy::PerExpert);
  // Experts without rows do not dilute the mean.
  EXPECT_EQ(
      cuda::resolveStrategy(GemmStrategy::Auto, {2 * big - 1, 0, 0, 0, 0, 1}),
      GemmStrategy::PerExpert);
  // Decode: a few rows per expert; and no rows at all.
  EXPECT_EQ(cuda::resolveStrategy(GemmStrategy::Auto, {1, 3, 0, 2}),
            GemmStrategy::Grouped);
  EXPECT_EQ(cuda::resolveStrategy(GemmStrategy::Auto, {0, 0}),
            GemmStrategy::Grouped);
  // A strategy asked for is kept.
  EXPECT_EQ(cuda::resolveStrategy(GemmStrategy::Grouped, {big, big}),
            GemmStrategy::Grouped);
  EXPECT_EQ(cuda::resolveStrategy(GemmStrategy::PerExpert, {1}),
            GemmStrategy::PerExpert);
}

TEST(NCCLExchangeTest, NcclAlltoAllOnlyWhenEveryRankKnowsAllCountsAreEqual) {
  // (count, sender's counts all equal) from ranks 0, 1, 2.
  EXPECT_TRUE(moe::rt::uniformExchange({4, 1, 4, 1, 4, 1}));
  // This rank's counts from its peers are equal, but rank 1 sends another
  // count elsewhere: rank 1 would post sends and receives, so nobody may
  // call ncclAlltoAll.
  EXPECT_FALSE(moe::rt::uniformExchange({4, 1, 4, 0, 4, 1}));
  // Every rank sends one count to all, but not the same one.
  EXPECT_FALSE(moe::rt::uniformExchange({4, 1, 5, 1, 4, 1}));
  EXPECT_FALSE(moe::rt::uniformExchange({}));
  EXPECT_TRUE(moe::rt::uniformExchange({0, 1}));
}

TEST(CudaSupportTest, LaunchesMakeACudaProgram) {
  Program program =
      parse("gpu-module k0 .version%208.0\ninput 0 x f32 4\n"
            "op launch 1:f32:4 = 0 launches=s:k0%3Ak0%201%2C1%2C1%204%2C1%2C1"
            "%20in0%20out0 scratch=a:\noutput 1 y\n");
  EXPECT_TRUE(cuda::isCudaProgram(program));
  EXPECT_TRUE(cuda::checkCudaSupport(program));
}

} // namespace
