//===- Collectives.cpp - argument checks and steps of collectives ---------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The transport-independent half of Communicator: numbering steps, checking
// arguments against the in-place rules of Collectives.h, turning tensors
// into buffers, and the launcher environment. A rank whose arguments are
// invalid fails the job, because its peers would otherwise wait for it until
// the deadline.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Collectives.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <numeric>

using namespace moe::rt;

namespace {

bool isReducible(DType dtype) {
  return dtype == DType::F32 || dtype == DType::I64;
}

std::string describeReducible(DType dtype) {
  return std::string("reductions take f32 or i64, got ") + dtypeName(dtype);
}

/// Whether [a, a + aBytes) and [b, b + bBytes) share a byte; empty ranges
/// share none.
bool overlaps(const void *a, size_t aBytes, const void *b, size_t bBytes) {
  if (aBytes == 0 || bBytes == 0)
    return false;
  auto aBegin = reinterpret_cast<uintptr_t>(a);
  auto bBegin = reinterpret_cast<uintptr_t>(b);
  return aBegin < bBegin + bBytes && bBegin < aBegin + aBytes;
}

std::string describeTensor(const Tensor &tensor) {
  return std::string(dtypeName(tensor.dtype())) + " " +
         formatShape(tensor.shape());
}

/// The bytes of one slice along dim 0 of `tensor` (rank >= 1).
size_t rowBytesOf(const Tensor &tensor) {
  Shape row(tensor.shape().begin() + 1, tensor.shape().end());
  return numElements(row) * dtypeSize(tensor.dtype());
}

/// Parses a non-negative decimal environment value.
bool parseIndex(const char *text, int &value) {
  if (!text || !*text)
    return false;
  char *end = nullptr;
  errno = 0;
  long parsed = std::strtol(text, &end, 10);
  if (errno || *end || parsed < 0 || parsed > INT32_MAX)
    return false;
  value = static_cast<int>(parsed);
  return true;
}

} // namespace

const char *moe::rt::reduceOpName(ReduceOp op) {
  switch (op) {
  case ReduceOp::Sum:
    return "sum";
  case ReduceOp::Max:
    return "max";
  case ReduceOp::Min:
    return "min";
  }
  return "unknown";
}

//===----------------------------------------------------------------------===//
// Steps and errors
//===----------------------------------------------------------------------===//

Communicator::Communicator(int rank, int size, std::string name, int worldRank,
                           std::chrono::milliseconds timeout)
    : rank_(rank), size_(size), name_(std::move(name)), worldRank_(worldRank),
      timeout_(timeout) {}

Communicator::~Communicator() = default;

Status Communicator::setTimeout(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0)
    return Status::error("communicator timeout must be positive, got " +
                         std::to_string(timeout.count()) + " ms");
  timeout_ = timeout;
  return Status::success();
}

std::string Communicator::where(const Step &step) const {
  std::string text = "rank " + std::to_string(rank_) + " of " +
                     std::to_string(size_) + " in \"" + name_ + "\" (";
  if (rank_ != worldRank_ || name_ != "world")
    text += "world rank " + std::to_string(worldRank_) + ", ";
  return text + transport() + "), " + step.op + " step " +
         std::to_string(step.number);
}

Status Communicator::fail(const Step &step, const std::string &detail) {
  std::string message = where(step) + ": " + detail;
  failJob(message);
  return Status::error(message);
}

Status Communicator::stopped(const Step &step,
                             const std::string &failure) const {
  return Status::error(where(step) + ": stopped because " + failure);
}

Status Communicator::begin(const char *op, Step &step) {
  step = {op, ++steps_, std::chrono::steady_clock::now() + timeout_};
  lastOp_ = op;
  std::string failure = jobFailure();
  if (!failure.empty())
    return stopped(step, failure);
  return Status::success();
}

