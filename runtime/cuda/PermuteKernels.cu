//===- PermuteKernels.cu - token permute / unpermute kernels --------------===//
//
// Part of moe-compiler's runtime (CUDA backend).
//
// Both kernels are bandwidth bound: each moves every selected row once. They
// copy float4 vectors when the rows allow it (hidden divisible by 4; the
// cudaMalloc'd bases are 256-byte aligned) and scalars otherwise.
// unpermute sums a token's slots in a fixed order in registers, with no
// atomics, so results are deterministic.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaPermute.h"

#include "../lib/KernelSupport.h"

#include <cuda_runtime.h>

namespace moe::rt::cuda {
namespace {

template <typename Vec>
__global__ void permuteRowsKernel(const Vec *tokens, const int64_t *sources,
                                  int64_t rows, int64_t vecsPerRow,
                                  int64_t topK, Vec *out) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int64_t source = sources[row];
    Vec *target = out + row * vecsPerRow;
    if (source < 0) {
      for (int64_t i = threadIdx.x; i < vecsPerRow; i += blockDim.x)
        target[i] = Vec{};
      continue;
    }
    const Vec *from = tokens + (source / topK) * vecsPerRow;
    for (int64_t i = threadIdx.x; i < vecsPerRow; i += blockDim.x)
      target[i] = from[i];
  }
}

__device__ inline void accumulate(float &sum, float weight, float value) {
  sum += weight * value;
}
__device__ inline void accumulate(float4 &sum, float weight, float4 value) {
  sum.x += weight * value.x;
  sum.y += weight * value.y;
  sum.z += weight * value.z;
  sum.w += weight * value.w;
}

template <typename Vec>
__global__ void
unpermuteCombineKernel(const Vec *expertRows, const int64_t *rowOfPair,
                       const float *weights, int64_t tokens, int64_t topK,
                       int64_t vecsPerRow, Vec *out) {
  for (int64_t token = blockIdx.x; token < tokens; token += gridDim.x) {
    for (int64_t i = threadIdx.x; i < vecsPerRow; i += blockDim.x) {
      Vec sum{};
      for (int64_t slot = 0; slot < topK; ++slot) {
        int64_t row = rowOfPair[token * topK + slot];
        if (row >= 0)
          accumulate(sum, weights[token * topK + slot],
                     expertRows[row * vecsPerRow + i]);
      }
      out[token * vecsPerRow + i] = sum;
    }
  }
}

Status check(const char *op, cudaError_t error) {
  if (error == cudaSuccess)
    return Status::success();
  return detail::fail(op, cudaGetErrorString(error));
}

/// One block per row up to a grid the device fills several times over;
/// the kernels stride over the rest.
unsigned gridFor(int64_t rows) {
  constexpr int64_t maxBlocks = 65535;
  return static_cast<unsigned>(rows < maxBlocks ? (rows > 0 ? rows : 1)
                                                : maxBlocks);
}

unsigned threadsFor(int64_t vecsPerRow) {
  return vecsPerRow >= 256 ? 256 : (vecsPerRow >= 64 ? 128 : 32);
}

bool vectorizable(const void *a, const void *b, int64_t hidden) {
  return hidden % 4 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(b) % 16 == 0;
}

} // namespace

bool deviceAvailable(std::string &why) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    why = std::string("the CUDA runtime found no usable device: ") +
          cudaGetErrorString(error);
    return false;
  }
  if (count == 0) {
    why = "the CUDA runtime reports 0 devices";
    return false;
  }
  return true;
}

Status permuteRows(const float *tokens, const int64_t *sources, int64_t rows,
                   int64_t hidden, int64_t topK, float *out, void *stream) {
  if (rows < 0 || hidden < 0 || topK < 1)
    return detail::fail("permute", "bad sizes rows=", rows, " hidden=", hidden,
                        " top_k=", topK);
  if (rows == 0 || hidden == 0)
    return Status::success();
  auto cudaStream = static_cast<cudaStream_t>(stream);
  if (vectorizable(tokens, out, hidden)) {
    int64_t vecs = hidden / 4;
    permuteRowsKernel<<<gridFor(rows), threadsFor(vecs), 0, cudaStream>>>(
        reinterpret_cast<const float4 *>(tokens), sources, rows, vecs, topK,
        reinterpret_cast<float4 *>(out));
  } else {
    permuteRowsKernel<<<gridFor(rows), threadsFor(hidden), 0, cudaStream>>>(
        tokens, sources, rows, hidden, topK, out);
  }
  return check("permute", cudaGetLastError());
}

Status unpermuteCombine(const float *expertRows, const int64_t *rowOfPair,
                        const float *weights, int64_t tokens, int64_t topK,
                        int64_t hidden, float *out, void *stream) {
  if (tokens < 0 || hidden < 0 || topK < 1)
    return detail::fail("unpermute", "bad sizes tokens=", tokens,
                        " hidden=", hidden, " top_k=", topK);
  if (tokens == 0 || hidden == 0)
    return Status::success();
  auto cudaStream = static_cast<cudaStream_t>(stream);
  if (vectorizable(expertRows, out, hidden)) {
    int64_t vecs = hidden / 4;
    unpermuteCombineKernel<<<gridFor(tokens), threadsFor(vecs), 0,
                             cudaStream>>>(
        reinterpret_cast<const float4 *>(expertRows), rowOfPair, weights,
        tokens, topK, vecs, reinterpret_cast<float4 *>(out));
  } else {
    unpermuteCombineKernel<<<gridFor(tokens), threadsFor(hidden), 0,
                             cudaStream>>>(expertRows, rowOfPair, weights,
                                           tokens, topK, hidden, out);
  }
  return check("unpermute", cudaGetLastError());
}

} // namespace moe::rt::cuda
