//===- CollectivesTest.cpp - collectives on the thread transport ----------===//
//
// Part of moe-compiler's runtime tests.
//
// The transport-independent checks of CollectivesChecks.h on 1 to 4 ranks,
// then the failure paths: deadlines, abort, mismatched calls, invalid
// arguments. Each test creates its own thread group, with one thread per
// rank; failure tests use deadlines of a fraction of a second.
//
//===----------------------------------------------------------------------===//

#include "CollectivesChecks.h"

#include "moe/Runtime/StagedCommunicator.h"

#include "gtest/gtest.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

using namespace moe::rt;
using namespace moe::rt::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

/// The deadline of tests that should pass: a hang becomes an error.
constexpr std::chrono::milliseconds passingTimeout = 20s;
/// The deadline of tests that time out on purpose.
constexpr std::chrono::milliseconds shortTimeout = 200ms;

struct RankResult {
  Status status;
  std::chrono::milliseconds elapsed;
};

/// Runs `body` on every rank of a new thread group, a thread per rank.
std::vector<RankResult>
runRanks(int size, std::chrono::milliseconds timeout,
         const std::function<Status(Communicator &)> &body) {
  std::vector<std::unique_ptr<Communicator>> ranks;
  CommunicatorOptions options;
  options.timeout = timeout;
  Status created = createThreadGroup(size, options, ranks);
  EXPECT_TRUE(created) << created.message;
  std::vector<RankResult> results(ranks.size());
  std::vector<std::thread> threads;
  for (size_t rank = 0; rank < ranks.size(); ++rank)
    threads.emplace_back([&, rank] {
      Clock::time_point start = Clock::now();
      results[rank].status = body(*ranks[rank]);
      results[rank].elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                start);
    });
  for (std::thread &thread : threads)
    thread.join();
  return results;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

//===----------------------------------------------------------------------===//
// The shared checks on 1, 2, 3 and 4 ranks
//===----------------------------------------------------------------------===//

class ThreadCollectivesTest : public ::testing::TestWithParam<int> {
protected:
  void runCheck(Status (*check)(Communicator &)) {
    std::vector<RankResult> results =
        runRanks(GetParam(), passingTimeout, check);
    for (size_t rank = 0; rank < results.size(); ++rank)
      EXPECT_TRUE(results[rank].status)
          << "rank " << rank << ": " << results[rank].status.message;
  }
};

TEST_P(ThreadCollectivesTest, RaggedAllToAllUnevenAndZeroCounts) {
  runCheck(checkRaggedAllToAll);
}
TEST_P(ThreadCollectivesTest, RaggedAllToAllBuffers) {
  runCheck(checkRaggedAllToAllBuffers);
}
TEST_P(ThreadCollectivesTest, AllReduce) { runCheck(checkAllReduce); }
TEST_P(ThreadCollectivesTest, AllGather) { runCheck(checkAllGather); }
TEST_P(ThreadCollectivesTest, ReduceScatter) { runCheck(checkReduceScatter); }
TEST_P(ThreadCollectivesTest, SendRecvRing) { runCheck(checkSendRecvRing); }
TEST_P(ThreadCollectivesTest, Split) { runCheck(checkSplit); }
TEST_P(ThreadCollectivesTest, GridGroups) { runCheck(checkGridGroups); }

