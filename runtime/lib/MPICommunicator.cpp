//===- MPICommunicator.cpp - ranks as MPI processes -----------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency. Built
// into moe-runtime-mpi when CMake finds MPI.
//
// Every operation starts non-blocking MPI calls (MPI_Iallreduce, ...) and
// polls them with MPI_Test until they complete, the deadline passes, or a
// failure notice arrives. Notices travel on a control communicator (a
// duplicate of MPI_COMM_WORLD) on which every process keeps a receive posted:
// `abort` and invalid arguments send one to every process, and a rank whose
// call times out sends a query that every rank inside an operation answers
// with what it is doing, so that the error can name the ranks that did not
// arrive.
//
// MPI cannot cancel a started collective (MPI_Cancel is erroneous on one),
// and the request keeps pointers into the caller's buffers: returning an
// error would leave MPI free to write into memory the caller then frees. And
// a rank that does not arrive may be hung, which would hold up MPI_Finalize
// on every rank. So a rank whose deadline passes, or that learns of a failure
// while a call is in flight, prints its error (rank, communicator, operation,
// step, what the peers answered) and ends the job with MPI_Abort. Failures
// found while nothing is in flight (invalid arguments, a notice that arrives
// before a call or while a receive waits for its message) are returned as
// Status, and the ranks end normally.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Collectives.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <thread>

using namespace moe::rt;

namespace {

using Clock = std::chrono::steady_clock;

std::string formatSeconds(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", duration.count() / 1000.0);
  return text;
}

std::string describeMPIError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

bool mpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized;
}

/// Prints `message` and ends every process of the job.
[[noreturn]] void abortJob(const std::string &message) {
  std::fprintf(stderr, "moe-runtime: %s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  // MPI_Abort makes a "best attempt" only; never go on with requests in
  // flight.
  std::_Exit(EXIT_FAILURE);
}

/// Sleeps a little longer each idle round: the first rounds spin for low
/// latency, later ones yield the core to ranks that oversubscribe it (the
/// peer being waited for may be one of them).
class Backoff {
public:
  void pause() {
    if (++rounds_ <= 64)
      return;
    int shift = std::min(rounds_ - 64, 7);
    std::this_thread::sleep_for(std::chrono::microseconds(10 << shift));
  }

private:
  int rounds_ = 0;
};

/// A message on the control communicator.
struct Notice {
  enum Kind : int32_t { Abort, Query, Answer };
  int32_t kind;
  int32_t worldRank;
  char text[1016];
};

/// The process's part of the job: the control communicator and the failure
/// that stops every communicator. One per process, shared by all of its
/// communicators.
class MPIJob {
public:
  static Status get(std::chrono::milliseconds timeout,
                    std::shared_ptr<MPIJob> &job);
  ~MPIJob() { shutdown(); }

  int worldRank() const { return worldRank_; }
  int worldSize() const { return worldSize_; }
  const std::string &failure() const { return failure_; }
  /// What this rank is doing ("is in barrier step 3 of \"world\""), sent
  /// to a rank that asks.
  void setActivity(std::string activity) { activity_ = std::move(activity); }

  /// Handles every notice that has arrived.
  void poll();
  /// Records `failure` unless one is recorded, and tells every process.
  void fail(const std::string &failure);
  /// Asks `worldRanks` what they are doing; waits at most `grace` and
  /// returns the answers by world rank.
  std::map<int, std::string> ask(const std::vector<int> &worldRanks,
                                 std::chrono::milliseconds grace);

  /// Ends the control traffic before MPI_Finalize.
  void shutdown();

private:
  MPIJob() = default;
  void post();
  void send(Notice::Kind kind, const std::string &text, int worldRank);

  int worldRank_ = 0;
  int worldSize_ = 1;
  MPI_Comm control_ = MPI_COMM_NULL;
  Notice incoming_{};
  MPI_Request incomingRequest_ = MPI_REQUEST_NULL;
  std::deque<std::pair<std::unique_ptr<Notice>, MPI_Request>> outgoing_;
  std::map<int, std::string> answers_;
  std::string failure_;
  std::string activity_;
};

std::weak_ptr<MPIJob> currentJob;

/// Registered when the runtime initialises MPI, so that it also finalises it.
void finalizeAtExit() {
  if (mpiFinalized())
    return;
  if (std::shared_ptr<MPIJob> job = currentJob.lock())
    job->shutdown();
  MPI_Finalize();
}

/// Duplicates `comm` with a deadline (MPI_Comm_dup could wait forever for a
/// process that never arrives) and makes MPI errors on it return codes.
MPI_Comm duplicate(MPI_Comm comm, Clock::time_point deadline,
                   const std::string &context) {
  MPI_Comm copy = MPI_COMM_NULL;
  MPI_Request request = MPI_REQUEST_NULL;
  if (int rc = MPI_Comm_idup(comm, &copy, &request); rc != MPI_SUCCESS)
    abortJob(context + ": MPI_Comm_idup failed: " + describeMPIError(rc));
  Backoff backoff;
  for (;;) {
    int done = 0;
    if (int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
        rc != MPI_SUCCESS)
      abortJob(context + ": MPI_Comm_idup failed: " + describeMPIError(rc));
    if (done)
      break;
    if (Clock::now() >= deadline)
      abortJob(context + ": timed out waiting for the other processes to "
                         "create their communicator (MPI_Comm_idup)");
    backoff.pause();
  }
  MPI_Comm_set_errhandler(copy, MPI_ERRORS_RETURN);
  return copy;
}

Status MPIJob::get(std::chrono::milliseconds timeout,
                   std::shared_ptr<MPIJob> &job) {
  job = currentJob.lock();
  if (job)
    return Status::success();
  if (mpiFinalized())
    return Status::error("MPI has already been finalised; create MPI "
                         "communicators before MPI_Finalize");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (int rc =
            MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
        rc != MPI_SUCCESS)
      return Status::error("MPI_Init_thread failed: " + describeMPIError(rc));
    std::atexit(finalizeAtExit);
  }
  job.reset(new MPIJob());
  MPI_Comm_rank(MPI_COMM_WORLD, &job->worldRank_);
  MPI_Comm_size(MPI_COMM_WORLD, &job->worldSize_);
  job->control_ = duplicate(MPI_COMM_WORLD, Clock::now() + timeout,
                            "rank " + std::to_string(job->worldRank_) + " of " +
                                std::to_string(job->worldSize_) + " (mpi)");
  job->post();
  currentJob = job;
  return Status::success();
}

