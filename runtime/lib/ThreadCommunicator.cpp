//===- ThreadCommunicator.cpp - ranks as threads of one process -----------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The ranks of a thread group meet in shared state under one lock per job. A
// collective is a rendezvous: every rank posts its buffers and waits until
// all have (or its deadline passes), copies what it needs straight from its
// peers' buffers, then waits until every rank has finished copying, so that
// no rank returns and reuses a buffer a peer still reads. Messages wait in a
// mailbox per (source, destination) until the receiver copies them; the
// sender waits for that, as a send without a buffer on NCCL does.
//
// Every rank reduces in rank order, so all ranks get bitwise identical
// all-reduce results.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Collectives.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <type_traits>

using namespace moe::rt;

namespace {

/// Shared by all groups split from one createThreadGroup: the failure that
/// stops the job, the lock all its groups use, and one wake-up condition per
/// world rank. A change wakes only the ranks it concerns (the members of a
/// group, a receiver, a sender), so ranks waiting elsewhere (another
/// pipeline stage) sleep on; a failure wakes every rank of every group.
struct ThreadJob {
  explicit ThreadJob(int worldSize) {
    for (int rank = 0; rank < worldSize; ++rank)
      wakeups.push_back(std::make_unique<std::condition_variable>());
  }
  void wakeAll() {
    for (auto &wakeup : wakeups)
      wakeup->notify_all();
  }

  std::mutex mutex;
  std::vector<std::unique_ptr<std::condition_variable>> wakeups;
  std::string failure;
};

/// What one rank brings to a collective.
struct Contribution {
  const char *op = nullptr;
  uint64_t step = 0;
  /// The arguments that must agree across ranks, in words.
  std::string signature;
  const void *send = nullptr;
  const int64_t *sendCounts = nullptr;
  int color = 0;
  int key = 0;
};

/// A send waiting in its receiver's mailbox; it lives on the sender's stack
/// until the receiver has copied it or the sender has taken it back.
struct Message {
  const void *data;
  size_t bytes;
  bool taken = false;
  bool delivered = false;
  bool rejected = false;
};

/// What a rank is doing, for the timeout message of a peer that waits for
/// it.
struct Activity {
  const char *op = nullptr;
  uint64_t step = 0;
  bool inside = false;
};

struct ThreadGroup {
  ThreadGroup(std::shared_ptr<ThreadJob> job, std::string name,
              std::vector<int> worldRanks)
      : job(std::move(job)), name(std::move(name)),
        worldRanks(std::move(worldRanks)), slots(size()),
        arrived(size(), false), mailboxes(size() * size()), activity(size()) {}

  int size() const { return static_cast<int>(worldRanks.size()); }
  std::deque<Message *> &mailbox(int source, int destination) {
    return mailboxes[source * size() + destination];
  }

  std::shared_ptr<ThreadJob> job;
  std::string name;
  /// The rank in the root group of each member, for messages.
  std::vector<int> worldRanks;

  // The collective in progress. The last rank to depart resets the arrivals
  // and advances `round`, which releases the others.
  std::vector<Contribution> slots;
  std::vector<bool> arrived;
  int arrivedCount = 0;
  int departedCount = 0;
  bool allArrived = false;
  uint64_t round = 0;
  /// The groups the split in progress creates, by color.
  std::map<int, std::shared_ptr<ThreadGroup>> splitGroups;

