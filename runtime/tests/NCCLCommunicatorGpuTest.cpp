//===- NCCLCommunicatorGpuTest.cpp - the NCCL transport on GPUs -----------===//
//
// Part of moe-compiler's runtime tests.
//
// Every operation of the NCCL communicator on device buffers, one rank per
// GPU present (threads bootstrapped through the thread transport), each
// result written out by hand from the operation's definition. Without a GPU
// each test prints a SKIP line naming the reason.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/NCCLCommunicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <numeric>
#include <thread>

using namespace moe::rt;

namespace {

int devicesPresent(std::string &why) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    why = std::string("no CUDA device (") + cudaGetErrorString(error) + ")";
    return 0;
  }
  if (count == 0)
    why = "no CUDA device";
  return count;
}

/// A device copy of `host`, read back with `read`.
template <typename T> struct DeviceBuffer {
  T *data = nullptr;
  size_t count;
  explicit DeviceBuffer(const std::vector<T> &host) : count(host.size()) {
    EXPECT_EQ(cudaMalloc(&data, std::max<size_t>(1, count) * sizeof(T)),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), count * sizeof(T),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  ~DeviceBuffer() { cudaFree(data); }
  std::vector<T> read() const {
    std::vector<T> host(count);
    EXPECT_EQ(cudaMemcpy(host.data(), data, count * sizeof(T),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
};

class NCCLGpu : public testing::Test {
protected:
  void SetUp() override {
    std::string why;
    ranks = devicesPresent(why);
    if (ranks == 0) {
      std::printf("SKIP: GPU test not run: %s\n", why.c_str());
      GTEST_SKIP() << why;
    }
    ranks = std::min(ranks, 8);
  }

  /// Runs `body(rank, comm)` on one thread per GPU, each with its NCCL
  /// communicator.
  void onRanks(const std::function<void(int, Communicator &)> &body) {
    std::vector<std::unique_ptr<Communicator>> bootstrap;
    ASSERT_TRUE(createThreadGroup(ranks, CommunicatorOptions(), bootstrap));
    std::vector<std::thread> threads;
    for (int rank = 0; rank < ranks; ++rank) {
      threads.emplace_back([&, rank] {
        ASSERT_EQ(cudaSetDevice(rank), cudaSuccess);
        std::unique_ptr<Communicator> nccl;
        Status status = createNCCLCommunicator(*bootstrap[rank], rank,
                                               CommunicatorOptions(), nccl);
        ASSERT_TRUE(status) << status.message;
        EXPECT_STREQ(nccl->transport(), "nccl");
        EXPECT_EQ(nccl->rank(), rank);
        EXPECT_EQ(nccl->size(), ranks);
        body(rank, *nccl);
      });
    }
    for (std::thread &thread : threads)
      thread.join();
  }

  int ranks = 0;
};

TEST_F(NCCLGpu, AllReduceSumsAcrossRanks) {
  onRanks([&](int rank, Communicator &comm) {
    DeviceBuffer<float> buffer({1.0f + rank, 10.0f * rank, -2.0f});
    ASSERT_TRUE(
        comm.allReduce(buffer.data, buffer.data, 3, DType::F32, ReduceOp::Sum));
    float n = static_cast<float>(ranks);
    EXPECT_EQ(buffer.read(),
              (std::vector<float>{n + n * (n - 1) / 2, 10.0f * n * (n - 1) / 2,
                                  -2.0f * n}));
  });
}

TEST_F(NCCLGpu, AllGatherAndReduceScatterInRankOrder) {
  onRanks([&](int rank, Communicator &comm) {
    DeviceBuffer<int64_t> mine({rank * 100, rank * 100 + 1});
    DeviceBuffer<int64_t> all(std::vector<int64_t>(2 * ranks, -1));
    ASSERT_TRUE(comm.allGather(mine.data, all.data, 2 * sizeof(int64_t)));
    std::vector<int64_t> expected;
    for (int r = 0; r < ranks; ++r)
      expected.insert(expected.end(), {r * 100, r * 100 + 1});
    EXPECT_EQ(all.read(), expected);

    // Piece r of every rank is {r, rank}; rank r receives their sums.
    std::vector<int64_t> pieces;
    for (int r = 0; r < ranks; ++r)
      pieces.insert(pieces.end(), {r, rank});
    DeviceBuffer<int64_t> send(pieces);
    DeviceBuffer<int64_t> recv({0, 0});
    ASSERT_TRUE(
        comm.reduceScatter(send.data, recv.data, 2, DType::I64, ReduceOp::Sum));
    int64_t n = ranks;
    EXPECT_EQ(recv.read(), (std::vector<int64_t>{rank * n, n * (n - 1) / 2}));
  });
}

TEST_F(NCCLGpu, RaggedAllToAllWithZeroCounts) {
  // Rank r sends peer p (r + p) % 3 rows (zero included) of 2 floats, row i
  // holding {100 r + p, i}.
  onRanks([&](int rank, Communicator &comm) {
    std::vector<int64_t> sendCounts(ranks), recvCounts(ranks, -1);
    std::vector<float> rows;
    for (int peer = 0; peer < ranks; ++peer) {
      sendCounts[peer] = (rank + peer) % 3;
      for (int64_t i = 0; i < sendCounts[peer]; ++i)
        rows.insert(rows.end(), {100.0f * rank + peer, float(i)});
    }
    int64_t expectedRows = 0;
    std::vector<float> expected;
    for (int peer = 0; peer < ranks; ++peer) {
      int64_t count = (peer + rank) % 3;
      expectedRows += count;
      for (int64_t i = 0; i < count; ++i)
        expected.insert(expected.end(), {100.0f * peer + rank, float(i)});
    }
    DeviceBuffer<float> send(rows);
    DeviceBuffer<float> recv(std::vector<float>(2 * expectedRows, -1.0f));
    ASSERT_TRUE(comm.raggedAllToAll(send.data, sendCounts.data(), recv.data,
                                    expectedRows, recvCounts.data(),
                                    2 * sizeof(float)));
    for (int peer = 0; peer < ranks; ++peer)
      EXPECT_EQ(recvCounts[peer], (peer + rank) % 3) << "from " << peer;
    EXPECT_EQ(recv.read(), expected);
  });
}

TEST_F(NCCLGpu, RaggedAllToAllWithEvenCounts) {
  // Two rows to every peer, row i to peer p holding {100 r + p, i}: the
  // even exchange goes through ncclAlltoAll (NCCL 2.28 and later).
  onRanks([&](int rank, Communicator &comm) {
    std::vector<int64_t> sendCounts(ranks, 2), recvCounts(ranks, -1);
    std::vector<float> rows, expected;
    for (int peer = 0; peer < ranks; ++peer)
      for (int64_t i = 0; i < 2; ++i) {
        rows.insert(rows.end(), {100.0f * rank + peer, float(i)});
        expected.insert(expected.end(), {100.0f * peer + rank, float(i)});
      }
    DeviceBuffer<float> send(rows);
    DeviceBuffer<float> recv(std::vector<float>(4 * ranks, -1.0f));
    ASSERT_TRUE(comm.raggedAllToAll(send.data, sendCounts.data(), recv.data,
                                    2 * ranks, recvCounts.data(),
                                    2 * sizeof(float)));
    EXPECT_EQ(recvCounts, std::vector<int64_t>(ranks, 2));
    EXPECT_EQ(recv.read(), expected);
  });
}

TEST_F(NCCLGpu, RingSendRecvBarrierAndSplit) {
  onRanks([&](int rank, Communicator &comm) {
    int next = (rank + 1) % ranks, previous = (rank + ranks - 1) % ranks;
    DeviceBuffer<int64_t> out({rank});
    DeviceBuffer<int64_t> in({-1});
    ASSERT_TRUE(comm.sendRecv(out.data, sizeof(int64_t), next, in.data,
                              sizeof(int64_t), previous));
    EXPECT_EQ(in.read(), (std::vector<int64_t>{previous}));
    ASSERT_TRUE(comm.barrier());

    // Even and odd ranks form two groups; an all-reduce inside each.
    std::unique_ptr<Communicator> half;
    ASSERT_TRUE(comm.split(rank % 2, rank, half));
    ASSERT_TRUE(half);
    EXPECT_EQ(half->rank(), rank / 2);
    DeviceBuffer<int64_t> value({1});
    ASSERT_TRUE(
        half->allReduce(value.data, value.data, 1, DType::I64, ReduceOp::Sum));
    EXPECT_EQ(value.read(), (std::vector<int64_t>{half->size()}));
  });
}

TEST_F(NCCLGpu, ABadDeviceIsAnError) {
  std::vector<std::unique_ptr<Communicator>> bootstrap;
  ASSERT_TRUE(createThreadGroup(1, CommunicatorOptions(), bootstrap));
  std::unique_ptr<Communicator> nccl;
  Status status =
      createNCCLCommunicator(*bootstrap[0], 999, CommunicatorOptions(), nccl);
  EXPECT_FALSE(status);
  EXPECT_NE(status.message.find("CUDA device 999 does not exist"),
            std::string::npos)
      << status.message;
}

} // namespace