void MPIJob::post() {
  MPI_Irecv(&incoming_, sizeof(Notice), MPI_BYTE, MPI_ANY_SOURCE, 0, control_,
            &incomingRequest_);
}

void MPIJob::send(Notice::Kind kind, const std::string &text, int worldRank) {
  auto notice = std::make_unique<Notice>();
  notice->kind = kind;
  notice->worldRank = worldRank_;
  std::snprintf(notice->text, sizeof(notice->text), "%s", text.c_str());
  MPI_Request request = MPI_REQUEST_NULL;
  // Best effort: a notice that cannot be sent leaves the peer to its own
  // deadline.
  if (MPI_Isend(notice.get(), sizeof(Notice), MPI_BYTE, worldRank, 0, control_,
                &request) == MPI_SUCCESS)
    outgoing_.emplace_back(std::move(notice), request);
}

void MPIJob::poll() {
  for (;;) {
    int arrived = 0;
    if (incomingRequest_ == MPI_REQUEST_NULL ||
        MPI_Test(&incomingRequest_, &arrived, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS ||
        !arrived)
      break;
    Notice notice = incoming_;
    notice.text[sizeof(notice.text) - 1] = '\0';
    post();
    switch (notice.kind) {
    case Notice::Abort:
      if (failure_.empty())
        failure_ = notice.text;
      break;
    case Notice::Query:
      send(Notice::Answer, activity_, notice.worldRank);
      break;
    case Notice::Answer:
      answers_[notice.worldRank] = notice.text;
      break;
    }
  }
  while (!outgoing_.empty()) {
    int sent = 0;
    MPI_Test(&outgoing_.front().second, &sent, MPI_STATUS_IGNORE);
    if (!sent)
      break;
    outgoing_.pop_front();
  }
}

void MPIJob::fail(const std::string &failure) {
  poll();
  if (!failure_.empty())
    return;
  failure_ = failure;
  for (int rank = 0; rank < worldSize_; ++rank)
    if (rank != worldRank_)
      send(Notice::Abort, failure, rank);
}

std::map<int, std::string> MPIJob::ask(const std::vector<int> &worldRanks,
                                       std::chrono::milliseconds grace) {
  answers_.clear();
  for (int rank : worldRanks)
    send(Notice::Query, "", rank);
  Clock::time_point end = Clock::now() + grace;
  Backoff backoff;
  while (answers_.size() < worldRanks.size() && Clock::now() < end) {
    poll();
    backoff.pause();
  }
  return answers_;
}

void MPIJob::shutdown() {
  if (control_ == MPI_COMM_NULL || mpiFinalized())
    return;
  if (incomingRequest_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&incomingRequest_);
    MPI_Wait(&incomingRequest_, MPI_STATUS_IGNORE);
  }
  // Notices still on their way complete on their own.
  for (auto &[notice, request] : outgoing_)
    MPI_Request_free(&request);
  outgoing_.clear();
  MPI_Comm_free(&control_);
}