TEST_P(ThreadCollectivesTest, EveryCheckInOneGroup) {
  // Back to back on one communicator: rounds and mailboxes are reused.
  runCheck([](Communicator &comm) {
    for (const auto &[name, check] : allChecks())
      if (Status status = check(comm); !status)
        return Status::error(std::string(name) + ": " + status.message);
    return comm.barrier();
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, ThreadCollectivesTest,
                         ::testing::Values(1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return std::to_string(info.param) + "ranks";
                         });

//===----------------------------------------------------------------------===//
// The same checks through the staged communicator (StagedCommunicator.h)
//===----------------------------------------------------------------------===//

/// Host memory stands in for the device: the copies are memcpy, counted so
/// that the test sees the data went through them.
StagingCopies countingCopies(std::atomic<int64_t> &bytes) {
  StagingCopies copies;
  copies.toHost = [&bytes](void *host, const void *buffer, size_t size) {
    bytes += static_cast<int64_t>(size);
    std::memcpy(host, buffer, size);
    return Status::success();
  };
  copies.fromHost = [&bytes](void *buffer, const void *host, size_t size) {
    bytes += static_cast<int64_t>(size);
    std::memcpy(buffer, host, size);
    return Status::success();
  };
  return copies;
}

class StagedCollectivesTest : public ::testing::TestWithParam<int> {};

TEST_P(StagedCollectivesTest, EveryCheckThroughHostCopies) {
  std::atomic<int64_t> copied{0};
  std::vector<RankResult> results =
      runRanks(GetParam(), passingTimeout, [&](Communicator &host) {
        std::unique_ptr<Communicator> staged =
            createStagedCommunicator(host, countingCopies(copied));
        if (staged->rank() != host.rank() || staged->size() != host.size() ||
            staged->name() != host.name() ||
            std::string(staged->transport()) != "threads, staged")
          return Status::error("the staged communicator is not its host's "
                               "rank: " +
                               std::string(staged->transport()));
        for (const auto &[name, check] : allChecks())
          if (Status status = check(*staged); !status)
            return Status::error(std::string(name) + ": " + status.message);
        return staged->barrier();
      });
  for (size_t rank = 0; rank < results.size(); ++rank)
    EXPECT_TRUE(results[rank].status)
        << "rank " << rank << ": " << results[rank].status.message;
  EXPECT_GT(copied.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Ranks, StagedCollectivesTest,
                         ::testing::Values(1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return std::to_string(info.param) + "ranks";
                         });

TEST(StagedCollectivesFailureTest, FailedCopyFailsTheJobNamingTheStep) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [&](Communicator &host) {
        std::atomic<int64_t> unused{0};
        StagingCopies copies = countingCopies(unused);
        if (host.rank() == 1)
          copies.toHost = [](void *, const void *, size_t) {
            return Status::error("device unreachable");
          };
        std::unique_ptr<Communicator> staged =
            createStagedCommunicator(host, std::move(copies));
        float value = 1;
        if (Status status = staged->barrier(); !status)
          return status;
        return staged->allReduce(&value, &value, 1, DType::F32, ReduceOp::Sum);
      });
  ASSERT_FALSE(results[1].status);
  EXPECT_TRUE(contains(results[1].status.message,
                       "rank 1 of 2 in \"world\" (threads, staged), "
                       "all_reduce step 2: copying the input to the host: "
                       "device unreachable"))
      << results[1].status.message;
  // Rank 0 stops instead of waiting for its deadline.
  ASSERT_FALSE(results[0].status);
  EXPECT_TRUE(contains(results[0].status.message, "device unreachable"))
      << results[0].status.message;
  EXPECT_LT(results[0].elapsed, 5s);
}

//===----------------------------------------------------------------------===//
// Deadlines
//===----------------------------------------------------------------------===//

TEST(ThreadCollectivesFailureTest, TimeoutNamesTheMissingRankAndStep) {
  // Rank 2 stays away from step 2 until the others have given up on it.
  std::atomic<int> gaveUp{0};
  std::vector<RankResult> results =
      runRanks(3, shortTimeout, [&](Communicator &comm) {
        if (Status status = comm.barrier(); !status)
          return status;
        if (comm.rank() == 2) {
          Clock::time_point limit = Clock::now() + 5s;
          while (gaveUp < 2 && Clock::now() < limit)
            std::this_thread::sleep_for(1ms);
          return comm.barrier();
        }
        float value = 1;
        Status status =
            comm.allReduce(&value, &value, 1, DType::F32, ReduceOp::Sum);
        ++gaveUp;
        return status;
      });
  for (int rank = 0; rank < 2; ++rank) {
    const RankResult &result = results[rank];
    ASSERT_FALSE(result.status);
    EXPECT_GE(result.elapsed, shortTimeout);
    EXPECT_LT(result.elapsed, 1500ms) << "the deadline was not kept";
    // The first to time out reports it; the other stops because of it.
    const std::string &message = result.status.message;
    EXPECT_TRUE(contains(message, "rank " + std::to_string(rank) +
                                      " of 3 in \"world\" (threads), "
                                      "all_reduce step 2: "))
        << message;
    EXPECT_TRUE(contains(message, "timed out after 0.2 s waiting for rank 2, "
                                  "which last finished barrier step 1"))
        << message;
  }
  // The late rank learns why the job failed.
  ASSERT_FALSE(results[2].status);
  EXPECT_TRUE(contains(results[2].status.message,
                       "rank 2 of 3 in \"world\" (threads), barrier step 2: "
                       "stopped because rank "))
      << results[2].status.message;
  EXPECT_TRUE(contains(results[2].status.message, "waiting for rank 2"))
      << results[2].status.message;
}

TEST(ThreadCollectivesFailureTest, ReceiveTimeoutNamesTheSilentPeer) {
  std::atomic<bool> gaveUp{false};
  std::vector<RankResult> results =
      runRanks(2, shortTimeout, [&](Communicator &comm) {
        int64_t value = 0;
        if (comm.rank() == 1) {
          Clock::time_point limit = Clock::now() + 5s;
          while (!gaveUp && Clock::now() < limit)
            std::this_thread::sleep_for(1ms);
          return comm.send(&value, sizeof(value), 0);
        }
        Status status = comm.recv(&value, sizeof(value), 1);
        gaveUp = true;
        return status;
      });
  ASSERT_FALSE(results[0].status);
  EXPECT_LT(results[0].elapsed, 1500ms);
  EXPECT_EQ(results[0].status.message,
            "rank 0 of 2 in \"world\" (threads), recv step 1: timed out after "
            "0.2 s waiting to receive from rank 1, which has made no call on "
            "\"world\" yet");
  ASSERT_FALSE(results[1].status);
  EXPECT_EQ(
      results[1].status.message,
      "rank 1 of 2 in \"world\" (threads), send step 1: stopped because " +
          results[0].status.message);
}

TEST(ThreadCollectivesFailureTest, SendTimeoutNamesTheAbsentReceiver) {
  std::vector<RankResult> results =
      runRanks(2, shortTimeout, [&](Communicator &comm) {
        int64_t value = 0;
        if (comm.rank() == 1)
          return comm.barrier();
        return comm.send(&value, sizeof(value), 1);
      });
  ASSERT_FALSE(results[0].status);
  // Either rank may time out first; the sender's own report names rank 1.
  EXPECT_TRUE(contains(results[0].status.message, "send step 1"))
      << results[0].status.message;
  ASSERT_FALSE(results[1].status);
  EXPECT_TRUE(contains(results[1].status.message, "barrier step 1"))
      << results[1].status.message;
  for (const RankResult &result : results)
    EXPECT_LT(result.elapsed, 1500ms);
}

//===----------------------------------------------------------------------===//
// Abort, mismatches, invalid arguments
//===----------------------------------------------------------------------===//

TEST(ThreadCollectivesFailureTest, AbortStopsEveryGroupOfTheJob) {
  // A 2x2 grid: rank 2 aborts while ranks 0 and 1 wait in a world barrier
  // and rank 3 waits for it in their row group.
  std::vector<RankResult> results =
      runRanks(4, passingTimeout, [](Communicator &comm) {
        std::unique_ptr<Communicator> row;
        if (Status status = comm.splitGrid({2, 2}, {1}, row); !status)
          return status;
        if (comm.rank() == 2) {
          std::this_thread::sleep_for(50ms);
          comm.abort("input file missing");
          return comm.barrier();
        }
        if (comm.rank() == 3)
          return row->barrier();
        return comm.barrier();
      });
  std::string failure = "rank 2 of 4 in \"world\" (threads) aborted after "
                        "split step 1: input file missing";
  for (int rank : {0, 1})
    EXPECT_EQ(results[rank].status.message,
              "rank " + std::to_string(rank) +
                  " of 4 in \"world\" (threads), barrier step 2: stopped "
                  "because " +
                  failure);
  EXPECT_EQ(results[3].status.message,
            "rank 1 of 2 in \"world/1\" (world rank 3, threads), barrier step "
            "1: stopped because " +
                failure);
  EXPECT_EQ(results[2].status.message,
            "rank 2 of 4 in \"world\" (threads), barrier step 2: stopped "
            "because " +
                failure);
  for (const RankResult &result : results)
    EXPECT_LT(result.elapsed, 2s) << "waited for the deadline, not the abort";
}

TEST(ThreadCollectivesFailureTest, AbortBeforeAnyStep) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [](Communicator &comm) {
        if (comm.rank() == 0)
          comm.abort("no weights");
        return comm.barrier();
      });
  EXPECT_EQ(results[1].status.message,
            "rank 1 of 2 in \"world\" (threads), barrier step 1: stopped "
            "because rank 0 of 2 in \"world\" (threads) aborted before its "
            "first step: no weights");
}

