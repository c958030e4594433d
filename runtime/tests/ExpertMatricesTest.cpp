//===- ExpertMatricesTest.cpp - in-place and packed expert weights --------===//
//
// Part of moe-compiler's runtime tests.
//
// ExpertMatrices::multiply against a float64 loop over the same strided
// elements, for every way the executor reads expert weights: contiguous,
// transposed in place (out-major, as ONNX files store them; the few-row
// AVX-512 kernel for decoding), the even/odd rows of an interleaved SwiGLU
// matrix, and packed (the AVX-512 panel kernel), with row, k and column
// counts that leave every tail of the kernels partly filled.
//
//===----------------------------------------------------------------------===//

#include "../lib/ExpertMatrices.h"
#include "../lib/WorkerPool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>

using namespace moe::rt;
using namespace moe::rt::detail;

namespace {

/// Experts of [k, n] stored out-major ([experts, n, k]) in `storage`, read
/// as [experts, k, n] through strides.
ExpertMatrices outMajor(const std::vector<float> &storage, int64_t experts,
                        int64_t k, int64_t n) {
  ExpertMatrices m;
  m.data = storage.data();
  m.experts = experts;
  m.k = k;
  m.n = n;
  m.expertStride = n * k;
  m.kStride = 1;
  m.nStride = k;
  return m;
}

std::vector<float> randomValues(int64_t count, unsigned seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (float &value : values)
    value = normal(generator);
  return values;
}

/// Checks multiply() for every expert against a float64 loop.
void expectMatchesLoop(const ExpertMatrices &m, int64_t rows,
                       const ExpertMatrices *source = nullptr,
                       WorkerPool *pool = nullptr) {
  // A packed matrix is compared with the elements it was packed from.
  const ExpertMatrices &elements = source ? *source : m;
  std::vector<float> x = randomValues(rows * m.k, 7);
  std::vector<float> y(rows * m.n, NAN);
  for (int64_t e = 0; e < m.experts; ++e) {
    ASSERT_TRUE(m.multiply("test", e, x.data(), rows, y.data(), pool).ok);
    const float *w = elements.data + e * elements.expertStride;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < m.n; ++j) {
        double expected = 0.0;
        for (int64_t i = 0; i < m.k; ++i)
          expected += static_cast<double>(x[r * m.k + i]) *
                      w[i * elements.kStride + j * elements.nStride];
        ASSERT_NEAR(y[r * m.n + j], expected,
                    1e-4 * (1.0 + std::fabs(expected)))
            << "expert " << e << " row " << r << " column " << j << " of "
            << rows << "x" << m.k << "x" << m.n;
      }
    }
  }
}

struct Dims {
  int64_t experts, k, n;
};
// k = 37 and 70 leave tails of the 64- and 16-wide loops; n = 45 and 70
// leave partly filled panels (both halves of a 32-wide panel). 1024 x 1100
// is large enough (2^20 multiply-adds with one row) for a pool to split.
const Dims dims[] = {
    {2, 37, 45}, {3, 70, 70}, {1, 128, 32}, {2, 5, 17}, {1, 1024, 1100}};

TEST(ExpertMatricesTest, ContiguousMatchesLoop) {
  for (const Dims &d : dims) {
    std::vector<float> storage = randomValues(d.experts * d.k * d.n, 1);
    Tensor tensor(DType::F32, {d.experts, d.k, d.n});
    std::copy(storage.begin(), storage.end(), tensor.as<float>());
    ExpertMatrices m = ExpertMatrices::contiguous(tensor);
    for (int64_t rows : {1, 3, 9})
      expectMatchesLoop(m, rows);
  }
}

TEST(ExpertMatricesTest, OutMajorInPlaceMatchesLoop) {
  // Rows 1 to 4 take the few-row kernel (with AVX-512; the pool splits the
  // weight rows), more take BLAS.
  for (const Dims &d : dims) {
    std::vector<float> storage = randomValues(d.experts * d.k * d.n, 2);
    ExpertMatrices m = outMajor(storage, d.experts, d.k, d.n);
    WorkerPool pool(3);
    for (int64_t rows : {1, 2, 3, 4, 6}) {
      expectMatchesLoop(m, rows);
      expectMatchesLoop(m, rows, nullptr, &pool);
    }
  }
}

