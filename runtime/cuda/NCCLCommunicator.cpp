//===- NCCLCommunicator.cpp - the NCCL transport --------------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// See NCCLCommunicator.h. Every operation: make the rank's device current,
// enqueue the NCCL call(s) on the rank's stream, then wait with a deadline.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/NCCLCommunicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

using namespace moe::rt;

namespace {

using Clock = std::chrono::steady_clock;

/// What the ranks of one job in this process share: the first failure. The
/// ranks of other processes learn of it through their own calls (NCCL
/// errors or deadlines).
struct NCCLJob {
  std::mutex mutex;
  std::string failure;

  std::string get() {
    std::lock_guard<std::mutex> lock(mutex);
    return failure;
  }
  void record(const std::string &message) {
    std::lock_guard<std::mutex> lock(mutex);
    if (failure.empty())
      failure = message;
  }
};

/// The job of a unique id, shared by the ranks of this process that joined
/// it (one thread per GPU).
std::shared_ptr<NCCLJob> jobFor(const ncclUniqueId &id) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<NCCLJob>> jobs;
  std::lock_guard<std::mutex> lock(mutex);
  std::string key(id.internal, sizeof(id.internal));
  std::shared_ptr<NCCLJob> job = jobs[key].lock();
  if (!job) {
    job = std::make_shared<NCCLJob>();
    jobs[key] = job;
  }
  return job;
}

bool ncclType(DType dtype, ncclDataType_t &type) {
  switch (dtype) {
  case DType::F32:
    type = ncclFloat32;
    return true;
  case DType::F16:
    type = ncclFloat16;
    return true;
  case DType::BF16:
    type = ncclBfloat16;
    return true;
  case DType::F64:
    type = ncclFloat64;
    return true;
  case DType::I64:
    type = ncclInt64;
    return true;
  case DType::I32:
    type = ncclInt32;
    return true;
  default:
    return false;
  }
}

ncclRedOp_t ncclOp(ReduceOp op) {
  switch (op) {
  case ReduceOp::Sum:
    return ncclSum;
  case ReduceOp::Max:
    return ncclMax;
  case ReduceOp::Min:
    return ncclMin;
  }
  return ncclSum;
}

ncclConfig_t nonBlockingConfig() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

class NCCLCommunicator final : public Communicator {
public:
  NCCLCommunicator(ncclComm_t comm, int device, cudaStream_t stream, int rank,
                   int size, std::string name, int worldRank,
                   std::chrono::milliseconds timeout,
                   std::shared_ptr<NCCLJob> job)
      : Communicator(rank, size, std::move(name), worldRank, timeout),
        comm_(comm), device_(device), stream_(stream), job_(std::move(job)),
        worldRank_(worldRank) {}

  ~NCCLCommunicator() override {
    cudaSetDevice(device_);
    if (scratch_)
      cudaFree(scratch_);
    if (aborted_)
      ncclCommAbort(comm_);
    else
      ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }

  const char *transport() const override { return "nccl"; }

  /// Waits for an initialising or splitting communicator to be ready.
  static ncclResult_t settle(ncclComm_t comm, Clock::time_point deadline) {
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress && Clock::now() < deadline) {
      ncclCommGetAsyncError(comm, &state);
      if (state == ncclInProgress)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return state;
  }

protected:
  Status doAllReduce(const Step &step, const void *send, void *recv,
                     int64_t count, DType dtype, ReduceOp op) override {
    ncclDataType_t type;
    if (!ncclType(dtype, type))
      return fail(step, std::string("NCCL cannot reduce ") + dtypeName(dtype));
    return launch(step, [&] {
      return ncclAllReduce(send, recv, count, type, ncclOp(op), comm_, stream_);
    });
  }

  Status doAllGather(const Step &step, const void *send, void *recv,
                     size_t bytesPerRank) override {
    return launch(step, [&] {
      return ncclAllGather(send, recv, bytesPerRank, ncclUint8, comm_, stream_);
    });
  }

  Status doReduceScatter(const Step &step, const void *send, void *recv,
                         int64_t countPerRank, DType dtype,
                         ReduceOp op) override {
    ncclDataType_t type;
    if (!ncclType(dtype, type))
      return fail(step, std::string("NCCL cannot reduce ") + dtypeName(dtype));
    return launch(step, [&] {
      return ncclReduceScatter(send, recv, countPerRank, type, ncclOp(op),
                               comm_, stream_);
    });
  }

