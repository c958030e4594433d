//===- CudaExecutor.h - running a program on one GPU ------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The CUDA backend's executor: runs a program compiled with
// `moe-compile --target cuda` on one GPU. At load it uploads the constants
// and the weights (only the bytes this rank reads), loads the program's
// kernels (each module's cubin where it fits the device, else its PTX,
// which the driver compiles),
// runs the operations that depend only on weights once, and places every
// intermediate value in one device arena planned by liveness
// (MemoryPlan.h). A run then enqueues every operation on one stream
// (CudaOptions::overlap moves some onto a second):
//
//   launch       the generated kernels of a fused group (KernelLaunch.h)
//   reshape      a device-to-device copy
//   matmul       cuBLAS (one GEMM, or strided batches over equal leading
//                dimensions; f32)
//   dispatch     the expert order on the host (a counting sort, as the CPU
//                backend's), then the permute kernel (CudaPermute.h)
//   expert_ffn   grouped GEMMs (CudaExpertGemm.h) around the activation, f32
//                bf16 or fp16 storage (CudaOptions)
//   combine      the weighted unpermute kernel
//   collectives  all_reduce, all_gather, ragged_all_to_all, stage_transfer
//                through the rank's communicator on device memory (NCCL, or
//                a host transport staged through host copies); all_slice
//                and transpose_chunks as device copies
//   index ops    integer results (the counts of expert parallelism) through
//                the CPU kernels on host copies, next to the code that
//                sizes copies and GEMMs by them
//
// Anything else is refused at load, naming the operation and its line.
// A partitioned program is SPMD as on the CPU backend: every rank creates
// its executor with its communicator, one GPU per rank, or several ranks
// on one GPU with the staged communicator (NCCL refuses that).
//
// The header needs no CUDA.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_CUDAEXECUTOR_H
#define MOE_RUNTIME_CUDAEXECUTOR_H

#include "moe/Runtime/Collectives.h"
#include "moe/Runtime/Program.h"

#include <memory>
#include <string>
#include <utility>
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

/// `host`'s ranks for device buffers, staged through host copies with
/// cudaMemcpy (StagedCommunicator.h); `host` must outlive it.
std::unique_ptr<Communicator> stagedDeviceCommunicator(Communicator &host);

/// The number of CUDA devices, 0 when there are none (or no driver).
int deviceCount();

/// The stretches [first, last] of `program`'s operations that CUDA graphs
/// replay (CudaOptions::graphs): runs of two or more operations that need
/// no host (launches, f32 matmuls, dense FFNs, reshapes of non-index
/// values), over operations `skipped` (static, or another pipeline
/// stage's). `uncapturable` marks operations of those kinds that end a
/// stretch all the same (those overlapPlan moves). Needs no GPU.
std::vector<std::pair<size_t, size_t>>
graphStretches(const Program &program, const std::vector<bool> &skipped,
               const std::vector<bool> &uncapturable);

/// Where CudaOptions::overlap enqueues each operation of `program`: the
/// index of the collective that talks to other ranks (all_gather,
/// all_reduce, ragged_all_to_all, stage_transfer) whose wait it is moved
/// to, onto a second stream, so that it computes while the collective
/// moves data (the shared expert while the experts' rows are exchanged);
/// -1 for operations that run in program order. An operation moves when it
/// needs no host (launches, matmuls, dense FFNs, reshapes of non-index
/// values), to the first such collective at which everything it reads is
/// computed (or moved to a collective no later), but no earlier than the
/// fourth-last collective before it (about one layer's). Operations
/// `skipped` (static, or another pipeline stage's) neither move nor
/// count as collectives. Needs no GPU.
std::vector<int> overlapPlan(const Program &program,
                             const std::vector<bool> &skipped);

/// Whether the CUDA backend can run every operation of `program`; else
/// the first it cannot, named by line, and why. Needs no GPU.
Status checkCudaSupport(const Program &program);

/// How the CUDA backend computes.
struct CudaOptions {
  /// The storage type of the feed-forward GEMMs (expert_ffn and ffn on
  /// weights alone: their weights, input rows and intermediate rows), with
  /// f32 accumulation: F32 (the reference), BF16 or F16 (weights converted
  /// at load, rows converted around the FFN). Other GEMMs (attention, the
  /// router, output heads) stay f32, so routing decisions see f32 logits.
  DType feedForwardType = DType::F32;
  /// Replay each stretch of operations that needs no host (launches,
  /// copies, f32 GEMMs, dense FFNs: the attention and normalisation between
  /// MoE layers) as one CUDA graph, captured on the first run; a stretch
  /// that cannot be captured runs op by op.
  bool graphs = false;
  /// Run the operations overlapPlan moves on a second stream (with its own
  /// cuBLAS handle and workspace), forked when their collective waits for
  /// the first stream and joined where they stood in the program: the
  /// shared expert computes while the all-to-all moves the experts' rows.
  /// Their buffers live from the collective to their old position, so the
  /// arena may grow.
  bool overlap = false;
};

class CudaExecutor {
public:
  /// Loads `program` onto GPU `device`; weight files are found as the CPU
  /// executor finds them. A partitioned program needs `world`, a
  /// communicator of device memory (createNCCLCommunicator, or
  /// stagedDeviceCommunicator) with as many ranks as its grid (collective:
  /// all ranks create their executors together); a one-device grid runs
  /// without one.
  static Status create(Program program, const std::string &programDirectory,
                       int device, std::unique_ptr<CudaExecutor> &executor,
                       Communicator *world = nullptr,
                       const CudaOptions &options = CudaOptions());
  ~CudaExecutor();

  const Program &program() const;

  /// Runs the program on host `inputs` (one per program input, matching
  /// its dtype and shape) and copies the outputs back into `outputs`.
  Status run(const std::vector<Tensor> &inputs, std::vector<Tensor> &outputs);

  /// Bytes of weights and constants on the device, and of the arena.
  int64_t weightBytes() const;
  int64_t arenaBytes() const;

  /// How many of the program's gpu-modules were loaded from their cubin
  /// (the rest from PTX, compiled by the driver).
  int modulesFromCubin() const;

  /// The CUDA graphs the runs replay (after the first run; 0 without
  /// CudaOptions::graphs).
  int graphs() const;

  /// How many operations CudaOptions::overlap moved to a second stream.
  int overlapped() const;

  /// The device's name, for reports.
  std::string deviceName() const;

  struct State;

private:
  CudaExecutor() = default;
  std::unique_ptr<State> state_;
};

} // namespace moe::rt::cuda

#endif // MOE_RUNTIME_CUDAEXECUTOR_H
