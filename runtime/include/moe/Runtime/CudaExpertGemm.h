//===- CudaExpertGemm.h - the experts' GEMMs on the GPU ---------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The matrix products of moe.expert_ffn on the GPU: rows grouped by expert
// (as the permute kernel writes them), each group times its expert's
// weight, in one cuBLAS grouped-batched call (cublasGemmGroupedBatchedEx:
// one group per expert with rows, so the experts' different row counts
// need no padding), or one cuBLAS GEMM per expert where the groups are
// large (GemmStrategy). f32, fp16 or bf16 storage, f32 accumulation.
//
// The header needs no CUDA: the handle and stream travel as `void *`.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_CUDAEXPERTGEMM_H
#define MOE_RUNTIME_CUDAEXPERTGEMM_H

#include "moe/Runtime/Kernels.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moe::rt::cuda {

/// How ExpertGemm issues the experts' products.
enum class GemmStrategy {
  /// PerExpert where the experts with rows have perExpertMinRows or more
  /// on average (prefill: each product is a large GEMM, and cuBLAS picks
  /// its best kernel for each), else Grouped (decode: one launch for all).
  Auto,
  /// One cublasGemmGroupedBatchedEx call (one GEMM per expert all the same
  /// when a matrix of some expert is not 16-byte aligned).
  Grouped,
  /// One cublasGemmEx call per expert with rows.
  PerExpert,
};

/// The mean rows per expert from which GemmStrategy::Auto calls cuBLAS once
/// per expert. Provisional: bench/gpu/expert_gemm_bench.cpp times both
/// strategies side by side to set it.
constexpr int64_t perExpertMinRows = 128;

/// The strategy Auto takes for `counts` (Grouped and PerExpert are taken
/// as they are).
GemmStrategy resolveStrategy(GemmStrategy strategy,
                             const std::vector<int64_t> &counts);

/// What a grouped GEMM keeps between calls: the cuBLAS handle and the
/// device arrays of per-group pointers. One per stream; not thread-safe.
class ExpertGemm {
public:
  ExpertGemm() = default;
  ExpertGemm(const ExpertGemm &) = delete;
  ExpertGemm &operator=(const ExpertGemm &) = delete;
  ~ExpertGemm();

  /// Creates the cuBLAS handle on the current device, bound to `stream`.
  Status init(void *stream = nullptr);

  /// out[r, :] = rows[r, :] @ weights[e] for the rows of expert e: rows
  /// [R, K] hold counts[0] rows of expert 0, then counts[1] of expert 1, ...
  /// (R >= their sum; rows past it are left alone), weights are [E, K, N]
  /// row-major, out [R, N]. dtype F32, F16 or BF16 for all three; f32
  /// accumulation. Device pointers; `counts` on the host.
  Status run(DType dtype, const void *rows, const std::vector<int64_t> &counts,
             int64_t k, int64_t n, const void *weights, void *out);

  /// How run() issues the products (Auto unless set).
  void setStrategy(GemmStrategy strategy) { strategy_ = strategy; }

private:
  GemmStrategy strategy_ = GemmStrategy::Auto;
  void *handle_ = nullptr;
  void *stream_ = nullptr;
  void **devicePointers_ = nullptr;
  size_t capacity_ = 0;
};

/// The experts' activation, in place on `n` device floats: `values` =
/// act(`values`) for relu, gelu, gelu_tanh, silu and identity; for swiglu
/// `values` = silu(`values`) * `up` (the gate's and the up projection's
/// products). Fails, naming it, on another activation.
Status activate(const std::string &activation, float *values, const float *up,
                int64_t n, void *stream = nullptr);
/// The same on f32, bf16 or f16 `values` and `up` (f32 math, rounded to
/// nearest even when stored in 16 bits).
Status activate(const std::string &activation, DType dtype, void *values,
                const void *up, int64_t n, void *stream = nullptr);

/// Adds a bias to each of `numRows` device rows of `columns` floats: the
/// same `bias` [columns] to all, or, with `offsets` (device, experts + 1
/// row offsets of the experts' groups), bias[e] of [experts, columns] to
/// the rows of expert e.
Status addBias(float *rows, const float *bias, const int64_t *offsets,
               int64_t experts, int64_t numRows, int64_t columns,
               void *stream = nullptr);
/// The same on f32, bf16 or f16 `rows` (an f32 bias).
Status addBias(DType dtype, void *rows, const float *bias,
               const int64_t *offsets, int64_t experts, int64_t numRows,
               int64_t columns, void *stream = nullptr);

/// Converts `n` device elements from f32 to bf16 or f16 (rounding to
/// nearest even, as moe::rt::floatToBfloat16 and floatToHalf) or back.
Status convertElements(DType from, const void *source, DType to, void *target,
                       int64_t n, void *stream = nullptr);

} // namespace moe::rt::cuda

#endif // MOE_RUNTIME_CUDAEXPERTGEMM_H
