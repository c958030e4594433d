//===- ExpertActivation.cu - the experts' activation on the GPU -----------===//
//
// Part of moe-compiler's runtime (CUDA backend).
//
// Between an expert's two GEMMs: one element-wise pass over the
// intermediate rows, bandwidth bound like the permute kernels.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaExpertGemm.h"

#include <cuda_runtime.h>

namespace moe::rt::cuda {
namespace {

enum class Kind { Relu, Gelu, GeluTanh, Silu, Identity, SwiGLU };

__global__ void activateKernel(float *values, const float *up, int64_t n,
                               Kind kind) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float x = values[i];
    switch (kind) {
    case Kind::Relu:
      x = fmaxf(x, 0.0f);
      break;
    case Kind::Gelu:
      x = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
      break;
    case Kind::GeluTanh:
      x = 0.5f * x *
          (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
      break;
    case Kind::Silu:
      x = x / (1.0f + expf(-x));
      break;
    case Kind::Identity:
      break;
    case Kind::SwiGLU:
      x = x / (1.0f + expf(-x)) * up[i];
      break;
    }
    values[i] = x;
  }
}

/// rows[r, c] += bias[c], or with `offsets` bias[e, c] for the expert e
/// whose rows [offsets[e], offsets[e + 1]) hold r.
__global__ void addBiasKernel(float *rows, const float *bias,
                              const int64_t *offsets, int64_t experts,
                              int64_t numRows, int64_t columns) {
  for (int64_t row = blockIdx.x; row < numRows; row += gridDim.x) {
    const float *rowBias = bias;
    if (offsets) {
      int64_t low = 0, high = experts - 1;
      while (low < high) {
        int64_t middle = (low + high + 1) / 2;
        if (offsets[middle] <= row)
          low = middle;
        else
          high = middle - 1;
      }
      rowBias = bias + low * columns;
    }
    for (int64_t c = threadIdx.x; c < columns; c += blockDim.x)
      rows[row * columns + c] += rowBias[c];
  }
}

Status launchStatus(const char *what) {
  if (cudaError_t error = cudaGetLastError(); error != cudaSuccess)
    return Status::error(std::string(what) + ": " + cudaGetErrorString(error));
  return Status::success();
}

} // namespace

Status addBias(float *rows, const float *bias, const int64_t *offsets,
               int64_t experts, int64_t numRows, int64_t columns,
               void *stream) {
  if (numRows <= 0 || columns <= 0)
    return Status::success();
  int64_t blocks = std::min<int64_t>(numRows, 65535);
  addBiasKernel<<<static_cast<unsigned>(blocks), 256, 0,
                  static_cast<cudaStream_t>(stream)>>>(
      rows, bias, offsets, experts, numRows, columns);
  return launchStatus("bias kernel");
}

Status activate(const std::string &activation, float *values, const float *up,
                int64_t n, void *stream) {
  Kind kind;
  if (activation == "relu")
    kind = Kind::Relu;
  else if (activation == "gelu")
    kind = Kind::Gelu;
  else if (activation == "gelu_tanh")
    kind = Kind::GeluTanh;
  else if (activation == "silu")
    kind = Kind::Silu;
  else if (activation == "identity")
    kind = Kind::Identity;
  else if (activation == "swiglu" && up)
    kind = Kind::SwiGLU;
  else
    return Status::error(
        "expert_ffn: activation '" + activation +
        "' is not supported by the CUDA backend" +
        (activation == "swiglu" ? " without a gate weight" : ""));
  if (n <= 0)
    return Status::success();
  int threads = 256;
  int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
  activateKernel<<<static_cast<unsigned>(blocks), threads, 0,
                   static_cast<cudaStream_t>(stream)>>>(values, up, n, kind);
  return launchStatus("activation kernel");
}

} // namespace moe::rt::cuda