void Communicator::abort(const std::string &reason) {
  std::string message = "rank " + std::to_string(rank_) + " of " +
                        std::to_string(size_) + " in \"" + name_ + "\" (" +
                        transport() + ") aborted ";
  if (lastOp_)
    message +=
        "after " + std::string(lastOp_) + " step " + std::to_string(steps_);
  else
    message += "before its first step";
  failJob(message + ": " + reason);
}

//===----------------------------------------------------------------------===//
// All-reduce
//===----------------------------------------------------------------------===//

Status Communicator::runAllReduce(const Step &step, const void *send,
                                  void *recv, int64_t count, DType dtype,
                                  ReduceOp op) {
  if (!isReducible(dtype))
    return invalid(step, describeReducible(dtype));
  if (count < 0)
    return invalid(step, "negative element count " + std::to_string(count));
  size_t bytes = count * dtypeSize(dtype);
  if (send != recv && overlaps(send, bytes, recv, bytes))
    return invalid(step, "input and output overlap without being the same "
                         "buffer (in place means recv == send)");
  return doAllReduce(step, send, recv, count, dtype, op);
}

Status Communicator::allReduce(const void *send, void *recv, int64_t count,
                               DType dtype, ReduceOp op) {
  Step step;
  if (Status status = begin("all_reduce", step); !status)
    return status;
  return runAllReduce(step, send, recv, count, dtype, op);
}

Status Communicator::allReduce(const Tensor &input, Tensor &output,
                               ReduceOp op) {
  Step step;
  if (Status status = begin("all_reduce", step); !status)
    return status;
  if (output.dtype() != input.dtype() || output.shape() != input.shape())
    return invalid(step, "output is " + describeTensor(output) +
                             ", expected the input's " + describeTensor(input));
  return runAllReduce(step, input.data(), output.data(), input.numElements(),
                      input.dtype(), op);
}

Status Communicator::allReduce(Tensor &buffer, ReduceOp op) {
  return allReduce(buffer, buffer, op);
}

//===----------------------------------------------------------------------===//
// All-gather
//===----------------------------------------------------------------------===//

Status Communicator::runAllGather(const Step &step, const void *send,
                                  void *recv, size_t bytesPerRank) {
  const void *ownSlot = static_cast<const char *>(recv) + rank_ * bytesPerRank;
  if (send != ownSlot &&
      overlaps(send, bytesPerRank, recv, size_ * bytesPerRank))
    return invalid(step, "input overlaps the output without being this "
                         "rank's slot of it (in place means send == recv + "
                         "rank * bytesPerRank)");
  return doAllGather(step, send, recv, bytesPerRank);
}

Status Communicator::allGather(const void *send, void *recv,
                               size_t bytesPerRank) {
  Step step;
  if (Status status = begin("all_gather", step); !status)
    return status;
  return runAllGather(step, send, recv, bytesPerRank);
}

Status Communicator::allGather(const Tensor &input, Tensor &output) {
  Step step;
  if (Status status = begin("all_gather", step); !status)
    return status;
  if (input.rank() < 1)
    return invalid(step, "input is a scalar; all_gather concatenates along "
                         "dim 0");
  Shape expected = input.shape();
  expected[0] *= size_;
  if (output.dtype() != input.dtype() || output.shape() != expected)
    return invalid(step, "output is " + describeTensor(output) + ", expected " +
                             dtypeName(input.dtype()) + " " +
                             formatShape(expected) + " for input " +
                             describeTensor(input));
  return runAllGather(step, input.data(), output.data(), input.sizeInBytes());
}

//===----------------------------------------------------------------------===//
// Reduce-scatter
//===----------------------------------------------------------------------===//

Status Communicator::runReduceScatter(const Step &step, const void *send,
                                      void *recv, int64_t countPerRank,
                                      DType dtype, ReduceOp op) {
  if (!isReducible(dtype))
    return invalid(step, describeReducible(dtype));
  if (countPerRank < 0)
    return invalid(step,
                   "negative element count " + std::to_string(countPerRank));
  size_t pieceBytes = countPerRank * dtypeSize(dtype);
  const void *ownPiece = static_cast<const char *>(send) + rank_ * pieceBytes;
  if (recv != ownPiece && overlaps(send, size_ * pieceBytes, recv, pieceBytes))
    return invalid(step, "output overlaps the input without being this "
                         "rank's piece of it (in place means recv == send + "
                         "rank * countPerRank)");
  return doReduceScatter(step, send, recv, countPerRank, dtype, op);
}

