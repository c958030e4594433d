//===- ExpertMatrices.h - expert weights read in place or packed -*- C++
//-*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Private to runtime/lib. The expert FFN multiplies token rows by one
// expert's [k, n] weight matrix at a time. ExpertMatrices describes a stack
// of such matrices wherever they lie:
// - in place, through strides: a contiguous tensor, or a transposed and
//   sliced view of a weight exactly as the ONNX file stores it (the executor
//   traces layout changes of weights back to the file, so a decoding rank
//   never copies its experts and only touches the pages of those it uses);
// - packed: copied once, at load, into panels of 32 columns, the layout of
//   the AVX-512 kernel below. OpenBLAS packs its B operand on every call,
//   which for the ~32 rows an expert gets in a prefill costs as much as the
//   multiplication itself (measured: 39 % of expert FFN time in
//   sgemm_itcopy); packing once makes those GEMMs ~1.5x faster.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_LIB_EXPERTMATRICES_H
#define MOE_RUNTIME_LIB_EXPERTMATRICES_H

#include "moe/Runtime/Kernels.h"
#include "moe/Runtime/Tensor.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace moe::rt::detail {

struct ExpertMatrices {
  /// Columns per panel of the packed layout (two AVX-512 registers).
  static constexpr int64_t panelWidth = 32;

  /// Element (e, i, j), for e < experts, i < k, j < n, lies at
  /// data[e * expertStride + i * kStride + j * nStride].
  const float *data = nullptr;
  int64_t experts = 0, k = 0, n = 0;
  int64_t expertStride = 0, kStride = 0, nStride = 0;
  /// When packing was requested: per expert, ceil(n / panelWidth) panels of
  /// k x panelWidth floats, row-major, zero beyond column n. `data` is then
  /// only read by packExpert().
  Tensor packed;

  /// A contiguous [experts, k, n] tensor, or [k, n] as one expert.
  static ExpertMatrices contiguous(const Tensor &tensor);

  /// [experts, k, n] (the shape the kernels check).
  Shape shape() const { return {experts, k, n}; }
  bool isPacked() const { return packed.data() != nullptr; }
  /// Whether multiply() can hand the in-place layout to BLAS: one of the
  /// two matrix strides must be 1.
  bool blasCompatible() const { return nStride == 1 || kStride == 1; }

  /// Whether `gate` and `up` are the even and odd rows of one out-major
  /// matrix (com.microsoft.MoE's interleaved SwiGLU fc1); if so, `both` is
  /// that matrix, its columns alternating gate, up. Reading every other row
  /// breaks the hardware prefetcher's stream (9 GB/s measured when
  /// decoding, against 23 for the whole matrix).
  static bool interleaved(const ExpertMatrices &gate, const ExpertMatrices &up,
                          ExpertMatrices &both);

  /// Allocates the packed layout (packExpert() fills it); fails only when
  /// memory runs out.
  Status allocatePacked(const char *op);
  /// Copies expert `e` into the packed layout.
  void packExpert(int64_t e);
  /// The bytes expert `e` reads in place: [begin, end).
  std::pair<const float *, const float *> expertExtent(int64_t e) const;

  /// y[rows, n] = x[rows, k] * W_expert, with x and y contiguous rows.
  /// With `pool`, the packed kernel splits the columns among its threads.
  Status multiply(const char *op, int64_t expert, const float *x, int64_t rows,
                  float *y, WorkerPool *pool = nullptr) const;
};

/// expert_ffn's weights as the executor prepared them at load.
struct PreparedExpertWeights {
  bool gated = false;
  ExpertMatrices gate, up, down;
};

/// Runs expert_ffn with prepared weights: `inputs` are the operation's
/// operands with the three weights absent (nullptr).
Status runPreparedExpertFFN(const Attributes &attrs,
                            const std::vector<const Tensor *> &inputs,
                            const PreparedExpertWeights &weights,
                            const std::vector<Tensor *> &outputs,
                            KernelContext &context);

/// Whether this CPU runs the AVX-512F kernels (the packed one, and the
/// few-row one for out-major weights); without them multiply() uses
/// OpenBLAS and the executor does not pack.
bool avx512KernelsAvailable();

/// h[i] *= silu(g[i]) for i < count (SwiGLU's gate), vectorised with
/// AVX-512 when available (the scalar expf was 7 % of a prefill's time).
void multiplyBySiluOf(float *h, const float *g, int64_t count);

} // namespace moe::rt::detail

#endif // MOE_RUNTIME_LIB_EXPERTMATRICES_H