  Status doExchangeCounts(const Step &step, const int64_t *sendCounts,
                          int64_t *recvCounts) override {
    // Counts live on the host; they travel through device scratch as two
    // int64 to and from every peer: the count, and whether all of the
    // sender's counts are equal (uniformExchange).
    int ranks = size();
    bool equal =
        std::all_of(sendCounts, sendCounts + ranks,
                    [&](int64_t count) { return count == sendCounts[0]; });
    std::vector<int64_t> pairs(2 * ranks), received(2 * ranks);
    for (int peer = 0; peer < ranks; ++peer) {
      pairs[2 * peer] = sendCounts[peer];
      pairs[2 * peer + 1] = equal ? 1 : 0;
    }
    size_t bytes = pairs.size() * sizeof(int64_t);
    if (Status status = ensureScratch(step, 2 * bytes); !status)
      return status;
    int64_t *out = static_cast<int64_t *>(scratch_);
    int64_t *in = out + pairs.size();
    if (cudaMemcpyAsync(out, pairs.data(), bytes, cudaMemcpyHostToDevice,
                        stream_) != cudaSuccess)
      return fail(step, "cannot copy the counts to the device");
    Status status = launch(step, [&] {
      ncclGroupStart();
      for (int peer = 0; peer < ranks; ++peer) {
        ncclSend(out + 2 * peer, 2, ncclInt64, peer, comm_, stream_);
        ncclRecv(in + 2 * peer, 2, ncclInt64, peer, comm_, stream_);
      }
      return ncclGroupEnd();
    });
    if (!status)
      return status;
    if (cudaMemcpy(received.data(), in, bytes, cudaMemcpyDeviceToHost) !=
        cudaSuccess)
      return fail(step, "cannot copy the received counts to the host");
    for (int peer = 0; peer < ranks; ++peer)
      recvCounts[peer] = received[2 * peer];
    uniform_ = uniformExchange(received);
    return Status::success();
  }

  Status doAllToAllV(const Step &step, const void *send,
                     const int64_t *sendCounts, void *recv,
                     const int64_t *recvCounts, size_t rowBytes) override {
    const char *from = static_cast<const char *>(send);
    char *to = static_cast<char *>(recv);
    // What the exchange of these counts found, for this exchange only.
    bool uniform = uniform_;
    uniform_ = false;
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0)
    // Every rank sends the same count to every rank (capacity mode, equal
    // splits), and every rank knows it: NCCL's own all-to-all.
    if (uniform && sendCounts[0] > 0)
      return launch(step, [&] {
        return ncclAlltoAll(send, recv,
                            static_cast<size_t>(sendCounts[0]) * rowBytes,
                            ncclUint8, comm_, stream_);
      });
#else
    (void)uniform;
#endif
    return launch(step, [&] {
      ncclGroupStart();
      size_t sent = 0, received = 0;
      for (int peer = 0; peer < size(); ++peer) {
        size_t out = static_cast<size_t>(sendCounts[peer]) * rowBytes;
        size_t in = static_cast<size_t>(recvCounts[peer]) * rowBytes;
        if (out)
          ncclSend(from + sent, out, ncclUint8, peer, comm_, stream_);
        if (in)
          ncclRecv(to + received, in, ncclUint8, peer, comm_, stream_);
        sent += out;
        received += in;
      }
      return ncclGroupEnd();
    });
  }

  Status doSendRecv(const Step &step, const void *sendData, size_t sendBytes,
                    int destination, void *recvData, size_t recvBytes,
                    int source) override {
    return launch(step, [&] {
      ncclGroupStart();
      if (destination >= 0)
        ncclSend(sendData, sendBytes, ncclUint8, destination, comm_, stream_);
      if (source >= 0)
        ncclRecv(recvData, recvBytes, ncclUint8, source, comm_, stream_);
      return ncclGroupEnd();
    });
  }

  Status doBarrier(const Step &step) override {
    if (Status status = ensureScratch(step, sizeof(int64_t)); !status)
      return status;
    return launch(step, [&] {
      return ncclAllReduce(scratch_, scratch_, 1, ncclInt64, ncclSum, comm_,
                           stream_);
    });
  }

  Status doSplit(const Step &step, int color, int key,
                 std::unique_ptr<Communicator> &group) override {
    cudaSetDevice(device_);
    ncclConfig_t config = nonBlockingConfig();
    ncclComm_t child = nullptr;
    ncclResult_t result = ncclCommSplit(
        comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, &config);
    if (result != ncclSuccess && result != ncclInProgress)
      return abortWith(step, std::string("ncclCommSplit failed: ") +
                                 ncclGetErrorString(result));
    // The parent stays busy until the split is done.
    if (Status status = waitFor(step); !status)
      return status;
    if (color < 0 || !child)
      return Status::success();
    if (settle(child, step.deadline) != ncclSuccess) {
      ncclCommAbort(child);
      return abortWith(step, "the split communicator did not come up");
    }
    int childRank = 0, childSize = 0;
    ncclCommUserRank(child, &childRank);
    ncclCommCount(child, &childSize);
    cudaStream_t stream;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) !=
        cudaSuccess) {
      ncclCommAbort(child);
      return fail(step, "cannot create a CUDA stream");
    }
    group = std::make_unique<NCCLCommunicator>(
        child, device_, stream, childRank, childSize,
        name() + "/" + std::to_string(color), worldRank(), timeout(), job_);
    return Status::success();
  }

  void failJob(const std::string &failure) override {
    job_->record(failure);
    if (!aborted_) {
      aborted_ = true;
      ncclCommAbort(comm_);
    }
  }

  std::string jobFailure() override { return job_->get(); }