Status Communicator::reduceScatter(const void *send, void *recv,
                                   int64_t countPerRank, DType dtype,
                                   ReduceOp op) {
  Step step;
  if (Status status = begin("reduce_scatter", step); !status)
    return status;
  return runReduceScatter(step, send, recv, countPerRank, dtype, op);
}

Status Communicator::reduceScatter(const Tensor &input, Tensor &output,
                                   ReduceOp op) {
  Step step;
  if (Status status = begin("reduce_scatter", step); !status)
    return status;
  if (input.rank() < 1 || input.dim(0) % size_ != 0)
    return invalid(step, "input is " + describeTensor(input) +
                             "; reduce_scatter needs a dim 0 divisible by " +
                             std::to_string(size_) + " ranks");
  Shape expected = input.shape();
  expected[0] /= size_;
  if (output.dtype() != input.dtype() || output.shape() != expected)
    return invalid(step, "output is " + describeTensor(output) + ", expected " +
                             dtypeName(input.dtype()) + " " +
                             formatShape(expected) + " for input " +
                             describeTensor(input));
  return runReduceScatter(step, input.data(), output.data(),
                          output.numElements(), input.dtype(), op);
}

//===----------------------------------------------------------------------===//
// Ragged all-to-all
//===----------------------------------------------------------------------===//

Status Communicator::raggedAllToAll(const void *send, const int64_t *sendCounts,
                                    void *recv, int64_t recvCapacityRows,
                                    int64_t *recvCounts, size_t rowBytes) {
  Step step;
  if (Status status = begin("ragged_all_to_all", step); !status)
    return status;
  int64_t sendRows = 0;
  for (int peer = 0; peer < size_; ++peer) {
    if (sendCounts[peer] < 0)
      return invalid(step, "send count for rank " + std::to_string(peer) +
                               " is negative (" +
                               std::to_string(sendCounts[peer]) + ")");
    sendRows += sendCounts[peer];
  }
  if (recvCapacityRows < 0)
    return invalid(step, "negative receive capacity");
  if (overlaps(send, sendRows * rowBytes, recv, recvCapacityRows * rowBytes))
    return invalid(step, "input and output overlap; ragged_all_to_all has no "
                         "in-place form");
  std::vector<int64_t> received(size_);
  if (Status status = doExchangeCounts(step, sendCounts, received.data());
      !status)
    return status;
  int64_t recvRows = std::accumulate(received.begin(), received.end(),
                                     static_cast<int64_t>(0));
  if (recvRows > recvCapacityRows)
    return fail(step, "receives " + std::to_string(recvRows) +
                          " rows but the output has room for " +
                          std::to_string(recvCapacityRows));
  if (Status status =
          doAllToAllV(step, send, sendCounts, recv, received.data(), rowBytes);
      !status)
    return status;
  std::copy(received.begin(), received.end(), recvCounts);
  return Status::success();
}