  std::vector<std::deque<Message *>> mailboxes;
  std::vector<Activity> activity;
};

std::string formatSeconds(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", duration.count() / 1000.0);
  return text;
}

template <typename T>
void reduceTyped(ReduceOp op, const std::vector<const void *> &inputs,
                 int64_t offset, int64_t count, void *output) {
  T *result = static_cast<T *>(output);
  const T *first = static_cast<const T *>(inputs[0]) + offset;
  std::copy(first, first + count, result);
  for (size_t input = 1; input < inputs.size(); ++input) {
    const T *values = static_cast<const T *>(inputs[input]) + offset;
    for (int64_t i = 0; i < count; ++i) {
      switch (op) {
      case ReduceOp::Sum:
        // Integers wrap on overflow as they do under MPI and NCCL, without
        // the undefined behaviour of signed overflow.
        if constexpr (std::is_integral_v<T>)
          result[i] = static_cast<T>(static_cast<uint64_t>(result[i]) +
                                     static_cast<uint64_t>(values[i]));
        else
          result[i] += values[i];
        break;
      case ReduceOp::Max:
        result[i] = std::max(result[i], values[i]);
        break;
      case ReduceOp::Min:
        result[i] = std::min(result[i], values[i]);
        break;
      }
    }
  }
}

/// Reduces elements [offset, offset + count) of every input into `output`,
/// in input order.
void reduce(DType dtype, ReduceOp op, const std::vector<const void *> &inputs,
            int64_t offset, int64_t count, void *output) {
  if (dtype == DType::F32)
    reduceTyped<float>(op, inputs, offset, count, output);
  else
    reduceTyped<int64_t>(op, inputs, offset, count, output);
}

class ThreadCommunicator final : public Communicator {
public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank,
                     std::chrono::milliseconds timeout)
      : Communicator(rank, group->size(), group->name, group->worldRanks[rank],
                     timeout),
        group_(std::move(group)) {}

  const char *transport() const override { return "threads"; }

protected:
  Status doAllReduce(const Step &step, const void *send, void *recv,
                     int64_t count, DType dtype, ReduceOp op) override;
  Status doAllGather(const Step &step, const void *send, void *recv,
                     size_t bytesPerRank) override;
  Status doReduceScatter(const Step &step, const void *send, void *recv,
                         int64_t countPerRank, DType dtype,
                         ReduceOp op) override;
  Status doExchangeCounts(const Step &step, const int64_t *sendCounts,
                          int64_t *recvCounts) override;
  Status doAllToAllV(const Step &step, const void *send,
                     const int64_t *sendCounts, void *recv,
                     const int64_t *recvCounts, size_t rowBytes) override;
  Status doSendRecv(const Step &step, const void *sendData, size_t sendBytes,
                    int destination, void *recvData, size_t recvBytes,
                    int source) override;
  Status doBarrier(const Step &step) override;
  Status doSplit(const Step &step, int color, int key,
                 std::unique_ptr<Communicator> &group) override;

  void failJob(const std::string &failure) override {
    std::lock_guard<std::mutex> lock(job().mutex);
    recordFailure(failure);
  }
  std::string jobFailure() override {
    std::lock_guard<std::mutex> lock(job().mutex);
    return job().failure;
  }

private:
  using Work = std::function<void(const std::vector<Contribution> &)>;

  ThreadJob &job() { return *group_->job; }

  // With the job's lock held:
  void recordFailure(const std::string &failure);
  Status failHeld(const Step &step, const std::string &detail);
  std::string describeMember(int member) const;
  /// This rank's wake-up condition, and waking other ranks (lock held).
  std::condition_variable &wakeup() {
    return *job().wakeups[group_->worldRanks[rank()]];
  }
  void wakeMember(int member) {
    job().wakeups[group_->worldRanks[member]]->notify_all();
  }
  void wakeGroup() {
    for (int member = 0; member < group_->size(); ++member)
      wakeMember(member);
  }
  Status receiveHeld(std::unique_lock<std::mutex> &lock, const Step &step,
                     void *data, size_t bytes, int source);

  /// Runs `work` once every rank has posted `mine` for this step.
  Status rendezvous(const Step &step, Contribution mine, const Work &work);

  std::shared_ptr<ThreadGroup> group_;
};

void ThreadCommunicator::recordFailure(const std::string &failure) {
  if (job().failure.empty())
    job().failure = failure;
  job().wakeAll();
}

Status ThreadCommunicator::failHeld(const Step &step,
                                    const std::string &detail) {
  std::string message = where(step) + ": " + detail;
  recordFailure(message);
  return Status::error(message);
}

std::string ThreadCommunicator::describeMember(int member) const {
  std::string text = "rank " + std::to_string(member);
  if (name() != "world")
    text += " (world rank " + std::to_string(group_->worldRanks[member]) + ")";
  const Activity &activity = group_->activity[member];
  if (!activity.op)
    return text + ", which has made no call on \"" + name() + "\" yet";
  return text +
         (activity.inside ? ", which is in " : ", which last finished ") +
         activity.op + " step " + std::to_string(activity.step);
}