TEST(ThreadCollectivesFailureTest, MismatchedCollectivesFailOnEveryRank) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [](Communicator &comm) {
        float values[4] = {};
        if (comm.rank() == 0)
          return comm.allReduce(values, values, 4, DType::F32, ReduceOp::Sum);
        return comm.barrier();
      });
  for (const RankResult &result : results) {
    ASSERT_FALSE(result.status);
    EXPECT_TRUE(contains(result.status.message,
                         "ranks called different operations: rank 0 "
                         "all_reduce step 1 (f32 x 4, sum); rank 1 barrier "
                         "step 1"))
        << result.status.message;
  }
}

TEST(ThreadCollectivesFailureTest, MismatchedCountsFail) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [](Communicator &comm) {
        float values[5] = {};
        return comm.allReduce(values, values, 4 + comm.rank(), DType::F32,
                              ReduceOp::Max);
      });
  for (const RankResult &result : results)
    EXPECT_TRUE(contains(result.status.message,
                         "rank 0 all_reduce step 1 (f32 x 4, max); rank 1 "
                         "all_reduce step 1 (f32 x 5, max)"))
        << result.status.message;
}

TEST(ThreadCollectivesFailureTest, InvalidArgumentsOnOneRankStopTheOthers) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [](Communicator &comm) {
        Tensor input(DType::F32, {2, 3});
        Tensor output(DType::F32, {comm.rank() == 0 ? 3 : 4, 3});
        return comm.allGather(input, output);
      });
  std::string failure = "rank 0 of 2 in \"world\" (threads), all_gather step "
                        "1: invalid arguments: output is f32 3x3, expected "
                        "f32 4x3 for input f32 2x3";
  EXPECT_EQ(results[0].status.message, failure);
  EXPECT_EQ(results[1].status.message,
            "rank 1 of 2 in \"world\" (threads), all_gather step 1: stopped "
            "because " +
                failure);
  EXPECT_LT(results[1].elapsed, 2s);
}