Status Communicator::raggedAllToAll(const Tensor &input,
                                    const Tensor &sendCounts, Tensor &output,
                                    Tensor &recvCounts) {
  Step step;
  if (Status status = begin("ragged_all_to_all", step); !status)
    return status;
  if (input.rank() < 1)
    return invalid(step, "input is a scalar; rows are slices along dim 0");
  if (sendCounts.dtype() != DType::I64 || sendCounts.shape() != Shape{size_})
    return invalid(step, "send counts are " + describeTensor(sendCounts) +
                             ", expected i64 " + std::to_string(size_));
  const int64_t *counts = sendCounts.as<int64_t>();
  int64_t sendRows = 0;
  for (int peer = 0; peer < size_; ++peer) {
    if (counts[peer] < 0)
      return invalid(step, "send count for rank " + std::to_string(peer) +
                               " is negative (" + std::to_string(counts[peer]) +
                               ")");
    sendRows += counts[peer];
  }
  if (sendRows != input.dim(0))
    return invalid(step, "send counts add up to " + std::to_string(sendRows) +
                             " rows but the input has " +
                             std::to_string(input.dim(0)));

  std::vector<int64_t> received(size_);
  if (Status status = doExchangeCounts(step, counts, received.data()); !status)
    return status;
  Shape resultShape = input.shape();
  resultShape[0] = std::accumulate(received.begin(), received.end(),
                                   static_cast<int64_t>(0));
  if (output.dtype() != input.dtype() || output.shape() != resultShape ||
      overlaps(input.data(), input.sizeInBytes(), output.data(),
               output.sizeInBytes()))
    output = Tensor(input.dtype(), resultShape);
  if (Status status = doAllToAllV(step, input.data(), counts, output.data(),
                                  received.data(), rowBytesOf(input));
      !status)
    return status;
  // Written last: recvCounts may be the same tensor as sendCounts.
  if (recvCounts.dtype() != DType::I64 || recvCounts.shape() != Shape{size_})
    recvCounts = Tensor(DType::I64, {size_});
  std::copy(received.begin(), received.end(), recvCounts.as<int64_t>());
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Point to point
//===----------------------------------------------------------------------===//

Status Communicator::runSendRecv(const Step &step, const void *sendData,
                                 size_t sendBytes, int destination,
                                 void *recvData, size_t recvBytes, int source) {
  if (destination >= size_)
    return invalid(step, "destination rank " + std::to_string(destination) +
                             " is not in [0, " + std::to_string(size_) + ")");
  if (source >= size_)
    return invalid(step, "source rank " + std::to_string(source) +
                             " is not in [0, " + std::to_string(size_) + ")");
  if ((destination == rank_) != (source == rank_))
    return invalid(step, "a message to this rank is received only by the "
                         "same call: sendRecv with destination and source "
                         "both this rank, or neither");
  if (overlaps(sendData, sendBytes, recvData, recvBytes))
    return invalid(step, "send and receive buffers overlap");
  return doSendRecv(step, sendData, sendBytes, destination, recvData, recvBytes,
                    source);
}

Status Communicator::send(const void *data, size_t bytes, int peer) {
  Step step;
  if (Status status = begin("send", step); !status)
    return status;
  if (peer < 0)
    return invalid(step, "destination rank " + std::to_string(peer) +
                             " is not in [0, " + std::to_string(size_) + ")");
  return runSendRecv(step, data, bytes, peer, nullptr, 0, -1);
}

Status Communicator::send(const Tensor &tensor, int peer) {
  return send(tensor.data(), tensor.sizeInBytes(), peer);
}

Status Communicator::recv(void *data, size_t bytes, int peer) {
  Step step;
  if (Status status = begin("recv", step); !status)
    return status;
  if (peer < 0)
    return invalid(step, "source rank " + std::to_string(peer) +
                             " is not in [0, " + std::to_string(size_) + ")");
  return runSendRecv(step, nullptr, 0, -1, data, bytes, peer);
}

Status Communicator::recv(Tensor &tensor, int peer) {
  return recv(tensor.data(), tensor.sizeInBytes(), peer);
}

Status Communicator::sendRecv(const void *sendData, size_t sendBytes,
                              int destination, void *recvData, size_t recvBytes,
                              int source) {
  Step step;
  if (Status status = begin("send_recv", step); !status)
    return status;
  if (destination < 0 || source < 0)
    return invalid(step, "sendRecv needs a destination and a source, got " +
                             std::to_string(destination) + " and " +
                             std::to_string(source));
  return runSendRecv(step, sendData, sendBytes, destination, recvData,
                     recvBytes, source);
}

Status Communicator::sendRecv(const Tensor &sendTensor, int destination,
                              Tensor &recvTensor, int source) {
  return sendRecv(sendTensor.data(), sendTensor.sizeInBytes(), destination,
                  recvTensor.data(), recvTensor.sizeInBytes(), source);
}

//===----------------------------------------------------------------------===//
// Synchronisation and groups
//===----------------------------------------------------------------------===//

Status Communicator::barrier() {
  Step step;
  if (Status status = begin("barrier", step); !status)
    return status;
  return doBarrier(step);
}

Status Communicator::split(int color, int key,
                           std::unique_ptr<Communicator> &group) {
  group.reset();
  Step step;
  if (Status status = begin("split", step); !status)
    return status;
  return doSplit(step, color, key, group);
}

Status Communicator::splitGrid(const std::vector<int64_t> &gridShape,
                               const std::vector<int64_t> &gridAxes,
                               std::unique_ptr<Communicator> &group) {
  group.reset();
  Step step;
  if (Status status = begin("split", step); !status)
    return status;
  int64_t devices = 1;
  for (int64_t extent : gridShape) {
    if (extent < 1 || extent > size_)
      return invalid(step, "grid shape " + formatShape(gridShape) +
                               " has an extent outside [1, " +
                               std::to_string(size_) + "]");
    devices *= extent;
  }
  if (devices != size_)
    return invalid(step, "grid " + formatShape(gridShape) + " has " +
                             std::to_string(devices) + " devices, not " +
                             std::to_string(size_));
  std::vector<bool> inGroup(gridShape.size(), false);
  for (int64_t axis : gridAxes) {
    if (axis < 0 || axis >= static_cast<int64_t>(gridShape.size()) ||
        inGroup[axis])
      return invalid(step, "grid axis " + std::to_string(axis) +
                               " is out of range or repeated for grid " +
                               formatShape(gridShape));
    inGroup[axis] = true;
  }
  // Row-major coordinates of this rank; the axes outside the group pick the
  // group (color), the listed axes the position in it (key).
  std::vector<int64_t> coordinates(gridShape.size());
  int64_t remaining = rank_;
  for (size_t axis = gridShape.size(); axis-- > 0;) {
    coordinates[axis] = remaining % gridShape[axis];
    remaining /= gridShape[axis];
  }
  int64_t color = 0, key = 0;
  for (size_t axis = 0; axis < gridShape.size(); ++axis)
    if (!inGroup[axis])
      color = color * gridShape[axis] + coordinates[axis];
  for (int64_t axis : gridAxes)
    key = key * gridShape[axis] + coordinates[axis];
  return doSplit(step, static_cast<int>(color), static_cast<int>(key), group);
}

//===----------------------------------------------------------------------===//
// Launcher environment
//===----------------------------------------------------------------------===//

Status moe::rt::readLaunchEnvironment(LaunchEnvironment &environment) {
  struct Launcher {
    const char *name, *rank, *size, *localRank;
  };
  constexpr Launcher launchers[] = {
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
       "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
  };
  environment = LaunchEnvironment();
  for (const Launcher &launcher : launchers) {
    if (!std::getenv(launcher.rank) && !std::getenv(launcher.size))
      continue;
    LaunchEnvironment found;
    found.launcher = launcher.name;
    const std::pair<const char *, int *> fields[] = {
        {launcher.rank, &found.rank},
        {launcher.size, &found.size},
        {launcher.localRank, &found.localRank}};
    for (auto [variable, value] : fields) {
      const char *text = std::getenv(variable);
      // The local rank is optional: not every launcher version sets it.
      if (!text && value == &found.localRank)
        continue;
      if (!parseIndex(text, *value))
        return Status::error(std::string("launcher variable ") + variable +
                             (text ? "='" + std::string(text) + "'"
                                   : std::string(" is not set")) +
                             ": expected a non-negative integer");
    }
    if (found.size < 1 || found.rank >= found.size)
      return Status::error(std::string("launcher variables ") + launcher.rank +
                           "=" + std::to_string(found.rank) + " and " +
                           launcher.size + "=" + std::to_string(found.size) +
                           " do not describe a rank of a job");
    environment = found;
    return Status::success();
  }
  return Status::success();
}
