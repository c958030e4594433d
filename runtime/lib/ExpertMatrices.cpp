//===- ExpertMatrices.cpp - expert weights read in place or packed --------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The packed kernel computes an 8 x 32 block of the result per call with 16
// AVX-512 accumulators: for every k it loads one packed row of the panel (two
// registers) and broadcasts one element of each of the 8 token rows. Token
// rows are first interleaved by 8 (row block r holds x[r..r+7][p] together
// for each p), so the broadcasts read consecutive floats. Panels are the
// outer loop: a panel comes from memory once and stays in L2 for the other
// row blocks. On this project's 2-core AMD EPYC (Zen 4) it runs the
// 32-row, 1024 x 2816 expert GEMM at ~91 GFLOP/s where OpenBLAS 0.3.21
// reaches ~62 (bench/results/cpu_vs_onnxruntime.json has the end-to-end
// figures).
//
//===----------------------------------------------------------------------===//

#include "ExpertMatrices.h"
#include "KernelSupport.h"
#include "WorkerPool.h"

#include <algorithm>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#define MOE_HAVE_AVX512_KERNEL 1
#include <immintrin.h>
#endif

using namespace moe::rt;
using namespace moe::rt::detail;

namespace {

constexpr int64_t panelWidth = ExpertMatrices::panelWidth;
/// Token rows per kernel call.
constexpr int64_t rowBlock = 8;

/// Whether a product of `multiplyAdds` is worth splitting among the pool's
/// threads: waking them costs tens of microseconds, more than a small
/// expert's whole product (measured: decoding the 256 x 512 experts of the
/// HF benchmark model got 1.5x slower on two threads when every product was
/// split).
bool worthSplitting(const WorkerPool *pool, int64_t multiplyAdds) {
  return pool && multiplyAdds >= (int64_t{1} << 20);
}

#if MOE_HAVE_AVX512_KERNEL

// GCC 12 reports the deliberately undefined pass-through operand inside
// _mm512_max_ps, _mm512_reduce_add_ps and their kin as maybe-uninitialised;
// nothing here is.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

/// y[0..Rows)[0..32) = xBlock (k x Rows, interleaved) * panel (k x 32);
/// `mask0` / `mask1` select the columns that exist in each half.
template <int Rows>
__attribute__((target("avx512f"))) void
multiplyBlock(int64_t k, const float *xBlock, const float *panel, float *y,
              int64_t ldy, __mmask16 mask0, __mmask16 mask1) {
  __m512 low[Rows], high[Rows];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    low[r] = _mm512_setzero_ps();
    high[r] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < k; ++p) {
    // The panel streams from memory on the first row block; fetch ahead.
    _mm_prefetch(reinterpret_cast<const char *>(panel + (p + 16) * panelWidth),
                 _MM_HINT_T0);
    __m512 b0 = _mm512_load_ps(panel + p * panelWidth);
    __m512 b1 = _mm512_load_ps(panel + p * panelWidth + 16);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      __m512 a = _mm512_set1_ps(xBlock[p * Rows + r]);
      low[r] = _mm512_fmadd_ps(a, b0, low[r]);
      high[r] = _mm512_fmadd_ps(a, b1, high[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    _mm512_mask_storeu_ps(y + r * ldy, mask0, low[r]);
    _mm512_mask_storeu_ps(y + r * ldy + 16, mask1, high[r]);
  }
}

using BlockFn = void (*)(int64_t, const float *, const float *, float *,
                         int64_t, __mmask16, __mmask16);
constexpr BlockFn blockFns[rowBlock + 1] = {
    nullptr,          multiplyBlock<1>, multiplyBlock<2>,
    multiplyBlock<3>, multiplyBlock<4>, multiplyBlock<5>,
    multiplyBlock<6>, multiplyBlock<7>, multiplyBlock<8>};

/// Panels [first, last) of y = x * packed (see multiplyPacked).
__attribute__((target("avx512f"))) void
multiplyPanels(const float *packed, int64_t k, int64_t n, const float *xBlocks,
               int64_t rows, float *y, int64_t first, int64_t last) {
  auto maskOf = [](int64_t count) {
    return static_cast<__mmask16>(count >= 16  ? 0xFFFF
                                  : count <= 0 ? 0
                                               : (1u << count) - 1);
  };
  for (int64_t j = first; j < last; ++j) {
    int64_t cols = std::min(panelWidth, n - j * panelWidth);
    __mmask16 mask0 = maskOf(cols), mask1 = maskOf(cols - 16);
    const float *panel = packed + j * k * panelWidth;
    for (int64_t r0 = 0; r0 < rows; r0 += rowBlock) {
      int64_t height = std::min(rowBlock, rows - r0);
      blockFns[height](k, xBlocks + r0 * k, panel, y + r0 * n + j * panelWidth,
                       n, mask0, mask1);
    }
  }
}

/// y[rows, n] = x[rows, k] * the packed matrix, the panels split among the
/// pool's threads.
void multiplyPacked(const float *packed, int64_t k, int64_t n, const float *x,
                    int64_t rows, float *y, WorkerPool *pool) {
  // Interleave the token rows by row block (see the file comment).
  thread_local std::vector<float> interleaved;
  interleaved.resize(rows * k);
  for (int64_t r0 = 0; r0 < rows; r0 += rowBlock) {
    int64_t height = std::min(rowBlock, rows - r0);
    float *block = interleaved.data() + r0 * k;
    for (int64_t r = 0; r < height; ++r)
      for (int64_t p = 0; p < k; ++p)
        block[p * height + r] = x[(r0 + r) * k + p];
  }
  int64_t panels = (n + panelWidth - 1) / panelWidth;
  const float *xBlocks = interleaved.data();
  if (!worthSplitting(pool, rows * k * n)) {
    multiplyPanels(packed, k, n, xBlocks, rows, y, 0, panels);
    return;
  }
  pool->parallelFor(panels, [&](int64_t first, int64_t last) {
    multiplyPanels(packed, k, n, xBlocks, rows, y, first, last);
  });
}

/// y[0..Rows)[j] = x[0..Rows) . w_j for j < n, where row j of the
/// transposed matrix (k contiguous floats) starts at w + j * ldw: decoding
/// with weights stored out-major, as com.microsoft.MoE and transformers keep
/// them. One weight row at a time, so that contiguous rows are one
/// sequential stream (~23.5 GB/s here, where OpenBLAS's sgemv on the same
/// rows reaches ~18.5); four partial sums per row hide the FMA latency.
template <int Rows>
__attribute__((target("avx512f"))) void
multiplyByRows(int64_t k, const float *x, const float *w, int64_t ldw,
               int64_t n, float *y, int64_t ldy) {
  for (int64_t j = 0; j < n; ++j) {
    const float *row = w + j * ldw;
    __m512 acc[4][Rows];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c)
#pragma GCC unroll 4
      for (int r = 0; r < Rows; ++r)
        acc[c][r] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 64 <= k; p += 64) {
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        __m512 ws = _mm512_loadu_ps(row + p + 16 * c);
#pragma GCC unroll 4
        for (int r = 0; r < Rows; ++r)
          acc[c][r] = _mm512_fmadd_ps(
              ws, _mm512_loadu_ps(x + r * k + p + 16 * c), acc[c][r]);
      }
    }
    for (; p < k; p += 16) {
      __mmask16 mask =
          static_cast<__mmask16>(k - p >= 16 ? 0xFFFF : (1u << (k - p)) - 1);
      __m512 ws = _mm512_maskz_loadu_ps(mask, row + p);
#pragma GCC unroll 4
      for (int r = 0; r < Rows; ++r)
        acc[0][r] = _mm512_fmadd_ps(
            ws, _mm512_maskz_loadu_ps(mask, x + r * k + p), acc[0][r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
      y[r * ldy + j] = _mm512_reduce_add_ps(
          _mm512_add_ps(_mm512_add_ps(acc[0][r], acc[1][r]),
                        _mm512_add_ps(acc[2][r], acc[3][r])));
  }
}

/// exp(x) for x in [-88, 88]: 2^n * exp(r) with |r| <= ln2 / 2 and a
/// degree-6 polynomial (relative error below 2e-7).
__attribute__((target("avx512f"))) __m512 expApprox(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2 = _mm512_set1_ps(0.693147180559945309f);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)),
                    _mm512_set1_ps(88.0f));
  __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, ln2, x);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f"))) void
