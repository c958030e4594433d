//===- StagedCommunicator.h - device buffers over a host transport -*- C++ -*-//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// A Communicator whose buffers live in memory the host transports cannot
// address (GPU memory), over one that moves host memory (threads, MPI):
// every call copies its inputs to host buffers, runs the host transport's
// operation, and copies its outputs back. Counts (ragged all-to-all) stay
// on the host, as NCCL's do. The CUDA backend uses it where NCCL cannot
// serve: several ranks on one GPU (NCCL refuses two ranks per device) and
// builds without NCCL.
//
// Steps, deadlines and failures are shared with the host transport: the
// staged communicator numbers the calls and the host transport's half moves
// the data under that step, so an error names the rank and the step as
// usual; a failed copy is an error of the step that fails the job, with the
// transport `threads, staged` (or `mpi, staged`).
//
// The copies are functions, so the CPU tests run the transport-independent
// checks through it with memcpy (CollectivesTest.cpp), and the CUDA backend
// passes cudaMemcpy.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_STAGEDCOMMUNICATOR_H
#define MOE_RUNTIME_STAGEDCOMMUNICATOR_H

#include "moe/Runtime/Collectives.h"

#include <functional>
#include <memory>

namespace moe::rt {

/// Copies `bytes` between the staged buffers' memory and the host.
struct StagingCopies {
  std::function<Status(void *host, const void *buffer, size_t bytes)> toHost;
  std::function<Status(void *buffer, const void *host, size_t bytes)> fromHost;
};

/// `host`'s ranks, for buffers `copies` reach; `host` must outlive the
/// result (its splits are owned by the splits of the result).
std::unique_ptr<Communicator> createStagedCommunicator(Communicator &host,
                                                       StagingCopies copies);

} // namespace moe::rt

#endif // MOE_RUNTIME_STAGEDCOMMUNICATOR_H