TEST(ThreadCollectivesFailureTest, RaggedReceiveBeyondCapacity) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [](Communicator &comm) {
        // Each rank sends 2 rows to each rank; rank 1 has room for 3.
        int64_t rows[4] = {}, received[4] = {};
        int64_t sendCounts[2] = {2, 2}, recvCounts[2] = {};
        return comm.raggedAllToAll(rows, sendCounts, received,
                                   comm.rank() == 1 ? 3 : 4, recvCounts,
                                   sizeof(int64_t));
      });
  std::string failure = "rank 1 of 2 in \"world\" (threads), "
                        "ragged_all_to_all step 1: receives 4 rows but the "
                        "output has room for 3";
  EXPECT_EQ(results[1].status.message, failure);
  EXPECT_EQ(results[0].status.message,
            "rank 0 of 2 in \"world\" (threads), ragged_all_to_all step 1: "
            "stopped because " +
                failure);
}

TEST(ThreadCollectivesFailureTest, RaggedCountsMustMatchTheInput) {
  std::vector<RankResult> results =
      runRanks(1, passingTimeout, [](Communicator &comm) {
        Tensor input(DType::F32, {3, 2}), output, recvCounts;
        Tensor sendCounts = makeTensor<int64_t>(DType::I64, {1}, {2});
        return comm.raggedAllToAll(input, sendCounts, output, recvCounts);
      });
  EXPECT_EQ(results[0].status.message,
            "rank 0 of 1 in \"world\" (threads), ragged_all_to_all step 1: "
            "invalid arguments: send counts add up to 2 rows but the input "
            "has 3");
}