multiplyBySiluOfAvx512(float *h, const float *g, int64_t count) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m512 gate = _mm512_loadu_ps(g + i);
    __m512 denominator =
        _mm512_add_ps(one, expApprox(_mm512_sub_ps(_mm512_setzero_ps(), gate)));
    __m512 silu = _mm512_div_ps(gate, denominator);
    _mm512_storeu_ps(h + i, _mm512_mul_ps(_mm512_loadu_ps(h + i), silu));
  }
  for (; i < count; ++i)
    h[i] *= silu(g[i]);
}

#pragma GCC diagnostic pop

#endif // MOE_HAVE_AVX512_KERNEL

} // namespace

bool detail::avx512KernelsAvailable() {
#if MOE_HAVE_AVX512_KERNEL
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
#else
  return false;
#endif
}

void detail::multiplyBySiluOf(float *h, const float *g, int64_t count) {
#if MOE_HAVE_AVX512_KERNEL
  if (avx512KernelsAvailable())
    return multiplyBySiluOfAvx512(h, g, count);
#endif
  for (int64_t i = 0; i < count; ++i)
    h[i] *= silu(g[i]);
}

ExpertMatrices ExpertMatrices::contiguous(const Tensor &tensor) {
  ExpertMatrices matrices;
  bool single = tensor.rank() == 2;
  matrices.data = tensor.as<float>();
  matrices.experts = single ? 1 : tensor.dim(0);
  matrices.k = tensor.dim(single ? 0 : 1);
  matrices.n = tensor.dim(single ? 1 : 2);
  matrices.expertStride = matrices.k * matrices.n;
  matrices.kStride = matrices.n;
  matrices.nStride = 1;
  return matrices;
}

