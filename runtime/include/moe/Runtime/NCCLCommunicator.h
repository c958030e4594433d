//===- NCCLCommunicator.h - the NCCL transport ------------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The Communicator of GPU ranks (Collectives.h): one GPU per rank, buffers
// in device memory, NCCL underneath (each operation of Collectives.h names
// its NCCL call). Built into moe-runtime-cuda when CMake finds nvcc and
// NCCL.
//
// Bootstrap: NCCL ranks agree on a unique id before they can talk. Any
// host Communicator can carry it, so the same call serves one process with
// a thread per GPU (createThreadGroup, no MPI needed) and one process per
// GPU under mpirun (createMPIWorldCommunicator).
//
// Deadlines: the communicator is non-blocking (NCCL's `blocking = 0`
// config); every call launches on the rank's stream and then polls the
// stream and ncclCommGetAsyncError until the work is done, the deadline
// passes or NCCL reports an error. A timeout or an error aborts the NCCL
// communicator (ncclCommAbort) and fails the job with a message naming the
// rank, the operation and its step; the ranks of the same process learn it
// at once, the others when their own calls time out or fail.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_NCCLCOMMUNICATOR_H
#define MOE_RUNTIME_NCCLCOMMUNICATOR_H

#include "moe/Runtime/Collectives.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace moe::rt {

/// Whether a ragged all-to-all may go through ncclAlltoAll: only when every
/// rank sends the same count to every rank, which each rank must decide
/// alike (one rank in ncclAlltoAll while another posts sends and receives
/// hangs both). So the exchange of the counts carries, beside each count,
/// whether its sender's counts are all equal; `received` holds the
/// (count, flag) pairs from every rank. Every rank receives every flag and,
/// when all are set, every rank's common count, so all decide the same.
inline bool uniformExchange(const std::vector<int64_t> &received) {
  if (received.size() < 2)
    return false;
  for (size_t p = 0; p + 1 < received.size(); p += 2)
    if (received[p + 1] != 1 || received[p] != received[0])
      return false;
  return true;
}

/// Collective over `bootstrap`: every rank of it creates its NCCL
/// communicator on CUDA device `device` (each rank its own GPU; NCCL
/// refuses two ranks on one device), with the rank and size of `bootstrap`.
/// Operations then run on a stream of this communicator, on device memory.
Status createNCCLCommunicator(Communicator &bootstrap, int device,
                              const CommunicatorOptions &options,
                              std::unique_ptr<Communicator> &nccl);

} // namespace moe::rt

#endif // MOE_RUNTIME_NCCLCOMMUNICATOR_H