TEST(ThreadCollectivesFailureTest, ReceiveOfTheWrongSize) {
  std::vector<RankResult> results =
      runRanks(2, passingTimeout, [](Communicator &comm) {
        int64_t values[2] = {};
        if (comm.rank() == 0)
          return comm.send(values, 2 * sizeof(int64_t), 1);
        return comm.recv(values, sizeof(int64_t), 0);
      });
  std::string failure = "rank 1 of 2 in \"world\" (threads), recv step 1: "
                        "rank 0 sent 16 bytes, the receive expects 8";
  EXPECT_EQ(results[1].status.message, failure);
  EXPECT_EQ(results[0].status.message,
            "rank 0 of 2 in \"world\" (threads), send step 1: stopped "
            "because " +
                failure);
}

TEST(ThreadCollectivesFailureTest, RejectedArguments) {
  struct Case {
    std::function<Status(Communicator &)> call;
    std::string detail;
  };
  std::vector<Case> cases = {
      {[](Communicator &comm) {
         int64_t value = 0;
         return comm.send(&value, sizeof(value), 0);
       },
       "send step 1: invalid arguments: a message to this rank is received "
       "only by the same call: sendRecv with destination and source both "
       "this rank, or neither"},
      {[](Communicator &comm) {
         int32_t values[2] = {};
         return comm.allReduce(values, values, 2, DType::I32, ReduceOp::Sum);
       },
       "all_reduce step 1: invalid arguments: reductions take f32 or i64, got "
       "i32"},
      {[](Communicator &comm) {
         float values[3] = {};
         return comm.allReduce(values, values + 1, 2, DType::F32,
                               ReduceOp::Sum);
       },
       "all_reduce step 1: invalid arguments: input and output overlap "
       "without being the same buffer (in place means recv == send)"},
      {[](Communicator &comm) {
         float values[4] = {};
         return comm.allGather(values + 1, values, 2 * sizeof(float));
       },
       "all_gather step 1: invalid arguments: input overlaps the output "
       "without being this rank's slot of it (in place means send == recv + "
       "rank * bytesPerRank)"},
      {[](Communicator &comm) {
         std::unique_ptr<Communicator> group;
         return comm.splitGrid({2}, {0}, group);
       },
       "split step 1: invalid arguments: grid shape 2 has an extent outside "
       "[1, 1]"},
      {[](Communicator &comm) {
         std::unique_ptr<Communicator> group;
         return comm.splitGrid({1, 1}, {1, 1}, group);
       },
       "split step 1: invalid arguments: grid axis 1 is out of range or "
       "repeated for grid 1x1"},
  };
  for (const Case &testCase : cases) {
    std::vector<RankResult> results =
        runRanks(1, passingTimeout, testCase.call);
    EXPECT_EQ(results[0].status.message,
              "rank 0 of 1 in \"world\" (threads), " + testCase.detail);
  }
}

TEST(ThreadCollectivesFailureTest, GroupAndTimeoutSettings) {
  std::vector<std::unique_ptr<Communicator>> ranks;
  Status status = createThreadGroup(0, CommunicatorOptions(), ranks);
  EXPECT_EQ(status.message, "a thread group needs at least one rank, got 0");
  CommunicatorOptions options;
  options.timeout = 0ms;
  status = createThreadGroup(2, options, ranks);
  EXPECT_EQ(status.message, "communicator timeout must be positive, got 0 ms");
  ASSERT_TRUE(createThreadGroup(1, CommunicatorOptions(), ranks));
  EXPECT_EQ(ranks[0]->timeout(), 60s);
  EXPECT_FALSE(ranks[0]->setTimeout(-5ms));
  EXPECT_TRUE(ranks[0]->setTimeout(5s));
  EXPECT_EQ(ranks[0]->timeout(), 5s);
  EXPECT_STREQ(ranks[0]->transport(), "threads");
}