Status ThreadCommunicator::rendezvous(const Step &step, Contribution mine,
                                      const Work &work) {
  ThreadGroup &group = *group_;
  ThreadJob &shared = job();
  std::unique_lock<std::mutex> lock(shared.mutex);
  if (!shared.failure.empty())
    return stopped(step, shared.failure);
  mine.op = step.op;
  mine.step = step.number;
  group.slots[rank()] = std::move(mine);
  group.arrived[rank()] = true;
  group.activity[rank()] = {step.op, step.number, true};
  if (++group.arrivedCount == group.size()) {
    group.allArrived = true;
    wakeGroup();
  }
  uint64_t round = group.round;
  wakeup().wait_until(lock, step.deadline, [&] {
    return group.allArrived || !shared.failure.empty();
  });
  if (!group.allArrived) {
    group.activity[rank()].inside = false;
    if (!shared.failure.empty())
      return stopped(step, shared.failure);
    std::string missing;
    for (int member = 0; member < group.size(); ++member) {
      if (group.arrived[member])
        continue;
      missing += (missing.empty() ? "" : "; ") + describeMember(member);
    }
    return failHeld(step, "timed out after " + formatSeconds(timeout()) +
                              " waiting for " + missing);
  }
  lock.unlock();

  // Every rank sees the same slots and so reaches the same verdict.
  std::string mismatch;
  for (const Contribution &slot : group.slots) {
    if (std::strcmp(slot.op, group.slots[0].op) == 0 &&
        slot.signature == group.slots[0].signature)
      continue;
    mismatch = "ranks called different operations:";
    for (int member = 0; member < group.size(); ++member) {
      const Contribution &other = group.slots[member];
      mismatch += std::string(member ? ";" : "") + " rank " +
                  std::to_string(member) + " " + other.op + " step " +
                  std::to_string(other.step);
      if (!other.signature.empty())
        mismatch += " (" + other.signature + ")";
    }
    break;
  }
  if (mismatch.empty())
    work(group.slots);

  lock.lock();
  if (++group.departedCount == group.size()) {
    group.arrived.assign(group.size(), false);
    group.arrivedCount = 0;
    group.departedCount = 0;
    group.allArrived = false;
    group.splitGroups.clear();
    ++group.round;
    wakeGroup();
  } else {
    // Everyone has arrived, so the others finish copying without waiting for
    // anything: no deadline is needed, and leaving early on a failure would
    // let this rank's buffers change under a reader.
    wakeup().wait(lock, [&] { return group.round != round; });
  }
  group.activity[rank()].inside = false;
  if (!mismatch.empty())
    return failHeld(step, mismatch);
  return Status::success();
}

Status ThreadCommunicator::doAllReduce(const Step &step, const void *send,
                                       void *recv, int64_t count, DType dtype,
                                       ReduceOp op) {
  Contribution mine;
  mine.signature = std::string(dtypeName(dtype)) + " x " +
                   std::to_string(count) + ", " + reduceOpName(op);
  mine.send = send;
  // In place, peers read this rank's input while it reduces: reduce into
  // scratch and copy once every rank has finished reading.
  bool inPlace = send == recv;
  std::vector<char> scratch(inPlace ? count * dtypeSize(dtype) : 0);
  void *target = inPlace ? scratch.data() : recv;
  Status status =
      rendezvous(step, mine, [&](const std::vector<Contribution> &slots) {
        std::vector<const void *> inputs;
        for (const Contribution &slot : slots)
          inputs.push_back(slot.send);
        reduce(dtype, op, inputs, 0, count, target);
      });
  if (status && inPlace && !scratch.empty())
    std::memcpy(recv, scratch.data(), scratch.size());
  return status;
}