TEST(ExpertMatricesTest, InterleavedGateAndUpAreOneMatrix) {
  // com.microsoft.MoE's SwiGLU fc1: [experts, 2 * inter, hidden], gate on
  // the even rows, up on the odd ones.
  int64_t experts = 2, hidden = 37, inter = 21;
  std::vector<float> storage = randomValues(experts * 2 * inter * hidden, 3);
  ExpertMatrices gate = outMajor(storage, experts, hidden, inter);
  gate.expertStride = 2 * inter * hidden;
  gate.nStride = 2 * hidden;
  ExpertMatrices up = gate;
  up.data += hidden;
  ExpertMatrices both;
  ASSERT_TRUE(ExpertMatrices::interleaved(gate, up, both));
  EXPECT_EQ(both.n, 2 * inter);
  expectMatchesLoop(both, 1);
  expectMatchesLoop(gate, 1);
  expectMatchesLoop(up, 2);
  // Swapped, or not adjacent, they are two matrices.
  EXPECT_FALSE(ExpertMatrices::interleaved(up, gate, both));
  up.data += 1;
  EXPECT_FALSE(ExpertMatrices::interleaved(gate, up, both));
}

TEST(ExpertMatricesTest, PackedMatchesLoop) {
  if (!avx512KernelsAvailable())
    GTEST_SKIP() << "this CPU has no AVX-512F, so the executor never packs "
                    "expert weights here";
  for (const Dims &d : dims) {
    std::vector<float> storage = randomValues(d.experts * d.k * d.n, 4);
    // Packed both from the contiguous layout and from an out-major view.
    Tensor tensor(DType::F32, {d.experts, d.k, d.n});
    std::copy(storage.begin(), storage.end(), tensor.as<float>());
    ExpertMatrices sources[] = {ExpertMatrices::contiguous(tensor),
                                outMajor(storage, d.experts, d.k, d.n)};
    for (const ExpertMatrices &source : sources) {
      ExpertMatrices packed = source;
      ASSERT_TRUE(packed.allocatePacked("test").ok);
      for (int64_t e = 0; e < packed.experts; ++e)
        packed.packExpert(e);
      ASSERT_TRUE(packed.isPacked());
      // 1 to 7 rows use one partial block; 8, 9 and 17 add whole ones.
      // Three threads split the panels (fewer panels than threads too).
      WorkerPool pool(3);
      for (int64_t rows : {1, 5, 8, 9, 17}) {
        expectMatchesLoop(packed, rows, &source);
        expectMatchesLoop(packed, rows, &source, &pool);
      }
    }
  }
}

TEST(WorkerPoolTest, EveryIndexOnceInEveryLoop) {
  for (int threads : {1, 2, 5}) {
    WorkerPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    // Counts below, at and above the thread count, loop after loop.
    for (int64_t count : {0, 1, 3, 5, 64, 1000}) {
      for (int repeat = 0; repeat < 20; ++repeat) {
        std::vector<std::atomic<int>> visits(count);
        pool.parallelFor(count, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i)
            ++visits[i];
        });
        for (int64_t i = 0; i < count; ++i)
          ASSERT_EQ(visits[i].load(), 1) << "index " << i << " of " << count
                                         << ", " << threads << " threads";
      }
    }
  }
}

TEST(ExpertMatricesTest, SiluGateMatchesScalar) {
  std::vector<float> gate = randomValues(37, 5);
  gate[0] = -100.0f; // exp overflows without the clamp
  gate[1] = 100.0f;
  gate[2] = 0.0f;
  std::vector<float> h = randomValues(37, 6), expected = h;
  for (size_t i = 0; i < gate.size(); ++i)
    expected[i] *= gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i])));
  multiplyBySiluOf(h.data(), gate.data(), static_cast<int64_t>(h.size()));
  for (size_t i = 0; i < h.size(); ++i)
    EXPECT_NEAR(h[i], expected[i], 1e-6 * (1.0 + std::fabs(expected[i])))
        << "element " << i << " (gate " << gate[i] << ")";
}

} // namespace