//===----------------------------------------------------------------------===//
// Launcher environment
//===----------------------------------------------------------------------===//

/// Sets environment variables for one test and restores them afterwards.
class ScopedEnvironment {
public:
  explicit ScopedEnvironment(
      std::vector<std::pair<std::string, const char *>> values) {
    for (const auto &[name, value] : values) {
      const char *old = std::getenv(name.c_str());
      saved_.push_back(
          {name, old ? std::string(old) : std::string(), old != nullptr});
      if (value)
        setenv(name.c_str(), value, 1);
      else
        unsetenv(name.c_str());
    }
  }
  ~ScopedEnvironment() {
    for (const Saved &saved : saved_) {
      if (saved.present)
        setenv(saved.name.c_str(), saved.value.c_str(), 1);
      else
        unsetenv(saved.name.c_str());
    }
  }

private:
  struct Saved {
    std::string name, value;
    bool present;
  };
  std::vector<Saved> saved_;
};

TEST(LaunchEnvironmentTest, ReadsOpenMPIAndTorchrunVariables) {
  LaunchEnvironment environment;
  {
    ScopedEnvironment scope({{"OMPI_COMM_WORLD_RANK", "2"},
                             {"OMPI_COMM_WORLD_SIZE", "4"},
                             {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                             {"RANK", "7"},
                             {"WORLD_SIZE", "8"}});
    ASSERT_TRUE(readLaunchEnvironment(environment));
    EXPECT_EQ(environment.launcher, "mpirun") << "Open MPI comes first";
    EXPECT_EQ(environment.rank, 2);
    EXPECT_EQ(environment.size, 4);
    EXPECT_EQ(environment.localRank, 0);
  }
  {
    ScopedEnvironment scope({{"OMPI_COMM_WORLD_RANK", nullptr},
                             {"OMPI_COMM_WORLD_SIZE", nullptr},
                             {"RANK", "3"},
                             {"WORLD_SIZE", "4"},
                             {"LOCAL_RANK", "1"}});
    ASSERT_TRUE(readLaunchEnvironment(environment));
    EXPECT_EQ(environment.launcher, "torchrun");
    EXPECT_EQ(environment.rank, 3);
    EXPECT_EQ(environment.localRank, 1);
  }
  {
    ScopedEnvironment scope({{"OMPI_COMM_WORLD_RANK", nullptr},
                             {"OMPI_COMM_WORLD_SIZE", nullptr},
                             {"RANK", nullptr},
                             {"WORLD_SIZE", nullptr}});
    ASSERT_TRUE(readLaunchEnvironment(environment));
    EXPECT_EQ(environment.launcher, "");
    EXPECT_EQ(environment.rank, -1);
  }
}

TEST(LaunchEnvironmentTest, RejectsMalformedValues) {
  LaunchEnvironment environment;
  {
    ScopedEnvironment scope({{"OMPI_COMM_WORLD_RANK", nullptr},
                             {"OMPI_COMM_WORLD_SIZE", nullptr},
                             {"RANK", "one"},
                             {"WORLD_SIZE", "4"}});
    EXPECT_EQ(readLaunchEnvironment(environment).message,
              "launcher variable RANK='one': expected a non-negative integer");
  }
  {
    ScopedEnvironment scope(
        {{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}});
    EXPECT_EQ(readLaunchEnvironment(environment).message,
              "launcher variables OMPI_COMM_WORLD_RANK=4 and "
              "OMPI_COMM_WORLD_SIZE=4 do not describe a rank of a job");
  }
  {
    ScopedEnvironment scope({{"OMPI_COMM_WORLD_RANK", nullptr},
                             {"OMPI_COMM_WORLD_SIZE", nullptr},
                             {"RANK", nullptr},
                             {"WORLD_SIZE", "2"}});
    EXPECT_EQ(readLaunchEnvironment(environment).message,
              "launcher variable RANK is not set: expected a non-negative "
              "integer");
  }
}

} // namespace