Status ThreadCommunicator::doAllGather(const Step &step, const void *send,
                                       void *recv, size_t bytesPerRank) {
  Contribution mine;
  mine.signature = std::to_string(bytesPerRank) + " bytes per rank";
  mine.send = send;
  return rendezvous(step, mine, [&](const std::vector<Contribution> &slots) {
    for (int member = 0; member < size(); ++member) {
      char *slot = static_cast<char *>(recv) + member * bytesPerRank;
      // In place, this rank's piece is already in its slot.
      if (bytesPerRank && slots[member].send != slot)
        std::memcpy(slot, slots[member].send, bytesPerRank);
    }
  });
}

Status ThreadCommunicator::doReduceScatter(const Step &step, const void *send,
                                           void *recv, int64_t countPerRank,
                                           DType dtype, ReduceOp op) {
  Contribution mine;
  mine.signature = std::string(dtypeName(dtype)) + " x " +
                   std::to_string(countPerRank) + " per rank, " +
                   reduceOpName(op);
  mine.send = send;
  size_t pieceBytes = countPerRank * dtypeSize(dtype);
  // In place, the output is this rank's own input piece, which the
  // reduction reads: reduce into scratch, copy when all have read.
  bool inPlace = recv == static_cast<const char *>(send) + rank() * pieceBytes;
  std::vector<char> scratch(inPlace ? pieceBytes : 0);
  void *target = inPlace ? scratch.data() : recv;
  Status status =
      rendezvous(step, mine, [&](const std::vector<Contribution> &slots) {
        std::vector<const void *> inputs;
        for (const Contribution &slot : slots)
          inputs.push_back(slot.send);
        reduce(dtype, op, inputs, rank() * countPerRank, countPerRank, target);
      });
  if (status && inPlace && !scratch.empty())
    std::memcpy(recv, scratch.data(), scratch.size());
  return status;
}

Status ThreadCommunicator::doExchangeCounts(const Step &step,
                                            const int64_t *sendCounts,
                                            int64_t *recvCounts) {
  Contribution mine;
  mine.sendCounts = sendCounts;
  return rendezvous(step, mine, [&](const std::vector<Contribution> &slots) {
    for (int member = 0; member < size(); ++member)
      recvCounts[member] = slots[member].sendCounts[rank()];
  });
}

Status ThreadCommunicator::doAllToAllV(const Step &step, const void *send,
                                       const int64_t *sendCounts, void *recv,
                                       const int64_t *recvCounts,
                                       size_t rowBytes) {
  Contribution mine;
  mine.signature = std::to_string(rowBytes) + " bytes per row";
  mine.send = send;
  mine.sendCounts = sendCounts;
  return rendezvous(step, mine, [&](const std::vector<Contribution> &slots) {
    char *output = static_cast<char *>(recv);
    for (int member = 0; member < size(); ++member) {
      // This rank's rows follow the rows the member sends to lower ranks.
      int64_t firstRow = 0;
      for (int peer = 0; peer < rank(); ++peer)
        firstRow += slots[member].sendCounts[peer];
      size_t bytes = recvCounts[member] * rowBytes;
      if (bytes)
        std::memcpy(output,
                    static_cast<const char *>(slots[member].send) +
                        firstRow * rowBytes,
                    bytes);
      output += bytes;
    }
  });
}

Status ThreadCommunicator::receiveHeld(std::unique_lock<std::mutex> &lock,
                                       const Step &step, void *data,
                                       size_t bytes, int source) {
  ThreadJob &shared = job();
  std::deque<Message *> &inbox = group_->mailbox(source, rank());
  wakeup().wait_until(lock, step.deadline, [&] {
    return !inbox.empty() || !shared.failure.empty();
  });
  if (!shared.failure.empty())
    return stopped(step, shared.failure);
  if (inbox.empty())
    return failHeld(step, "timed out after " + formatSeconds(timeout()) +
                              " waiting to receive from " +
                              describeMember(source));
  Message *incoming = inbox.front();
  inbox.pop_front();
  incoming->taken = true;
  Status status = Status::success();
  if (incoming->bytes != bytes) {
    incoming->rejected = true;
    status = failHeld(step, "rank " + std::to_string(source) + " sent " +
                                std::to_string(incoming->bytes) +
                                " bytes, the receive expects " +
                                std::to_string(bytes));
  } else if (bytes) {
    lock.unlock();
    std::memcpy(data, incoming->data, bytes);
    lock.lock();
  }
  incoming->delivered = true;
  wakeMember(source);
  return status;
}