private:
  template <typename Enqueue> Status launch(const Step &step, Enqueue enqueue) {
    if (cudaSetDevice(device_) != cudaSuccess)
      return fail(step, "cannot make CUDA device " + std::to_string(device_) +
                            " current");
    ncclResult_t result = enqueue();
    if (result != ncclSuccess && result != ncclInProgress)
      return abortWith(step, std::string("NCCL reports ") +
                                 ncclGetErrorString(result) + " (" +
                                 ncclGetLastError(comm_) + ")");
    return waitFor(step);
  }

  /// Polls until the stream has run the enqueued work, NCCL reports an
  /// error, the job fails or the deadline passes.
  Status waitFor(const Step &step) {
    while (true) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        return abortWith(step, std::string("NCCL reports ") +
                                   ncclGetErrorString(async) + " (" +
                                   ncclGetLastError(comm_) + ")");
      if (async == ncclSuccess) {
        cudaError_t state = cudaStreamQuery(stream_);
        if (state == cudaSuccess)
          return Status::success();
        if (state != cudaErrorNotReady)
          return abortWith(step, std::string("CUDA reports ") +
                                     cudaGetErrorString(state));
      }
      std::string failure = job_->get();
      if (!failure.empty()) {
        if (!aborted_) {
          aborted_ = true;
          ncclCommAbort(comm_);
        }
        return stopped(step, failure);
      }
      if (Clock::now() > step.deadline)
        return abortWith(step, "timed out after " +
                                   std::to_string(timeout().count()) +
                                   " ms waiting for its peers");
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  /// Ends this communicator and fails the job with `detail`.
  Status abortWith(const Step &step, const std::string &detail) {
    return fail(step, detail); // fail() calls failJob, which aborts.
  }

  Status ensureScratch(const Step &step, size_t bytes) {
    if (scratchBytes_ >= bytes)
      return Status::success();
    cudaSetDevice(device_);
    if (scratch_)
      cudaFree(scratch_);
    scratch_ = nullptr;
    scratchBytes_ = 0;
    if (cudaMalloc(&scratch_, bytes) != cudaSuccess)
      return fail(step, "cannot allocate " + std::to_string(bytes) +
                            " bytes of device scratch");
    scratchBytes_ = bytes;
    return Status::success();
  }

  int worldRank() const { return worldRank_; }

  ncclComm_t comm_;
  int device_;
  cudaStream_t stream_;
  std::shared_ptr<NCCLJob> job_;
  bool aborted_ = false;
  void *scratch_ = nullptr;
  size_t scratchBytes_ = 0;
  int worldRank_ = 0;
  /// Whether the last exchange of counts found every rank sending one
  /// count to all (uniformExchange), for the all-to-all that follows it.
  bool uniform_ = false;
};

} // namespace

Status moe::rt::createNCCLCommunicator(Communicator &bootstrap, int device,
                                       const CommunicatorOptions &options,
                                       std::unique_ptr<Communicator> &nccl) {
  nccl.reset();
  std::string where = "rank " + std::to_string(bootstrap.rank()) + " of " +
                      std::to_string(bootstrap.size()) + ": ";
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    bootstrap.abort(where + "no CUDA device");
    return Status::error(where + "no CUDA device for NCCL");
  }
  if (device < 0 || device >= devices) {
    bootstrap.abort(where + "bad CUDA device");
    return Status::error(where + "CUDA device " + std::to_string(device) +
                         " does not exist (" + std::to_string(devices) +
                         " present)");
  }
  cudaSetDevice(device);
  // Rank 0's unique id reaches every rank through the bootstrap.
  ncclUniqueId mine;
  std::memset(&mine, 0, sizeof(mine));
  if (bootstrap.rank() == 0 && ncclGetUniqueId(&mine) != ncclSuccess) {
    bootstrap.abort(where + "ncclGetUniqueId failed");
    return Status::error(where + "ncclGetUniqueId failed");
  }
  std::vector<ncclUniqueId> ids(bootstrap.size());
  if (Status status = bootstrap.allGather(&mine, ids.data(), sizeof(mine));
      !status)
    return status;
  ncclConfig_t config = nonBlockingConfig();
  ncclComm_t comm = nullptr;
  ncclResult_t result = ncclCommInitRankConfig(&comm, bootstrap.size(), ids[0],
                                               bootstrap.rank(), &config);
  if (result == ncclInProgress)
    result = NCCLCommunicator::settle(comm, Clock::now() + options.timeout);
  if (result != ncclSuccess) {
    if (comm)
      ncclCommAbort(comm);
    std::string message =
        where + "NCCL initialisation failed: " + ncclGetErrorString(result);
    bootstrap.abort(message);
    return Status::error(message);
  }
  cudaStream_t stream;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) !=
      cudaSuccess) {
    ncclCommAbort(comm);
    return Status::error(where + "cannot create a CUDA stream");
  }
  nccl = std::make_unique<NCCLCommunicator>(
      comm, device, stream, bootstrap.rank(), bootstrap.size(), "world",
      bootstrap.rank(), options.timeout, jobFor(ids[0]));
  return Status::success();
}
