//===- Collectives.h - communication between ranks --------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// One interface, `Communicator`, for the communication a partitioned program
// needs: the dispatch and combine exchange of expert parallelism
// (moe.ragged_all_to_all), the all-reduce, all-gather and reduce-scatter of
// tensor parallelism, and the send / recv of pipeline stages. Transports
// implement it:
//
//   threads  ranks are threads of one process (`createThreadGroup`); the test
//            transport, and the CPU backend on one machine.
//   MPI      ranks are processes under mpirun (`createMPIWorldCommunicator`
//            in the library moe-runtime-mpi, built when CMake finds MPI).
//   staged   device buffers over a host transport (StagedCommunicator.h):
//            each call copies through host memory; GPU ranks that share a
//            device, which NCCL refuses.
//   NCCL     one GPU per rank (`createNCCLCommunicator` in
//            NCCLCommunicator.h, library moe-runtime-nccl, built when CMake
//            finds nvcc and NCCL), bootstrapped through any of the above.
//            Each operation below names the NCCL call it maps to; deadlines
//            map to a non-blocking communicator polled with
//            ncclCommGetAsyncError and ended with ncclCommAbort.
//
// Rules every operation follows:
//
// - Blocking: when a call returns, its output is complete and its input may
//   be reused.
// - SPMD order: the ranks of a communicator call its collectives in the same
//   order with matching arguments (dtype, element counts, reduction). The
//   thread transport checks this and reports a mismatch; MPI and NCCL cannot
//   check it.
// - Steps: every call on a communicator is one step, numbered from 1 per rank
//   and communicator. Errors name the rank, the communicator, the operation
//   and its step: `rank 1 of 4 in "world" (threads), all_reduce step 7: ...`.
// - Deadlines: a call waits at most `timeout()` (CommunicatorOptions, 60 s
//   by default) for its peers.
// - Fail-stop: a timeout, an `abort`, invalid arguments or mismatched calls
//   on any rank fail the whole job (every communicator split from the same
//   root): the pending and all later calls on every rank return an error
//   naming the rank and step that failed first. A rank that leaves the SPMD
//   program would make its peers wait at their next step anyway; failing at
//   once gives one clear message instead of a hang. Recovery is a new job.
//   Under MPI, which cannot cancel a collective in flight, a rank whose call
//   times out, or that learns of a failure while a call is in flight,
//   prints its error and ends the job with MPI_Abort instead (see
//   `createMPIWorldCommunicator`).
// - Buffers: raw pointers address memory the transport reads and writes
//   directly (host memory for threads and MPI, device memory for NCCL). Each
//   operation states when its input and output may be the same memory (its
//   in-place rule); any other overlap is an invalid argument. Shapes and
//   dtypes are not transmitted: peers agree on them through the program.
// - Threads: a communicator, `abort` included, is used by one thread at a
//   time (its rank's); MPI is initialised for that (MPI_THREAD_SERIALIZED).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_COLLECTIVES_H
#define MOE_RUNTIME_COLLECTIVES_H

#include "moe/Runtime/Kernels.h"
#include "moe/Runtime/Tensor.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moe::rt {

/// Reductions of all-reduce and reduce-scatter; NCCL ncclSum / ncclMax /
/// ncclMin, MPI MPI_SUM / MPI_MAX / MPI_MIN. They apply to f32 and i64, the
/// types the kernels compute in.
enum class ReduceOp : uint8_t { Sum, Max, Min };

/// "sum", "max", "min" (the names of the shard dialect's reductions).
const char *reduceOpName(ReduceOp op);

struct CommunicatorOptions {
  /// How long one call may wait for its peers before the job fails.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
};

class Communicator {
public:
  virtual ~Communicator();
  Communicator(const Communicator &) = delete;
  Communicator &operator=(const Communicator &) = delete;

  /// This rank's index in the communicator, in [0, size()).
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// "world" for a root communicator; a split appends "/<color>".
  const std::string &name() const { return name_; }
  /// "threads", "mpi".
  virtual const char *transport() const = 0;

  std::chrono::milliseconds timeout() const { return timeout_; }
  /// Changes the deadline of later calls on this rank; sub-communicators
  /// start with their parent's. Rejects a non-positive timeout.
  Status setTimeout(std::chrono::milliseconds timeout);