MPI_Datatype mpiType(DType dtype) {
  return dtype == DType::F32 ? MPI_FLOAT : MPI_INT64_T;
}

MPI_Op mpiOp(ReduceOp op) {
  switch (op) {
  case ReduceOp::Sum:
    return MPI_SUM;
  case ReduceOp::Max:
    return MPI_MAX;
  case ReduceOp::Min:
    return MPI_MIN;
  }
  return MPI_OP_NULL;
}

class MPICommunicator final : public Communicator {
public:
  MPICommunicator(std::shared_ptr<MPIJob> job, MPI_Comm comm, int rank,
                  std::string name, std::vector<int> worldRanks,
                  std::chrono::milliseconds timeout)
      : Communicator(rank, static_cast<int>(worldRanks.size()), std::move(name),
                     worldRanks[rank], timeout),
        job_(std::move(job)), comm_(comm), worldRanks_(std::move(worldRanks)) {}
  ~MPICommunicator() override {
    if (!mpiFinalized())
      MPI_Comm_free(&comm_);
  }

  const char *transport() const override { return "mpi"; }

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

  void failJob(const std::string &failure) override { job_->fail(failure); }
  std::string jobFailure() override {
    job_->poll();
    return job_->failure();
  }

private:
  /// MPI counts are int; larger ones are an error rather than a silent
  /// truncation.
  Status checkCount(const Step &step, int64_t count, const char *what);
  /// An MPI call failed while nothing of the step is in flight.
  Status mpiError(const Step &step, const char *call, int code) {
    return fail(step, std::string(call) + " failed: " + describeMPIError(code));
  }
  /// Polls `progress` until it reports done. A failure notice is returned
  /// as an error while nothing of the step is in flight (`inFlight` false)
  /// and ends the job otherwise; a deadline always ends the job, because the
  /// rank it waits for may be hung and MPI_Finalize would wait for it too.
  Status await(const Step &step, bool inFlight,
               const std::function<int(bool &done)> &progress);
  /// Waits for started requests; returns only when they complete.
  void awaitRequests(const Step &step, std::vector<MPI_Request> &requests);
  /// What the other ranks answer about themselves, as a sentence.
  std::string askPeers();

  std::shared_ptr<MPIJob> job_;
  MPI_Comm comm_;
  /// The MPI_COMM_WORLD rank of each member.
  std::vector<int> worldRanks_;
};

Status MPICommunicator::checkCount(const Step &step, int64_t count,
                                   const char *what) {
  if (count <= INT_MAX)
    return Status::success();
  return fail(step, std::to_string(count) + " " + what +
                        " exceed MPI's int counts (at most " +
                        std::to_string(INT_MAX) + "); split the operation");
}

std::string MPICommunicator::askPeers() {
  std::vector<int> others;
  for (int member = 0; member < size(); ++member)
    if (member != rank())
      others.push_back(worldRanks_[member]);
  // Long enough for a polling peer to answer, short next to the timeout.
  auto grace = std::min<std::chrono::milliseconds>(timeout() / 4,
                                                   std::chrono::seconds(2));
  std::map<int, std::string> answers = job_->ask(others, grace);
  std::string text;
  for (int member = 0; member < size(); ++member) {
    if (member == rank())
      continue;
    std::string who = "rank " + std::to_string(member);
    if (worldRanks_[member] != member)
      who += " (world rank " + std::to_string(worldRanks_[member]) + ")";
    auto answer = answers.find(worldRanks_[member]);
    text += "; " + who +
            (answer != answers.end()
                 ? " " + answer->second
                 : " did not answer within " + formatSeconds(grace) +
                       " (it is outside any operation: computing, hung or "
                       "dead)");
  }
  return text;
}

