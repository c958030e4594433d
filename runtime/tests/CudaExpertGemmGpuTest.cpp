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
  // Both ways of issuing the products, on the same data.
  std::vector<std::vector<float>> results;
  for (GemmStrategy strategy :
       {GemmStrategy::Grouped, GemmStrategy::PerExpert}) {
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
    gemm.setStrategy(strategy);
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
    results.push_back(std::move(y));
  }
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
  for (size_t s = 0; s < results.size(); ++s)
    for (size_t i = 0; i < reference.size(); ++i)
      ASSERT_LE(std::abs(results[s][i] - reference[i]), c.tolerance * scale)
          << (s == 0 ? "grouped" : "per expert") << ": element " << i
          << " (row " << i / c.n << ")";
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

namespace {

//===----------------------------------------------------------------------===//
// The 16-bit paths' element-wise kernels
//===----------------------------------------------------------------------===//

/// bf16 and f16: the device kernels against the host's conversions
/// (Tensor.h), which the CPU backend and the weight conversion at load use.
class LowPrecisionKernelsGpu : public testing::TestWithParam<DType> {
protected:
  void SetUp() override {
    std::string why;
    if (!deviceAvailable(why)) {
      std::printf("SKIP: GPU test not run: %s\n", why.c_str());
      GTEST_SKIP() << why;
    }
  }
  uint16_t toBits(float value) const {
    return GetParam() == DType::BF16 ? floatToBfloat16(value)
                                     : floatToHalf(value);
  }
  float fromBits(uint16_t bits) const {
    return GetParam() == DType::BF16 ? bfloat16ToFloat(bits)
                                     : halfToFloat(bits);
  }
  /// Half an ulp at 1.0, relative: 2^-8 for bf16, 2^-11 for f16.
  float halfUlp() const {
    return GetParam() == DType::BF16 ? 0.00390625f : 0.00048828125f;
  }
};

/// Values that exercise rounding: ties, subnormals, the f16 limit and
/// past it, infinities, NaN.
std::vector<float> awkwardValues() {
  std::vector<float> values = {
      0.0f,        -0.0f,          1.0f,     -2.5f,     1.00390625f,
      1.01171875f, 1.00048828125f, 3.0e-39f, 6.0e-8f,   65504.0f,
      65520.0f,    1.0e6f,         INFINITY, -INFINITY, NAN};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int i = 0; i < 1000; ++i)
    values.push_back(normal(rng));
  return values;
}

TEST_P(LowPrecisionKernelsGpu, ConversionsRoundToNearestEvenAsTheHost) {
  DType low = GetParam();
  std::vector<float> values = awkwardValues();
  int64_t n = static_cast<int64_t>(values.size());
  float *source, *back;
  uint16_t *narrow;
  ASSERT_EQ(cudaMalloc(&source, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&back, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&narrow, n * 2), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(source, values.data(), n * 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_TRUE(convertElements(DType::F32, source, low, narrow, n));
  ASSERT_TRUE(convertElements(low, narrow, DType::F32, back, n));
  std::vector<uint16_t> bits(n);
  std::vector<float> widened(n);
  ASSERT_EQ(cudaMemcpy(bits.data(), narrow, n * 2, cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(widened.data(), back, n * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t expected = toBits(values[i]);
    if (std::isnan(values[i])) {
      EXPECT_TRUE(std::isnan(widened[i])) << "element " << i;
      continue;
    }
    EXPECT_EQ(bits[i], expected) << "element " << i << " = " << values[i];
    EXPECT_EQ(widened[i], fromBits(expected)) << "element " << i;
  }
  // Between two 16-bit types there is no kernel.
  DType other = low == DType::BF16 ? DType::F16 : DType::BF16;
  EXPECT_FALSE(convertElements(low, narrow, other, narrow, n));
  cudaFree(source);
  cudaFree(back);
  cudaFree(narrow);
}

TEST_P(LowPrecisionKernelsGpu, SwiGLUAndBiasOn16BitRows) {
  // 3 rows of 4 columns: bias per expert (rows 0-1 expert 0, row 2 expert
  // 1), then silu(gate) * up, all stored in 16 bits and computed in f32.
  DType low = GetParam();
  const int64_t rows = 3, columns = 4;
  std::vector<float> gate(rows * columns), up(rows * columns),
      bias = {0.5f, -1.0f, 2.0f, 0.0f, -0.25f, 1.5f, 0.0f, 3.0f};
  for (int64_t i = 0; i < rows * columns; ++i) {
    gate[i] = fromBits(toBits(0.37f * i - 2.0f));
    up[i] = fromBits(toBits(1.0f - 0.21f * i));
  }
  std::vector<int64_t> offsets = {0, 2, 3};
  auto allBits = [&](const std::vector<float> &values) {
    std::vector<uint16_t> bits;
    for (float value : values)
      bits.push_back(toBits(value));
    return bits;
  };
  uint16_t *gateDevice, *upDevice;
  float *biasDevice;
  int64_t *offsetsDevice;
  ASSERT_EQ(cudaMalloc(&gateDevice, rows * columns * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&upDevice, rows * columns * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&biasDevice, bias.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&offsetsDevice, offsets.size() * 8), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(gateDevice, allBits(gate).data(), rows * columns * 2,
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(upDevice, allBits(up).data(), rows * columns * 2,
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(biasDevice, bias.data(), bias.size() * 4,
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(offsetsDevice, offsets.data(), offsets.size() * 8,
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_TRUE(
      addBias(low, gateDevice, biasDevice, offsetsDevice, 2, rows, columns));
  ASSERT_TRUE(activate("swiglu", low, gateDevice, upDevice, rows * columns));
  std::vector<uint16_t> bits(rows * columns);
  ASSERT_EQ(cudaMemcpy(bits.data(), gateDevice, rows * columns * 2,
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c) {
      int64_t i = r * columns + c;
      int64_t expert = r < 2 ? 0 : 1;
      float biased = fromBits(toBits(gate[i] + bias[expert * columns + c]));
      float expected = biased / (1.0f + std::exp(-biased)) * up[i];
      // One 16-bit rounding of the result (the device's expf may differ
      // from the host's in the last f32 bit).
      EXPECT_NEAR(fromBits(bits[i]), expected,
                  std::abs(expected) * 2.02f * halfUlp() + 1e-6f)
          << "row " << r << ", column " << c;
    }
  cudaFree(gateDevice);
  cudaFree(upDevice);
  cudaFree(biasDevice);
  cudaFree(offsetsDevice);
}

INSTANTIATE_TEST_SUITE_P(Types, LowPrecisionKernelsGpu,
                         testing::Values(DType::BF16, DType::F16),
                         [](const testing::TestParamInfo<DType> &info) {
                           return std::string(dtypeName(info.param));
                         });

} // namespace