  //===--------------------------------------------------------------------===//
  // All-reduce
  //===--------------------------------------------------------------------===//

  /// Every rank receives the element-wise reduction of all ranks' `count`
  /// elements (f32 or i64).
  /// NCCL: ncclAllReduce. MPI: MPI_Allreduce.
  /// In place: `recv == send` (MPI_IN_PLACE; NCCL sendbuff == recvbuff).
  Status allReduce(const void *send, void *recv, int64_t count, DType dtype,
                   ReduceOp op);
  /// `output` has the dtype and shape of `input`; it may be `input` itself.
  Status allReduce(const Tensor &input, Tensor &output, ReduceOp op);
  /// Reduces `buffer` in place.
  Status allReduce(Tensor &buffer, ReduceOp op);

  //===--------------------------------------------------------------------===//
  // All-gather
  //===--------------------------------------------------------------------===//

  /// Every rank receives all ranks' `bytesPerRank` bytes, concatenated in
  /// rank order: `recv` holds size() * bytesPerRank bytes.
  /// NCCL: ncclAllGather. MPI: MPI_Allgather.
  /// In place: `send == recv + rank() * bytesPerRank`, the rank's own piece
  /// already in its slot (NCCL's rule; MPI_IN_PLACE).
  Status allGather(const void *send, void *recv, size_t bytesPerRank);
  /// Along dim 0: `input` is N x ..., `output` (same dtype) is
  /// size()*N x ... with the other dimensions of `input`.
  Status allGather(const Tensor &input, Tensor &output);

  //===--------------------------------------------------------------------===//
  // Reduce-scatter
  //===--------------------------------------------------------------------===//

  /// `send` holds size() pieces of `countPerRank` elements (f32 or i64);
  /// rank r receives the reduction over all ranks of piece r.
  /// NCCL: ncclReduceScatter. MPI: MPI_Reduce_scatter_block.
  /// In place: `recv == send + rank() * countPerRank` elements (NCCL's
  /// rule); the other pieces of `send` are unspecified afterwards, which lets
  /// MPI reduce with MPI_IN_PLACE.
  Status reduceScatter(const void *send, void *recv, int64_t countPerRank,
                       DType dtype, ReduceOp op);
  /// Along dim 0: `input` is size()*N x ..., `output` (same dtype) is N x ...
  /// with the other dimensions of `input`.
  Status reduceScatter(const Tensor &input, Tensor &output,
                       ReduceOp op = ReduceOp::Sum);

  //===--------------------------------------------------------------------===//
  // Ragged all-to-all
  //===--------------------------------------------------------------------===//

  /// moe.ragged_all_to_all: rank r sends its first `sendCounts[0]` rows of
  /// `rowBytes` bytes to rank 0, the next `sendCounts[1]` to rank 1, and so
  /// on (counts may be zero). The call first exchanges the counts, so each
  /// rank learns `recvCounts[p]`, the rows rank p sends it (size() entries),
  /// then receives the rows from every peer in rank order into `recv`, which
  /// has room for `recvCapacityRows` rows; receiving more is an error that
  /// fails the job.
  /// NCCL: an exchange of the counts, then grouped ncclSend / ncclRecv per
  /// peer, or ncclAlltoAll when every rank sends the same count to every
  /// rank (NCCL 2.28 and later; the ranks agree on it through the exchange
  /// of the counts, uniformExchange in NCCLCommunicator.h). MPI: MPI_Alltoall
  /// of the counts, then MPI_Alltoallv. In place: never; `send` and `recv` must
  /// not overlap.
  Status raggedAllToAll(const void *send, const int64_t *sendCounts, void *recv,
                        int64_t recvCapacityRows, int64_t *recvCounts,
                        size_t rowBytes);
  /// Rows are slices along dim 0 of `input`; `sendCounts` is i64 of shape
  /// [size()] and sums to input.dim(0). `output` becomes the received rows
  /// (sum of recvCounts x the other dimensions of `input`, same dtype): it is
  /// reused when it already has that dtype and shape and is allocated
  /// otherwise. `recvCounts` becomes i64 of shape [size()], likewise.
  Status raggedAllToAll(const Tensor &input, const Tensor &sendCounts,
                        Tensor &output, Tensor &recvCounts);