Status MPICommunicator::await(const Step &step, bool inFlight,
                              const std::function<int(bool &done)> &progress) {
  job_->setActivity("is in " + std::string(step.op) + " step " +
                    std::to_string(step.number) + " of \"" + name() + "\"");
  Backoff backoff;
  for (;;) {
    bool done = false;
    if (int rc = progress(done); rc != MPI_SUCCESS) {
      if (!inFlight)
        return fail(step, "MPI failed: " + describeMPIError(rc));
      abortJob(where(step) + ": MPI failed with the operation in flight: " +
               describeMPIError(rc));
    }
    if (done)
      return Status::success();
    job_->poll();
    std::string cannotGoOn = std::string("MPI cannot cancel the ") + step.op +
                             " in flight, so this rank ends the job";
    if (!job_->failure().empty()) {
      if (!inFlight)
        return stopped(step, job_->failure());
      // The notice can overtake the last messages of a step that the
      // aborting rank completed before it aborted; such a step completes
      // here too, and the failure stops the next call instead.
      if (progress(done) == MPI_SUCCESS && done)
        return Status::success();
      abortJob(where(step) + ": stopped because " + job_->failure() + "; " +
               cannotGoOn);
    }
    if (Clock::now() >= step.deadline) {
      job_->setActivity("has timed out in " + std::string(step.op) + " step " +
                        std::to_string(step.number) + " of \"" + name() + "\"");
      abortJob(where(step) + ": timed out after " + formatSeconds(timeout()) +
               askPeers() + "; " +
               (inFlight ? cannotGoOn
                         : "a rank that does not arrive may be hung and would "
                           "hold up MPI_Finalize, so this rank ends the job"));
    }
    backoff.pause();
  }
}

void MPICommunicator::awaitRequests(const Step &step,
                                    std::vector<MPI_Request> &requests) {
  await(step, /*inFlight=*/true, [&](bool &done) {
    int flag = 0;
    int rc = MPI_Testall(static_cast<int>(requests.size()), requests.data(),
                         &flag, MPI_STATUSES_IGNORE);
    done = flag;
    return rc;
  });
}

Status MPICommunicator::doAllReduce(const Step &step, const void *send,
                                    void *recv, int64_t count, DType dtype,
                                    ReduceOp op) {
  if (Status status = checkCount(step, count, "elements"); !status)
    return status;
  std::vector<MPI_Request> requests(1);
  if (int rc = MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv,
                              static_cast<int>(count), mpiType(dtype),
                              mpiOp(op), comm_, &requests[0]);
      rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Iallreduce", rc);
  awaitRequests(step, requests);
  return Status::success();
}

