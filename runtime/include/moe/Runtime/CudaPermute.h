//===- CudaPermute.h - token permute / unpermute on the GPU -----*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The CUDA backend's first kernels: the token permute that groups the
// (token, slot) pairs of a layer by expert (the device side of
// moe.dispatch), and the unpermute that weights each token's expert rows and
// sums them (moe.combine). The row order is the CPU backend's: a stable
// counting sort by expert, so the permuted rows agree exactly.
//
// The header needs no CUDA: streams travel as `void *` (a cudaStream_t), and
// the host-side helpers build and run without a GPU.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_CUDAPERMUTE_H
#define MOE_RUNTIME_CUDAPERMUTE_H

#include "moe/Runtime/Kernels.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moe::rt::cuda {

/// Inverts a dispatch order. `sources[r]` is the pair (t * top_k + j) that
/// row r holds, -1 for capacity padding; the result maps each of `pairs`
/// pairs to its row, -1 when capacity dropped it. Fails, naming the row, on
/// a source out of range or a pair held by two rows.
Status invertDispatchOrder(const std::vector<int64_t> &sources, int64_t pairs,
                           std::vector<int64_t> &rowOfPair);

/// True when the CUDA runtime sees a device; otherwise `why` says what is
/// missing (no driver, no device), for the skip lines of the GPU tests.
bool deviceAvailable(std::string &why);

/// out[r, :] = tokens[sources[r] / top_k, :], zeros for sources[r] == -1.
/// All pointers are device memory; f32, row-major, `hidden` columns. The
/// kernel does not check sources: each must be -1 or below tokens * top_k
/// (invertDispatchOrder checks exactly that on the host).
Status permuteRows(const float *tokens, const int64_t *sources, int64_t rows,
                   int64_t hidden, int64_t topK, float *out,
                   void *stream = nullptr);

/// out[t, :] = sum_j weights[t, j] * expertRows[rowOfPair[t * top_k + j], :]
/// over the pairs that were not dropped, summed in f32 in slot order (fixed,
/// so deterministic; the CPU backend sums in row order, so the two agree to
/// rounding). Device pointers.
Status unpermuteCombine(const float *expertRows, const int64_t *rowOfPair,
                        const float *weights, int64_t tokens, int64_t topK,
                        int64_t hidden, float *out, void *stream = nullptr);

} // namespace moe::rt::cuda

#endif // MOE_RUNTIME_CUDAPERMUTE_H
