//===- CudaExecutor.h - running a program on one GPU ------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The CUDA backend's executor: runs a program compiled with
// `moe-compile --target cuda` on one GPU. At load it uploads the constants
// and the weights (only the bytes this rank reads), loads the program's PTX
// modules through the CUDA driver (which compiles them for the device),
// runs the operations that depend only on weights once, and places every
// intermediate value in one device arena planned by liveness
// (MemoryPlan.h). A run then enqueues every operation on one stream:
//
//   launch       the generated kernels of a fused group (KernelLaunch.h)
//   reshape      a device-to-device copy
//   matmul       cuBLAS (one GEMM, or strided batches over equal leading
//                dimensions; f32)
//   dispatch     the expert order on the host (a counting sort, as the CPU
//                backend's), then the permute kernel (CudaPermute.h)
//   expert_ffn   grouped GEMMs (CudaExpertGemm.h) around the activation
//   combine      the weighted unpermute kernel
//
// Anything else is refused at load, naming the operation and its line.
// Partitioned programs (grids) are refused too: the NCCL transport exists
// (NCCLCommunicator.h) but is not wired into this executor yet.
//
// The header needs no CUDA.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_CUDAEXECUTOR_H
#define MOE_RUNTIME_CUDAEXECUTOR_H

#include "moe/Runtime/Program.h"

#include <memory>
#include <string>
#include <vector>

namespace moe::rt::cuda {

/// Whether `program` was compiled for the CUDA target (it launches
/// generated kernels).
inline bool isCudaProgram(const Program &program) {
  if (!program.gpuModules.empty())
    return true;
  for (const Operation &op : program.operations)
    if (op.op == "launch")
      return true;
  return false;
}

/// Whether the CUDA backend can run every operation of `program`; else
/// the first it cannot, named by line, and why. Needs no GPU.
Status checkCudaSupport(const Program &program);

class CudaExecutor {
public:
  /// Loads `program` onto GPU `device`; weight files are found as the CPU
  /// executor finds them.
  static Status create(Program program, const std::string &programDirectory,
                       int device, std::unique_ptr<CudaExecutor> &executor);
  ~CudaExecutor();

  const Program &program() const;

  /// Runs the program on host `inputs` (one per program input, matching
  /// its dtype and shape) and copies the outputs back into `outputs`.
  Status run(const std::vector<Tensor> &inputs, std::vector<Tensor> &outputs);

  /// Bytes of weights and constants on the device, and of the arena.
  int64_t weightBytes() const;
  int64_t arenaBytes() const;

  /// The device's name, for reports.
  std::string deviceName() const;

  struct State;

private:
  CudaExecutor() = default;
  std::unique_ptr<State> state_;
};

} // namespace moe::rt::cuda

#endif // MOE_RUNTIME_CUDAEXECUTOR_H