Status MPICommunicator::doAllGather(const Step &step, const void *send,
                                    void *recv, size_t bytesPerRank) {
  if (Status status = checkCount(step, bytesPerRank, "bytes per rank"); !status)
    return status;
  int bytes = static_cast<int>(bytesPerRank);
  bool inPlace = send == static_cast<char *>(recv) + rank() * bytesPerRank;
  std::vector<MPI_Request> requests(1);
  if (int rc = MPI_Iallgather(inPlace ? MPI_IN_PLACE : send, bytes, MPI_BYTE,
                              recv, bytes, MPI_BYTE, comm_, &requests[0]);
      rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Iallgather", rc);
  awaitRequests(step, requests);
  return Status::success();
}

Status MPICommunicator::doReduceScatter(const Step &step, const void *send,
                                        void *recv, int64_t countPerRank,
                                        DType dtype, ReduceOp op) {
  if (Status status = checkCount(step, countPerRank, "elements per rank");
      !status)
    return status;
  size_t pieceBytes = countPerRank * dtypeSize(dtype);
  bool inPlace = recv == static_cast<const char *>(send) + rank() * pieceBytes;
  // MPI's in-place form reads the whole input from the receive buffer and
  // leaves the result at its start; it then moves to this rank's piece.
  void *target = inPlace ? const_cast<void *>(send) : recv;
  std::vector<MPI_Request> requests(1);
  if (int rc = MPI_Ireduce_scatter_block(
          inPlace ? MPI_IN_PLACE : send, target, static_cast<int>(countPerRank),
          mpiType(dtype), mpiOp(op), comm_, &requests[0]);
      rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Ireduce_scatter_block", rc);
  awaitRequests(step, requests);
  if (inPlace && target != recv)
    std::memmove(recv, target, pieceBytes);
  return Status::success();
}

Status MPICommunicator::doExchangeCounts(const Step &step,
                                         const int64_t *sendCounts,
                                         int64_t *recvCounts) {
  std::vector<MPI_Request> requests(1);
  if (int rc = MPI_Ialltoall(sendCounts, 1, MPI_INT64_T, recvCounts, 1,
                             MPI_INT64_T, comm_, &requests[0]);
      rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Ialltoall", rc);
  awaitRequests(step, requests);
  return Status::success();
}

Status MPICommunicator::doAllToAllV(const Step &step, const void *send,
                                    const int64_t *sendCounts, void *recv,
                                    const int64_t *recvCounts,
                                    size_t rowBytes) {
  // Rows without bytes move nothing, and the count exchange has already
  // brought every rank to this step.
  if (rowBytes == 0)
    return Status::success();
  if (Status status = checkCount(step, rowBytes, "bytes per row"); !status)
    return status;
  // Counts and displacements in rows (a contiguous row type), so that only
  // row counts, not byte counts, must fit in an int.
  std::vector<int> sendRows(size()), sendFirst(size()), recvRows(size()),
      recvFirst(size());
  int64_t sendTotal = 0, recvTotal = 0;
  for (int peer = 0; peer < size(); ++peer) {
    if (Status status = checkCount(step, sendTotal + sendCounts[peer], "rows");
        !status)
      return status;
    if (Status status = checkCount(step, recvTotal + recvCounts[peer], "rows");
        !status)
      return status;
    sendFirst[peer] = static_cast<int>(sendTotal);
    sendRows[peer] = static_cast<int>(sendCounts[peer]);
    recvFirst[peer] = static_cast<int>(recvTotal);
    recvRows[peer] = static_cast<int>(recvCounts[peer]);
    sendTotal += sendCounts[peer];
    recvTotal += recvCounts[peer];
  }
  MPI_Datatype row;
  if (int rc = MPI_Type_contiguous(static_cast<int>(rowBytes), MPI_BYTE, &row);
      rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Type_contiguous", rc);
  MPI_Type_commit(&row);
  std::vector<MPI_Request> requests(1);
  int rc = MPI_Ialltoallv(send, sendRows.data(), sendFirst.data(), row, recv,
                          recvRows.data(), recvFirst.data(), row, comm_,
                          &requests[0]);
  // The started operation keeps its own reference to the type.
  MPI_Type_free(&row);
  if (rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Ialltoallv", rc);
  awaitRequests(step, requests);
  return Status::success();
}

Status MPICommunicator::doSendRecv(const Step &step, const void *sendData,
                                   size_t sendBytes, int destination,
                                   void *recvData, size_t recvBytes,
                                   int source) {
  if (Status status =
          checkCount(step, std::max(sendBytes, recvBytes), "message bytes");
      !status)
    return status;
  std::vector<MPI_Request> requests;
  if (destination >= 0) {
    requests.emplace_back();
    if (int rc = MPI_Isend(sendData, static_cast<int>(sendBytes), MPI_BYTE,
                           destination, 0, comm_, &requests.back());
        rc != MPI_SUCCESS)
      return mpiError(step, "MPI_Isend", rc);
  }
  std::string mismatch;
  std::vector<char> discard;
  if (source >= 0) {
    // Probe first so that a message of the wrong size is an error naming
    // both sizes, not a truncation inside MPI.
    MPI_Message message = MPI_MESSAGE_NULL;
    MPI_Status probed;
    if (Status status = await(step, /*inFlight=*/!requests.empty(),
                              [&](bool &done) {
                                int found = 0;
                                int rc = MPI_Improbe(source, 0, comm_, &found,
                                                     &message, &probed);
                                done = found;
                                return rc;
                              });
        !status)
      return status;
    int count = 0;
    MPI_Get_count(&probed, MPI_BYTE, &count);
    if (static_cast<size_t>(count) != recvBytes)
      mismatch = "rank " + std::to_string(source) + " sent " +
                 std::to_string(count) + " bytes, the receive expects " +
                 std::to_string(recvBytes);
    // A message of the wrong size is still received (into scratch), so that
    // nothing is in flight when the error is returned.
    discard.resize(mismatch.empty() ? 0 : count);
    requests.emplace_back();
    if (int rc = MPI_Imrecv(mismatch.empty() ? recvData : discard.data(), count,
                            MPI_BYTE, &message, &requests.back());
        rc != MPI_SUCCESS)
      abortJob(where(step) + ": MPI_Imrecv failed for a matched message: " +
               describeMPIError(rc));
  }
  awaitRequests(step, requests);
  if (!mismatch.empty())
    return fail(step, mismatch);
  return Status::success();
}

Status MPICommunicator::doBarrier(const Step &step) {
  std::vector<MPI_Request> requests(1);
  if (int rc = MPI_Ibarrier(comm_, &requests[0]); rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Ibarrier", rc);
  awaitRequests(step, requests);
  return Status::success();
}

Status MPICommunicator::doSplit(const Step &step, int color, int key,
                                std::unique_ptr<Communicator> &group) {
  // MPI_Comm_split has no non-blocking form. Gathering every rank's color
  // and key first, under the deadline, proves that all ranks have reached
  // the split, so the blocking call that follows finishes promptly.
  int mine[2] = {color, key};
  std::vector<int> all(2 * size());
  std::vector<MPI_Request> requests(1);
  if (int rc = MPI_Iallgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, comm_,
                              &requests[0]);
      rc != MPI_SUCCESS)
    return mpiError(step, "MPI_Iallgather", rc);
  awaitRequests(step, requests);
  MPI_Comm child = MPI_COMM_NULL;
  if (int rc =
          MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &child);
      rc != MPI_SUCCESS)
    abortJob(where(step) +
             ": MPI_Comm_split failed after every rank arrived: " +
             describeMPIError(rc));
  if (child == MPI_COMM_NULL)
    return Status::success();
  MPI_Comm_set_errhandler(child, MPI_ERRORS_RETURN);
  // The members in MPI_Comm_split's order: by key, ties by rank.
  std::vector<int> members;
  for (int member = 0; member < size(); ++member)
    if (all[2 * member] == color)
      members.push_back(member);
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
    return all[2 * a + 1] < all[2 * b + 1];
  });
  std::vector<int> worldRanks;
  for (int member : members)
    worldRanks.push_back(worldRanks_[member]);
  int childRank = 0;
  MPI_Comm_rank(child, &childRank);
  group = std::make_unique<MPICommunicator>(
      job_, child, childRank, name() + "/" + std::to_string(color),
      std::move(worldRanks), timeout());
  return Status::success();
}

} // namespace

Status
moe::rt::createMPIWorldCommunicator(const CommunicatorOptions &options,
                                    std::unique_ptr<Communicator> &world) {
  world.reset();
  if (options.timeout.count() <= 0)
    return Status::error("communicator timeout must be positive, got " +
                         std::to_string(options.timeout.count()) + " ms");
  LaunchEnvironment launch;
  if (Status status = readLaunchEnvironment(launch); !status)
    return status;
  std::shared_ptr<MPIJob> job;
  if (Status status = MPIJob::get(options.timeout, job); !status)
    return status;
  if (!launch.launcher.empty() && launch.size != job->worldSize())
    return Status::error(
        launch.launcher + " started this process as rank " +
        std::to_string(launch.rank) + " of " + std::to_string(launch.size) +
        ", but MPI sees " + std::to_string(job->worldSize()) +
        " process(es): the program's MPI library is not the launcher's, or "
        "the launcher does not start MPI jobs (use mpirun)");
  std::vector<int> worldRanks(job->worldSize());
  for (int rank = 0; rank < job->worldSize(); ++rank)
    worldRanks[rank] = rank;
  MPI_Comm comm = duplicate(MPI_COMM_WORLD, Clock::now() + options.timeout,
                            "rank " + std::to_string(job->worldRank()) +
                                " of " + std::to_string(job->worldSize()) +
                                " (mpi), creating \"world\"");
  world =
      std::make_unique<MPICommunicator>(job, comm, job->worldRank(), "world",
                                        std::move(worldRanks), options.timeout);
  return Status::success();
}
