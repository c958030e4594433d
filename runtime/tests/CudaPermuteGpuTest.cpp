//===- CudaPermuteGpuTest.cpp - the CUDA permute / unpermute kernels ------===//
//
// Part of moe-compiler's runtime tests (ctest label gpu).
//
// Runs the kernels on a device and compares them with plain loops written
// here in float64. Without a device each test prints a SKIP line naming the
// reason and ctest reports it skipped.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaPermute.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

using namespace moe::rt;
using namespace moe::rt::cuda;

namespace {

/// A stable counting sort of the pairs by expert with optional capacity, the
/// contract of moe.dispatch (MoEOps.td), written independently of the CPU
/// kernel.
std::vector<int64_t> dispatchOrder(const std::vector<int64_t> &selected,
                                   int64_t experts, int64_t capacity) {
  std::vector<std::vector<int64_t>> perExpert(experts);
  for (size_t pair = 0; pair < selected.size(); ++pair)
    perExpert[selected[pair]].push_back(static_cast<int64_t>(pair));
  std::vector<int64_t> sources;
  for (auto &pairs : perExpert) {
    if (capacity < 0) {
      sources.insert(sources.end(), pairs.begin(), pairs.end());
      continue;
    }
    for (int64_t i = 0; i < capacity; ++i)
      sources.push_back(i < static_cast<int64_t>(pairs.size()) ? pairs[i] : -1);
  }
  return sources;
}

template <typename T> struct DeviceBuffer {
  T *data = nullptr;
  explicit DeviceBuffer(const std::vector<T> &host) {
    EXPECT_EQ(cudaMalloc(&data, std::max<size_t>(1, host.size()) * sizeof(T)),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), host.size() * sizeof(T),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(data); }
  std::vector<T> read(size_t count) const {
    std::vector<T> host(count);
    EXPECT_EQ(cudaMemcpy(host.data(), data, count * sizeof(T),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
};

struct PermuteCase {
  int64_t tokens, topK, experts, hidden, capacity;
  int64_t offset = 0;
};

/// Names a case in ctest's list (gtest would print the struct's bytes).
void PrintTo(const PermuteCase &c, std::ostream *os) {
  *os << c.tokens << " tokens, top-" << c.topK << ", " << c.experts
      << " experts, hidden " << c.hidden << ", capacity " << c.capacity
      << ", offset " << c.offset;
}

class Gpu : public testing::TestWithParam<PermuteCase> {
protected:
  void SetUp() override {
    std::string why;
    if (!deviceAvailable(why)) {
      std::printf("SKIP: GPU test not run: %s\n", why.c_str());
      GTEST_SKIP() << why;
    }
  }
};

TEST_P(Gpu, PermuteAndUnpermuteMatchFloat64Loops) {
  PermuteCase c = GetParam();
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int64_t> pick(0, c.experts - 1);
  // A skewed choice (expert 0 twice as likely) so that capacity drops.
  std::vector<float> tokens(c.tokens * c.hidden), weights(c.tokens * c.topK);
  std::vector<int64_t> selected(c.tokens * c.topK);
  for (float &v : tokens)
    v = normal(rng);
  for (float &w : weights)
    w = std::abs(normal(rng));
  for (int64_t &e : selected)
    e = rng() % 3 == 0 ? 0 : pick(rng);
  std::vector<int64_t> sources = dispatchOrder(selected, c.experts, c.capacity);
  std::vector<int64_t> rowOfPair;
  ASSERT_TRUE(invertDispatchOrder(sources, c.tokens * c.topK, rowOfPair));
  int64_t rows = static_cast<int64_t>(sources.size());

  if (c.capacity >= 0) {
    // The case must exercise padding rows and dropped pairs.
    ASSERT_GT(std::count(sources.begin(), sources.end(), -1), 0);
    ASSERT_GT(std::count(rowOfPair.begin(), rowOfPair.end(), -1), 0);
  }

  // `offset` floats in front of the token and output buffers: 1 makes the
  // base pointers misaligned for float4, which must select the scalar path.
  std::vector<float> paddedTokens(c.offset, 0.0f);
  paddedTokens.insert(paddedTokens.end(), tokens.begin(), tokens.end());
  DeviceBuffer<float> dTokens(paddedTokens), dWeights(weights);
  DeviceBuffer<int64_t> dSources(sources), dRowOfPair(rowOfPair);
  DeviceBuffer<float> dRows(std::vector<float>(rows * c.hidden, 1e30f));
  DeviceBuffer<float> dOut(
      std::vector<float>(c.offset + c.tokens * c.hidden, 1e30f));
  Status permuted = permuteRows(dTokens.data + c.offset, dSources.data, rows,
                                c.hidden, c.topK, dRows.data);
  ASSERT_TRUE(permuted) << permuted.message;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> gotRows = dRows.read(rows * c.hidden);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < c.hidden; ++i) {
      float expected =
          sources[r] < 0 ? 0.0f : tokens[(sources[r] / c.topK) * c.hidden + i];
      ASSERT_EQ(gotRows[r * c.hidden + i], expected) << "row " << r;
    }

  // Expert outputs that differ row by row, so that reading another slot's
  // row (or a padding row) changes the sum.
  std::vector<float> expertRows(rows * c.hidden);
  for (float &v : expertRows)
    v = normal(rng);
  DeviceBuffer<float> dExpertRows(expertRows);
  Status combined =
      unpermuteCombine(dExpertRows.data, dRowOfPair.data, dWeights.data,
                       c.tokens, c.topK, c.hidden, dOut.data + c.offset);
  ASSERT_TRUE(combined) << combined.message;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> gotOut = dOut.read(c.offset + c.tokens * c.hidden);
  for (int64_t t = 0; t < c.tokens; ++t)
    for (int64_t i = 0; i < c.hidden; ++i) {
      double expected = 0;
      for (int64_t j = 0; j < c.topK; ++j) {
        int64_t row = rowOfPair[t * c.topK + j];
        if (row >= 0)
          expected +=
              double(weights[t * c.topK + j]) * expertRows[row * c.hidden + i];
      }
      ASSERT_NEAR(gotOut[c.offset + t * c.hidden + i], expected,
                  1e-5 * (1 + std::abs(expected)))
          << "token " << t << " column " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Gpu,
    testing::Values(
        PermuteCase{64, 2, 8, 128, -1},    // dropless, float4 path
        PermuteCase{37, 2, 8, 130, -1},    // scalar path (hidden % 4 != 0)
        PermuteCase{100, 4, 6, 64, 60},    // capacity: padding and drops
        PermuteCase{50, 2, 4, 6, 20},      // scalar path with capacity
        PermuteCase{64, 2, 8, 128, -1, 1}, // misaligned bases: scalar path
        PermuteCase{70000, 1, 4, 8, -1},   // more rows than grid blocks
        PermuteCase{1, 1, 4, 4096, -1}),   // decode-sized
    [](const testing::TestParamInfo<PermuteCase> &info) {
      const PermuteCase &c = info.param;
      return "t" + std::to_string(c.tokens) + "_k" + std::to_string(c.topK) +
             "_e" + std::to_string(c.experts) + "_h" +
             std::to_string(c.hidden) +
             (c.capacity < 0 ? std::string("_dropless")
                             : "_cap" + std::to_string(c.capacity)) +
             (c.offset ? "_offset" + std::to_string(c.offset) : "");
    });

} // namespace