  //===--------------------------------------------------------------------===//
  // Point to point
  //===--------------------------------------------------------------------===//
  //
  // Messages between two ranks are received in the order they were sent, and
  // the receiver names the exact size (a different size is an error that
  // fails the job). A send may wait until its receiver arrives, as NCCL and
  // MPI's rendezvous protocol do; the thread transport always waits, so a
  // pattern that would deadlock on NCCL deadlocks in tests too. Ranks that
  // both send and receive in one step (a ring) use sendRecv.

  /// NCCL: ncclSend. MPI: MPI_Send. `peer` is not this rank.
  Status send(const void *data, size_t bytes, int peer);
  Status send(const Tensor &tensor, int peer);
  /// NCCL: ncclRecv. MPI: MPI_Recv. `peer` is not this rank.
  Status recv(void *data, size_t bytes, int peer);
  Status recv(Tensor &tensor, int peer);
  /// Sends to `destination` and receives from `source` at once.
  /// NCCL: ncclSend + ncclRecv in one group. MPI: MPI_Sendrecv.
  /// In place: never. Sending to this rank requires receiving from it (the
  /// message can only be received by the same call).
  Status sendRecv(const void *sendData, size_t sendBytes, int destination,
                  void *recvData, size_t recvBytes, int source);
  Status sendRecv(const Tensor &sendTensor, int destination, Tensor &recvTensor,
                  int source);

  //===--------------------------------------------------------------------===//
  // Synchronisation and groups
  //===--------------------------------------------------------------------===//

  /// Returns once every rank has called it.
  /// NCCL: none; an all-reduce of one element. MPI: MPI_Barrier.
  Status barrier();

  /// Collective: the ranks that pass the same non-negative `color` form a
  /// new communicator, ranked by `key` (ties by rank in this one); a negative
  /// color gives no communicator (`group` is null).
  /// NCCL: ncclCommSplit. MPI: MPI_Comm_split.
  Status split(int color, int key, std::unique_ptr<Communicator> &group);

  /// Collective: the device group of a shard dialect collective. The ranks
  /// are the devices of a row-major grid of shape `gridShape` (whose product
  /// is size()); ranks that differ only in their coordinates along
  /// `gridAxes` form one group, ranked by those coordinates (row-major in
  /// the order listed). On a 2x2 grid, axes {1} give {0,1} and {2,3}
  /// (tensor-parallel rows), axes {0} give {0,2} and {1,3}.
  Status splitGrid(const std::vector<int64_t> &gridShape,
                   const std::vector<int64_t> &gridAxes,
                   std::unique_ptr<Communicator> &group);

  /// Fails the job on behalf of this rank: every rank's pending and later
  /// calls return an error naming this rank and `reason`. For a rank that
  /// cannot go on (a missing input, a kernel error) so that its peers stop
  /// waiting for it.
  /// NCCL: ncclCommAbort. MPI: a message to every rank (not MPI_Abort: the
  /// peers report the error themselves).
  void abort(const std::string &reason);

protected:
  /// One call: its operation, its number, and when it must be done by.
  struct Step {
    const char *op;
    uint64_t number;
    std::chrono::steady_clock::time_point deadline;
  };

  /// `worldRank` is the rank in the root communicator, for messages.
  Communicator(int rank, int size, std::string name, int worldRank,
               std::chrono::milliseconds timeout);

  /// `rank 1 of 4 in "world" (threads), all_reduce step 7`.
  std::string where(const Step &step) const;
  /// Fails the job with `detail` as this rank's error at `step` and returns
  /// that error.
  Status fail(const Step &step, const std::string &detail);
  /// The error of a call that stopped because the job failed with `failure`.
  Status stopped(const Step &step, const std::string &failure) const;

