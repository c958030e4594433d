//===- CudaExpertGemmGpuTest.cpp - grouped expert GEMM on the GPU ---------===//
//
// Part of moe-compiler's runtime tests.
//
// ExpertGemm against float64 loops over the same (rounded) inputs: experts
// with many, few and no rows, padding rows after the groups, f32 / fp16 /
// bf16 storage. Without a device each test prints a SKIP line.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaExpertGemm.h"
#include "moe/Runtime/CudaPermute.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>

using namespace moe::rt;
using namespace moe::rt::cuda;

namespace {

struct GemmCase {
  DType dtype;
  std::vector<int64_t> counts;
  int64_t padding, k, n;
  double tolerance; ///< relative to the largest |reference| element
};

void PrintTo(const GemmCase &c, std::ostream *os) {
  *os << dtypeName(c.dtype) << ", " << c.counts.size() << " experts, K " << c.k
      << ", N " << c.n;
}

/// Rounds through the storage type, so the reference sees the same inputs.
std::vector<uint16_t> store16(DType dtype, std::vector<float> &values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F16) {
      __half h = __float2half(values[i]);
      values[i] = __half2float(h);
      std::memcpy(&bits[i], &h, 2);
    } else {
      __nv_bfloat16 b = __float2bfloat16(values[i]);
      values[i] = __bfloat162float(b);
      std::memcpy(&bits[i], &b, 2);
    }
  }
  return bits;
}

float load16(DType dtype, uint16_t bits) {
  if (dtype == DType::F16) {
    __half h;
    std::memcpy(&h, &bits, 2);
    return __half2float(h);
  }
  __nv_bfloat16 b;
  std::memcpy(&b, &bits, 2);
  return __bfloat162float(b);
}

class ExpertGemmGpu : public testing::TestWithParam<GemmCase> {
protected:
  void SetUp() override {
    std::string why;
    if (!deviceAvailable(why)) {
      std::printf("SKIP: GPU test not run: %s\n", why.c_str());
      GTEST_SKIP() << why;
    }
  }
};

TEST_P(ExpertGemmGpu, MatchesFloat64Loops) {
  const GemmCase &c = GetParam();
  int64_t experts = static_cast<int64_t>(c.counts.size());
  int64_t grouped =
      std::accumulate(c.counts.begin(), c.counts.end(), int64_t{0});
  int64_t rows = grouped + c.padding;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> x(rows * c.k), w(experts * c.k * c.n);
  for (float &v : x)
    v = normal(rng);
  for (float &v : w)
    v = normal(rng) / std::sqrt(float(c.k));
  size_t bytes = c.dtype == DType::F32 ? 4 : 2;
  std::vector<uint16_t> x16, w16;
  if (bytes == 2) {
    x16 = store16(c.dtype, x);
    w16 = store16(c.dtype, w);
  }
  void *dx, *dw, *dy;
  ASSERT_EQ(cudaMalloc(&dx, x.size() * bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dw, w.size() * bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, rows * c.n * bytes), cudaSuccess);
  cudaMemcpy(dx, bytes == 2 ? (void *)x16.data() : (void *)x.data(),
             x.size() * bytes, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, bytes == 2 ? (void *)w16.data() : (void *)w.data(),
             w.size() * bytes, cudaMemcpyHostToDevice);
  cudaMemset(dy, 0, rows * c.n * bytes);

  ExpertGemm gemm;
  ASSERT_TRUE(gemm.init());
  Status status = gemm.run(c.dtype, dx, c.counts, c.k, c.n, dw, dy);
  ASSERT_TRUE(status) << status.message;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  std::vector<float> y(rows * c.n);
  if (bytes == 2) {
    std::vector<uint16_t> y16(y.size());
    cudaMemcpy(y16.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = load16(c.dtype, y16[i]);
  } else {
    cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost);
  }
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);

  std::vector<double> reference(rows * c.n, 0.0);
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t r = 0; r < c.counts[e]; ++r, ++row)
      for (int64_t j = 0; j < c.n; ++j) {
        double sum = 0;
        for (int64_t i = 0; i < c.k; ++i)
          sum += double(x[row * c.k + i]) * w[(e * c.k + i) * c.n + j];
        reference[row * c.n + j] = sum;
      }
  double scale = 1e-30;
  for (double v : reference)
    scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < reference.size(); ++i)
    ASSERT_LE(std::abs(y[i] - reference[i]), c.tolerance * scale)
        << "element " << i << " (row " << i / c.n << ")";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ExpertGemmGpu,
    testing::Values(
        GemmCase{DType::F32, {5, 0, 17, 1}, 3, 64, 96, 1e-5},
        GemmCase{DType::F32, {0, 0, 0}, 4, 32, 32, 1e-5},
        // fp16 / bf16 outputs are rounded: half / bf16 ulp of the largest.
        GemmCase{DType::F16, {33, 2, 0, 64, 7, 1, 0, 9}, 0, 256, 128, 2e-3},
        GemmCase{DType::BF16, {128, 1, 3, 40}, 5, 512, 256, 1e-2}));

} // namespace
