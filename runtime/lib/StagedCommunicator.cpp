//===- StagedCommunicator.cpp - device buffers over a host transport ------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/StagedCommunicator.h"

#include <numeric>

namespace moe::rt {

/// Forwards every call to the host transport's half with host copies of
/// the buffers. Declared a friend by Communicator, so that it can call that
/// half under its own step.
class StagedCommunicator final : public Communicator {
public:
  StagedCommunicator(Communicator &host, std::unique_ptr<Communicator> owned,
                     std::shared_ptr<const StagingCopies> copies)
      : Communicator(host.rank(), host.size(), host.name(), host.worldRank_,
                     host.timeout()),
        host_(host), owned_(std::move(owned)), copies_(std::move(copies)),
        transport_(std::string(host.transport()) + ", staged") {}

  const char *transport() const override { return transport_.c_str(); }

protected:
  Status doAllReduce(const Step &step, const void *send, void *recv,
                     int64_t count, DType dtype, ReduceOp op) override {
    size_t bytes = static_cast<size_t>(count) * dtypeSize(dtype);
    char *buffer = hostBuffer(sendBuffer_, bytes);
    if (Status status = toHost(step, buffer, send, bytes); !status)
      return status;
    // In place on the host copy.
    if (Status status =
            host_.doAllReduce(step, buffer, buffer, count, dtype, op);
        !status)
      return status;
    return fromHost(step, recv, buffer, bytes);
  }

  Status doAllGather(const Step &step, const void *send, void *recv,
                     size_t bytesPerRank) override {
    size_t total = bytesPerRank * static_cast<size_t>(size());
    char *sent = hostBuffer(sendBuffer_, bytesPerRank);
    char *received = hostBuffer(recvBuffer_, total);
    if (Status status = toHost(step, sent, send, bytesPerRank); !status)
      return status;
    if (Status status = host_.doAllGather(step, sent, received, bytesPerRank);
        !status)
      return status;
    return fromHost(step, recv, received, total);
  }

  Status doReduceScatter(const Step &step, const void *send, void *recv,
                         int64_t countPerRank, DType dtype,
                         ReduceOp op) override {
    size_t pieceBytes = static_cast<size_t>(countPerRank) * dtypeSize(dtype);
    size_t total = pieceBytes * static_cast<size_t>(size());
    char *sent = hostBuffer(sendBuffer_, total);
    char *received = hostBuffer(recvBuffer_, pieceBytes);
    if (Status status = toHost(step, sent, send, total); !status)
      return status;
    if (Status status = host_.doReduceScatter(step, sent, received,
                                              countPerRank, dtype, op);
        !status)
      return status;
    return fromHost(step, recv, received, pieceBytes);
  }

  Status doExchangeCounts(const Step &step, const int64_t *sendCounts,
                          int64_t *recvCounts) override {
    // Counts are host memory already.
    return host_.doExchangeCounts(step, sendCounts, recvCounts);
  }

  Status doAllToAllV(const Step &step, const void *send,
                     const int64_t *sendCounts, void *recv,
                     const int64_t *recvCounts, size_t rowBytes) override {
    size_t sendBytes = rowBytes * rows(sendCounts);
    size_t recvBytes = rowBytes * rows(recvCounts);
    char *sent = hostBuffer(sendBuffer_, sendBytes);
    char *received = hostBuffer(recvBuffer_, recvBytes);
    if (Status status = toHost(step, sent, send, sendBytes); !status)
      return status;
    if (Status status = host_.doAllToAllV(step, sent, sendCounts, received,
                                          recvCounts, rowBytes);
        !status)
      return status;
    return fromHost(step, recv, received, recvBytes);
  }

  Status doSendRecv(const Step &step, const void *sendData, size_t sendBytes,
                    int destination, void *recvData, size_t recvBytes,
                    int source) override {
    char *sent =
        destination >= 0 ? hostBuffer(sendBuffer_, sendBytes) : nullptr;
    char *received = source >= 0 ? hostBuffer(recvBuffer_, recvBytes) : nullptr;
    if (sent)
      if (Status status = toHost(step, sent, sendData, sendBytes); !status)
        return status;
    if (Status status = host_.doSendRecv(step, sent, sendBytes, destination,
                                         received, recvBytes, source);
        !status)
      return status;
    if (received)
      return fromHost(step, recvData, received, recvBytes);
    return Status::success();
  }

  Status doBarrier(const Step &step) override { return host_.doBarrier(step); }

  Status doSplit(const Step &step, int color, int key,
                 std::unique_ptr<Communicator> &group) override {
    std::unique_ptr<Communicator> hostGroup;
    if (Status status = host_.doSplit(step, color, key, hostGroup); !status)
      return status;
    if (hostGroup) {
      Communicator &hostRef = *hostGroup;
      group = std::make_unique<StagedCommunicator>(
          hostRef, std::move(hostGroup), copies_);
      if (Status status = group->setTimeout(timeout()); !status)
        return status;
    }
    return Status::success();
  }

  void failJob(const std::string &failure) override { host_.failJob(failure); }
  std::string jobFailure() override { return host_.jobFailure(); }

private:
  /// A host buffer of at least `bytes`, reused across calls.
  static char *hostBuffer(std::vector<char> &buffer, size_t bytes) {
    if (buffer.size() < bytes)
      buffer.resize(bytes);
    return buffer.data();
  }
  int64_t rows(const int64_t *counts) const {
    return std::accumulate(counts, counts + size(), int64_t{0});
  }
  Status toHost(const Step &step, void *target, const void *source,
                size_t bytes) {
    if (bytes == 0)
      return Status::success();
    if (Status status = copies_->toHost(target, source, bytes); !status)
      return fail(step, "copying the input to the host: " + status.message);
    return Status::success();
  }
  Status fromHost(const Step &step, void *target, const void *source,
                  size_t bytes) {
    if (bytes == 0)
      return Status::success();
    if (Status status = copies_->fromHost(target, source, bytes); !status)
      return fail(step, "copying the output from the host: " + status.message);
    return Status::success();
  }

  Communicator &host_;
  /// The host group of a split (the root's belongs to the caller).
  std::unique_ptr<Communicator> owned_;
  std::shared_ptr<const StagingCopies> copies_;
  std::string transport_;
  std::vector<char> sendBuffer_, recvBuffer_;
};

std::unique_ptr<Communicator> createStagedCommunicator(Communicator &host,
                                                       StagingCopies copies) {
  return std::make_unique<StagedCommunicator>(
      host, nullptr, std::make_shared<const StagingCopies>(std::move(copies)));
}

} // namespace moe::rt
