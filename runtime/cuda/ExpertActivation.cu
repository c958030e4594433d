//===- ExpertActivation.cu - the experts' activation on the GPU -----------===//
//
// Part of moe-compiler's runtime (CUDA backend).
//
// Between an expert's two GEMMs: one element-wise pass over the
// intermediate rows, bandwidth bound like the permute kernels; f32, bf16 or
// fp16 storage, f32 math. Also the conversions between f32 and the 16-bit
// types of the low-precision paths.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaExpertGemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

namespace moe::rt::cuda {
namespace {

enum class Kind { Relu, Gelu, GeluTanh, Silu, Identity, SwiGLU };

__device__ float load(const float *values, int64_t i) { return values[i]; }
__device__ float load(const __nv_bfloat16 *values, int64_t i) {
  return __bfloat162float(values[i]);
}
__device__ float load(const __half *values, int64_t i) {
  return __half2float(values[i]);
}
__device__ void store(float *values, int64_t i, float x) { values[i] = x; }
__device__ void store(__nv_bfloat16 *values, int64_t i, float x) {
  values[i] = __float2bfloat16_rn(x);
}
__device__ void store(__half *values, int64_t i, float x) {
  values[i] = __float2half_rn(x);
}

/// Calls `body` with a null pointer of the device type that stores `dtype`
/// (f32, bf16 or fp16); false for another type.
template <typename Body> bool withStorage(DType dtype, Body &&body) {
  switch (dtype) {
  case DType::F32:
    body(static_cast<float *>(nullptr));
    return true;
  case DType::BF16:
    body(static_cast<__nv_bfloat16 *>(nullptr));
    return true;
  case DType::F16:
    body(static_cast<__half *>(nullptr));
    return true;
  default:
    return false;
  }
}

template <typename T>
__global__ void activateKernel(T *values, const T *up, int64_t n, Kind kind) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float x = load(values, i);
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
      x = x / (1.0f + expf(-x)) * load(up, i);
      break;
    }
    store(values, i, x);
  }
}

template <typename From, typename To>
__global__ void convertKernel(const From *source, To *target, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(target, i, load(source, i));
}

/// rows[r, c] += bias[c], or with `offsets` bias[e, c] for the expert e
/// whose rows [offsets[e], offsets[e + 1]) hold r.
template <typename T>
__global__ void addBiasKernel(T *rows, const float *bias,
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
    for (int64_t c = threadIdx.x; c < columns; c += blockDim.x) {
      int64_t i = row * columns + c;
      store(rows, i, load(rows, i) + rowBias[c]);
    }
  }
}

Status launchStatus(const char *what) {
  if (cudaError_t error = cudaGetLastError(); error != cudaSuccess)
    return Status::error(std::string(what) + ": " + cudaGetErrorString(error));
  return Status::success();
}

/// Grid-stride blocks for `n` elements.
unsigned blocksFor(int64_t n, int threads) {
  return static_cast<unsigned>(
      std::min<int64_t>((n + threads - 1) / threads, 65535));
}

Status unsupportedType(const char *what, DType dtype) {
  return Status::error(std::string(what) + ": " + dtypeName(dtype) +
                       " is not supported (f32, bf16 and f16 are)");
}

} // namespace

Status addBias(DType dtype, void *rows, const float *bias,
               const int64_t *offsets, int64_t experts, int64_t numRows,
               int64_t columns, void *stream) {
  if (numRows <= 0 || columns <= 0)
    return Status::success();
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>(numRows, 65535));
  auto cudaStream = static_cast<cudaStream_t>(stream);
  bool supported = withStorage(dtype, [&](auto *typed) {
    using T = std::remove_pointer_t<decltype(typed)>;
    addBiasKernel<<<blocks, 256, 0, cudaStream>>>(
        static_cast<T *>(rows), bias, offsets, experts, numRows, columns);
  });
  if (!supported)
    return unsupportedType("bias kernel", dtype);
  return launchStatus("bias kernel");
}

Status addBias(float *rows, const float *bias, const int64_t *offsets,
               int64_t experts, int64_t numRows, int64_t columns,
               void *stream) {
  return addBias(DType::F32, rows, bias, offsets, experts, numRows, columns,
                 stream);
}

Status convertElements(DType from, const void *source, DType to, void *target,
                       int64_t n, void *stream) {
  if (n <= 0)
    return Status::success();
  unsigned blocks = blocksFor(n, 256);
  auto cudaStream = static_cast<cudaStream_t>(stream);
  // One side is f32, the other any storage type.
  bool supported = false;
  if ((from == DType::F32) != (to == DType::F32))
    withStorage(from, [&](auto *typedFrom) {
      supported = withStorage(to, [&](auto *typedTo) {
        using From = std::remove_pointer_t<decltype(typedFrom)>;
        using To = std::remove_pointer_t<decltype(typedTo)>;
        convertKernel<<<blocks, 256, 0, cudaStream>>>(
            static_cast<const From *>(source), static_cast<To *>(target), n);
      });
    });
  if (!supported)
    return Status::error(std::string("conversion from ") + dtypeName(from) +
                         " to " + dtypeName(to) +
                         " is not supported (f32 <-> bf16 and f32 <-> f16 "
                         "are)");
  return launchStatus("conversion kernel");
}

Status activate(const std::string &activation, float *values, const float *up,
                int64_t n, void *stream) {
  return activate(activation, DType::F32, values, up, n, stream);
}

Status activate(const std::string &activation, DType dtype, void *values,
                const void *up, int64_t n, void *stream) {
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
  unsigned blocks = blocksFor(n, 256);
  auto cudaStream = static_cast<cudaStream_t>(stream);
  bool supported = withStorage(dtype, [&](auto *typed) {
    using T = std::remove_pointer_t<decltype(typed)>;
    activateKernel<<<blocks, 256, 0, cudaStream>>>(
        static_cast<T *>(values), static_cast<const T *>(up), n, kind);
  });
  if (!supported)
    return unsupportedType("activation kernel", dtype);
  return launchStatus("activation kernel");
}

} // namespace moe::rt::cuda