bool ExpertMatrices::interleaved(const ExpertMatrices &gate,
                                 const ExpertMatrices &up,
                                 ExpertMatrices &both) {
  if (!gate.data || !up.data || gate.isPacked() || up.isPacked() ||
      gate.experts != up.experts || gate.k != up.k || gate.n != up.n ||
      gate.expertStride != up.expertStride || gate.kStride != 1 ||
      up.kStride != 1 || gate.nStride != up.nStride || gate.nStride % 2 != 0 ||
      up.data != gate.data + gate.nStride / 2)
    return false;
  both = gate;
  both.n = 2 * gate.n;
  both.nStride = gate.nStride / 2;
  return true;
}

Status ExpertMatrices::allocatePacked(const char *op) {
  int64_t panels = (n + panelWidth - 1) / panelWidth;
  Tensor storage(DType::F32, {experts * panels * k * panelWidth});
  if (!storage.data())
    return fail(op, "out of memory packing ", experts, " expert matrices of ",
                k, "x", n);
  packed = std::move(storage);
  return Status::success();
}

void ExpertMatrices::packExpert(int64_t e) {
  int64_t panels = (n + panelWidth - 1) / panelWidth;
  const float *source = data + e * expertStride;
  float *expert = packed.as<float>() + e * panels * k * panelWidth;
  auto target = [&](int64_t i, int64_t j) -> float & {
    return expert[((j / panelWidth) * k + i) * panelWidth + j % panelWidth];
  };
  // Walk the source in its own order so that its pages stream in once.
  if (nStride == 1) {
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < n; ++j)
        target(i, j) = source[i * kStride + j];
  } else {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < k; ++i)
        target(i, j) = source[i * kStride + j * nStride];
  }
}

std::pair<const float *, const float *>
ExpertMatrices::expertExtent(int64_t e) const {
  const float *begin = data + e * expertStride;
  return {begin, begin + (k - 1) * kStride + (n - 1) * nStride + 1};
}

Status ExpertMatrices::multiply(const char *op, int64_t expert, const float *x,
                                int64_t rows, float *y,
                                WorkerPool *pool) const {
  if (rows == 0)
    return Status::success();
  if (isPacked()) {
#if MOE_HAVE_AVX512_KERNEL
    if (avx512KernelsAvailable()) {
      int64_t panels = (n + panelWidth - 1) / panelWidth;
      multiplyPacked(packed.as<float>() + expert * panels * k * panelWidth, k,
                     n, x, rows, y, pool);
      return Status::success();
    }
#endif
    return fail(op, "internal error: packed expert weights on a CPU without "
                    "AVX-512");
  }
  const float *matrix = data + expert * expertStride;
#if MOE_HAVE_AVX512_KERNEL
  if (kStride == 1 && rows <= 4 && avx512KernelsAvailable()) {
    using RowsFn = void (*)(int64_t, const float *, const float *, int64_t,
                            int64_t, float *, int64_t);
    constexpr RowsFn rowsFns[] = {nullptr, multiplyByRows<1>, multiplyByRows<2>,
                                  multiplyByRows<3>, multiplyByRows<4>};
    // Decoding is bound by memory bandwidth, which grows with the cores
    // streaming: the pool's threads take contiguous runs of weight rows.
    auto columns = [&](int64_t first, int64_t last) {
      rowsFns[rows](k, x, matrix + first * nStride, nStride, last - first,
                    y + first, n);
    };
    if (worthSplitting(pool, rows * k * n))
      pool->parallelFor(n, columns);
    else
      columns(0, n);
    return Status::success();
  }
#endif
  if (nStride == 1)
    return sgemm(op, false, false, rows, n, k, 1.0f, x, k, matrix, kStride,
                 0.0f, y, n);
  if (kStride == 1)
    return sgemm(op, false, true, rows, n, k, 1.0f, x, k, matrix, nStride, 0.0f,
                 y, n);
  return fail(op, "internal error: expert weights with strides ", kStride,
              " and ", nStride, " are neither packed nor BLAS-compatible");
}