  // The transport's half. Arguments have been checked against this rank's
  // view (ranges, overlaps, in-place rules); the transport moves the data,
  // enforces `step.deadline` and reports failures with `fail` / `stopped`.
  virtual Status doAllReduce(const Step &step, const void *send, void *recv,
                             int64_t count, DType dtype, ReduceOp op) = 0;
  virtual Status doAllGather(const Step &step, const void *send, void *recv,
                             size_t bytesPerRank) = 0;
  virtual Status doReduceScatter(const Step &step, const void *send, void *recv,
                                 int64_t countPerRank, DType dtype,
                                 ReduceOp op) = 0;
  /// recvCounts[p] = rank p's sendCounts[rank()].
  virtual Status doExchangeCounts(const Step &step, const int64_t *sendCounts,
                                  int64_t *recvCounts) = 0;
  /// The row exchange of a ragged all-to-all whose counts are known.
  virtual Status doAllToAllV(const Step &step, const void *send,
                             const int64_t *sendCounts, void *recv,
                             const int64_t *recvCounts, size_t rowBytes) = 0;
  /// A negative `destination` means no send, a negative `source` no receive.
  virtual Status doSendRecv(const Step &step, const void *sendData,
                            size_t sendBytes, int destination, void *recvData,
                            size_t recvBytes, int source) = 0;
  virtual Status doBarrier(const Step &step) = 0;
  virtual Status doSplit(const Step &step, int color, int key,
                         std::unique_ptr<Communicator> &group) = 0;
  /// Records `failure` as the job's failure unless one is already recorded,
  /// and makes every rank's pending and later calls stop.
  virtual void failJob(const std::string &failure) = 0;
  /// The job's failure, or empty while it is healthy.
  virtual std::string jobFailure() = 0;

private:
  /// Wraps another communicator and calls its transport half directly
  /// (StagedCommunicator.h).
  friend class StagedCommunicator;

  /// Numbers a new call; fails when the job already has.
  Status begin(const char *op, Step &step);
  Status invalid(const Step &step, const std::string &detail) {
    return fail(step, "invalid arguments: " + detail);
  }
  Status runAllReduce(const Step &step, const void *send, void *recv,
                      int64_t count, DType dtype, ReduceOp op);
  Status runAllGather(const Step &step, const void *send, void *recv,
                      size_t bytesPerRank);
  Status runReduceScatter(const Step &step, const void *send, void *recv,
                          int64_t countPerRank, DType dtype, ReduceOp op);
  Status runSendRecv(const Step &step, const void *sendData, size_t sendBytes,
                     int destination, void *recvData, size_t recvBytes,
                     int source);

  int rank_;
  int size_;
  std::string name_;
  int worldRank_;
  std::chrono::milliseconds timeout_;
  uint64_t steps_ = 0;
  const char *lastOp_ = nullptr;
};

/// Creates `size` communicators, one per rank, that communicate through
/// shared memory; give each to its own thread.
Status createThreadGroup(int size, const CommunicatorOptions &options,
                         std::vector<std::unique_ptr<Communicator>> &ranks);

/// A communicator over all processes of an MPI job (a duplicate of
/// MPI_COMM_WORLD). Initialises MPI (MPI_THREAD_SERIALIZED) unless the
/// program did, and then also finalises it at exit; a program that
/// finalises MPI itself destroys its communicators first. Fails when the
/// launcher in the environment (see `readLaunchEnvironment`) started another
/// number of processes than MPI sees: the program's MPI library is not the
/// launcher's.
///
/// Timeouts end the job: MPI cannot cancel a collective in flight, and the
/// rank that did not arrive may be hung, which would also hold up
/// MPI_Finalize. A rank whose call times out asks the other ranks what they
/// are doing, prints an error naming itself, the step and the ranks that did
/// not answer, and calls MPI_Abort. So does a rank that learns of a failure
/// while one of its calls is in flight. Failures found while nothing is in
/// flight (invalid arguments, an `abort` received before a call or while a
/// receive waits for its message) are returned as errors.
///
/// Defined in the library moe-runtime-mpi, which CMake builds when it finds
/// MPI.
Status createMPIWorldCommunicator(const CommunicatorOptions &options,
                                  std::unique_ptr<Communicator> &world);

/// Where a launcher placed this process, from its environment variables.
struct LaunchEnvironment {
  /// "mpirun" (Open MPI: OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
  /// OMPI_COMM_WORLD_LOCAL_RANK), "torchrun" (RANK, WORLD_SIZE, LOCAL_RANK),
  /// or empty when neither is set.
  std::string launcher;
  int rank = -1;
  int size = -1;
  /// The rank among the processes of this machine (which GPU to take).
  int localRank = -1;
};

/// Reads the launcher's variables without initialising any transport: for
/// diagnostics before a communicator exists (log names, device choice) and
/// to check that the transport agrees. Malformed values are an error naming
/// the variable.
Status readLaunchEnvironment(LaunchEnvironment &environment);

} // namespace moe::rt

#endif // MOE_RUNTIME_COLLECTIVES_H