Status ThreadCommunicator::doSendRecv(const Step &step, const void *sendData,
                                      size_t sendBytes, int destination,
                                      void *recvData, size_t recvBytes,
                                      int source) {
  ThreadGroup &group = *group_;
  ThreadJob &shared = job();
  std::unique_lock<std::mutex> lock(shared.mutex);
  if (!shared.failure.empty())
    return stopped(step, shared.failure);
  group.activity[rank()] = {step.op, step.number, true};
  Message outgoing{sendData, sendBytes};
  if (destination >= 0) {
    group.mailbox(rank(), destination).push_back(&outgoing);
    wakeMember(destination);
  }
  Status status = Status::success();
  if (source >= 0)
    status = receiveHeld(lock, step, recvData, recvBytes, source);
  if (destination >= 0) {
    if (status)
      wakeup().wait_until(lock, step.deadline, [&] {
        return outgoing.delivered || !shared.failure.empty();
      });
    if (!outgoing.taken) {
      std::deque<Message *> &outbox = group.mailbox(rank(), destination);
      outbox.erase(std::find(outbox.begin(), outbox.end(), &outgoing));
      if (status)
        status =
            !shared.failure.empty()
                ? stopped(step, shared.failure)
                : failHeld(step, "timed out after " + formatSeconds(timeout()) +
                                     " waiting for a receive by " +
                                     describeMember(destination));
    } else {
      // The receiver is copying from this rank's buffer and finishes
      // without waiting for anyone.
      wakeup().wait(lock, [&] { return outgoing.delivered; });
      if (status && outgoing.rejected)
        status = stopped(step, shared.failure);
    }
  }
  group.activity[rank()].inside = false;
  return status;
}

Status ThreadCommunicator::doBarrier(const Step &step) {
  return rendezvous(step, Contribution(),
                    [](const std::vector<Contribution> &) {});
}

Status ThreadCommunicator::doSplit(const Step &step, int color, int key,
                                   std::unique_ptr<Communicator> &group) {
  Contribution mine;
  mine.color = color;
  mine.key = key;
  return rendezvous(step, mine, [&](const std::vector<Contribution> &slots) {
    if (color < 0)
      return;
    std::vector<int> members;
    for (int member = 0; member < size(); ++member)
      if (slots[member].color == color)
        members.push_back(member);
    // Stable: equal keys keep rank order.
    std::stable_sort(members.begin(), members.end(),
                     [&](int a, int b) { return slots[a].key < slots[b].key; });
    int newRank = static_cast<int>(
        std::find(members.begin(), members.end(), rank()) - members.begin());
    std::lock_guard<std::mutex> lock(job().mutex);
    std::shared_ptr<ThreadGroup> &child = group_->splitGroups[color];
    if (!child) {
      std::vector<int> worldRanks;
      for (int member : members)
        worldRanks.push_back(group_->worldRanks[member]);
      child = std::make_shared<ThreadGroup>(
          group_->job, name() + "/" + std::to_string(color), worldRanks);
    }
    group = std::make_unique<ThreadCommunicator>(child, newRank, timeout());
  });
}

} // namespace

Status
moe::rt::createThreadGroup(int size, const CommunicatorOptions &options,
                           std::vector<std::unique_ptr<Communicator>> &ranks) {
  ranks.clear();
  if (size < 1)
    return Status::error("a thread group needs at least one rank, got " +
                         std::to_string(size));
  if (options.timeout.count() <= 0)
    return Status::error("communicator timeout must be positive, got " +
                         std::to_string(options.timeout.count()) + " ms");
  std::vector<int> worldRanks(size);
  for (int rank = 0; rank < size; ++rank)
    worldRanks[rank] = rank;
  auto group = std::make_shared<ThreadGroup>(std::make_shared<ThreadJob>(size),
                                             "world", worldRanks);
  for (int rank = 0; rank < size; ++rank)
    ranks.push_back(
        std::make_unique<ThreadCommunicator>(group, rank, options.timeout));
  return Status::success();
}
