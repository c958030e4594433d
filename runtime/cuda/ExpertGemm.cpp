//===- ExpertGemm.cpp - the experts' GEMMs through cuBLAS -----------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// cuBLAS is column-major; a row-major [M, N] matrix is its column-major
// transpose. So Y_e = X_e W_e (row-major) is computed as the column-major
// Y_e^T = W_e^T X_e^T: A = W_e (N x K, lda N), B = X_e (K x M_e, ldb K),
// C = Y_e (N x M_e, ldc N), no transposes.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaExpertGemm.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

using namespace moe::rt;
using namespace moe::rt::cuda;

namespace {

Status cublasError(const char *what, cublasStatus_t status) {
  return Status::error(std::string("expert_gemm: ") + what +
                       " failed: " + cublasGetStatusString(status));
}

} // namespace

GemmStrategy
moe::rt::cuda::resolveStrategy(GemmStrategy strategy,
                               const std::vector<int64_t> &counts) {
  if (strategy != GemmStrategy::Auto)
    return strategy;
  int64_t rows = 0, experts = 0;
  for (int64_t count : counts)
    if (count > 0) {
      rows += count;
      ++experts;
    }
  return experts > 0 && rows >= perExpertMinRows * experts
             ? GemmStrategy::PerExpert
             : GemmStrategy::Grouped;
}

ExpertGemm::~ExpertGemm() {
  if (devicePointers_)
    cudaFree(devicePointers_);
  if (handle_)
    cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

Status ExpertGemm::init(void *stream) {
  cublasHandle_t handle;
  if (cublasStatus_t status = cublasCreate(&handle);
      status != CUBLAS_STATUS_SUCCESS)
    return cublasError("cublasCreate", status);
  handle_ = handle;
  stream_ = stream;
  if (cublasStatus_t status =
          cublasSetStream(handle, static_cast<cudaStream_t>(stream));
      status != CUBLAS_STATUS_SUCCESS)
    return cublasError("cublasSetStream", status);
  return Status::success();
}

Status ExpertGemm::run(DType dtype, const void *rows,
                       const std::vector<int64_t> &counts, int64_t k, int64_t n,
                       const void *weights, void *out) {
  if (!handle_)
    return Status::error("expert_gemm: init() was not called");
  cudaDataType_t type;
  size_t elementBytes;
  switch (dtype) {
  case DType::F32:
    type = CUDA_R_32F;
    elementBytes = 4;
    break;
  case DType::F16:
    type = CUDA_R_16F;
    elementBytes = 2;
    break;
  case DType::BF16:
    type = CUDA_R_16BF;
    elementBytes = 2;
    break;
  default:
    return Status::error(std::string("expert_gemm: ") + dtypeName(dtype) +
                         " is not supported (f32, f16, bf16 are)");
  }
  if (k <= 0 || n <= 0 || k > INT32_MAX || n > INT32_MAX)
    return Status::error("expert_gemm: K and N must be in [1, 2^31)");

  // One group per expert that has rows.
  std::vector<cublasOperation_t> noTranspose;
  std::vector<int> m, nn, kk, lda, ldb, ldc, groupSize;
  std::vector<float> alpha, beta;
  std::vector<const void *> a, b;
  std::vector<void *> c;
  const char *x = static_cast<const char *>(rows);
  const char *w = static_cast<const char *>(weights);
  char *y = static_cast<char *>(out);
  int64_t first = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    int64_t count = counts[e];
    if (count < 0 || count > INT32_MAX)
      return Status::error("expert_gemm: count " + std::to_string(count) +
                           " of expert " + std::to_string(e) +
                           " is out of range");
    if (count > 0) {
      noTranspose.push_back(CUBLAS_OP_N);
      m.push_back(static_cast<int>(n));
      nn.push_back(static_cast<int>(count));
      kk.push_back(static_cast<int>(k));
      lda.push_back(static_cast<int>(n));
      ldb.push_back(static_cast<int>(k));
      ldc.push_back(static_cast<int>(n));
      groupSize.push_back(1);
      alpha.push_back(1.0f);
      beta.push_back(0.0f);
      a.push_back(w + e * k * n * elementBytes);
      b.push_back(x + first * k * elementBytes);
      c.push_back(y + first * n * elementBytes);
    }
    first += count;
  }
  int groups = static_cast<int>(a.size());
  if (groups == 0)
    return Status::success();
  auto handle = static_cast<cublasHandle_t>(handle_);
  // The grouped kernels are picked for all groups at once, assuming 16-byte
  // aligned matrices; an expert starting at an odd row of a narrow matrix
  // breaks that, and one GEMM per expert lets cuBLAS pick for each.
  auto aligned = [](const void *pointer) {
    return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
  };
  bool allAligned = true;
  for (int g = 0; g < groups; ++g)
    allAligned = allAligned && aligned(a[g]) && aligned(b[g]) && aligned(c[g]);
  if (!allAligned ||
      resolveStrategy(strategy_, counts) == GemmStrategy::PerExpert) {
    for (int g = 0; g < groups; ++g)
      if (cublasStatus_t status = cublasGemmEx(
              handle, CUBLAS_OP_N, CUBLAS_OP_N, m[g], nn[g], kk[g], &alpha[g],
              a[g], type, lda[g], b[g], type, ldb[g], &beta[g], c[g], type,
              ldc[g], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
          status != CUBLAS_STATUS_SUCCESS)
        return cublasError("cublasGemmEx", status);
    return Status::success();
  }

  // The pointer arrays live on the device.
  size_t needed = 3 * static_cast<size_t>(groups);
  if (needed > capacity_) {
    if (devicePointers_)
      cudaFree(devicePointers_);
    devicePointers_ = nullptr;
    capacity_ = 0;
    if (cudaMalloc(&devicePointers_, needed * sizeof(void *)) != cudaSuccess)
      return Status::error("expert_gemm: out of device memory for " +
                           std::to_string(needed) + " pointers");
    capacity_ = needed;
  }
  std::vector<const void *> pointers;
  pointers.insert(pointers.end(), a.begin(), a.end());
  pointers.insert(pointers.end(), b.begin(), b.end());
  pointers.insert(pointers.end(), c.begin(), c.end());
  auto stream = static_cast<cudaStream_t>(stream_);
  if (cudaMemcpyAsync(devicePointers_, pointers.data(), needed * sizeof(void *),
                      cudaMemcpyHostToDevice, stream) != cudaSuccess)
    return Status::error("expert_gemm: cannot copy the pointer arrays");
  auto arrays = reinterpret_cast<void **>(devicePointers_);
  cublasStatus_t status = cublasGemmGroupedBatchedEx(
      handle, noTranspose.data(), noTranspose.data(), m.data(), nn.data(),
      kk.data(), alpha.data(), const_cast<const void *const *>(arrays), type,
      lda.data(), const_cast<const void *const *>(arrays + groups), type,
      ldb.data(), beta.data(), arrays + 2 * groups, type, ldc.data(), groups,
      groupSize.data(), CUBLAS_COMPUTE_32F);
  // cuBLAS reads the host arrays during the call, and a copy from pageable
  // memory has left `pointers` when cudaMemcpyAsync returns, so nothing
  // here needs to outlive the call; the next call's copy into the same
  // device arrays waits for this GEMM in stream order.
  if (status != CUBLAS_STATUS_SUCCESS)
    return cublasError("cublasGemmGroupedBatchedEx", status);
  return Status::success();
}
