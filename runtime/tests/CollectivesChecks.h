//===- CollectivesChecks.h - checks every transport must pass ---*- C++ -*-===//
//
// Part of moe-compiler's runtime tests.
//
// The same checks run on the thread transport (CollectivesTest.cpp, a rank
// per thread) and on the MPI transport (mpi_collectives_test.cpp, a rank per
// process). A check runs on one rank and returns an error describing the
// first wrong value. Inputs come from small formulas of (rank, index), and
// each expected value is computed here from those formulas, element by
// element, without the library. The values are small integers or halves, so
// f32 sums are exact in any order and comparisons are exact.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_TESTS_COLLECTIVESCHECKS_H
#define MOE_RUNTIME_TESTS_COLLECTIVESCHECKS_H

#include "moe/Runtime/Collectives.h"

#include <algorithm>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace moe::rt::test {

/// An error when `actual` differs from `expected`, naming `what`.
template <typename T>
Status expectValues(const std::string &what, const T *actual,
                    const std::vector<T> &expected) {
  for (size_t i = 0; i < expected.size(); ++i) {
    if (actual[i] == expected[i])
      continue;
    std::ostringstream message;
    message << what << ": element " << i << " is " << actual[i] << ", expected "
            << expected[i];
    return Status::error(message.str());
  }
  return Status::success();
}

inline Status expectShape(const std::string &what, const Tensor &tensor,
                          DType dtype, const Shape &shape) {
  if (tensor.dtype() == dtype && tensor.shape() == shape)
    return Status::success();
  return Status::error(what + " is " + dtypeName(tensor.dtype()) + " " +
                       formatShape(tensor.shape()) + ", expected " +
                       dtypeName(dtype) + " " + formatShape(shape));
}

template <typename T>
Tensor makeTensor(DType dtype, const Shape &shape,
                  const std::vector<T> &values) {
  Tensor tensor(dtype, shape);
  std::copy(values.begin(), values.end(), tensor.as<T>());
  return tensor;
}

//===----------------------------------------------------------------------===//
// Ragged all-to-all
//===----------------------------------------------------------------------===//

/// Rows `from` sends to `to` among `ranks`. Uneven: rank 0 sends nothing,
/// the last rank receives nothing, and other pairs get 0 to 3 rows.
inline int64_t unevenCount(int from, int to, int ranks) {
  if (from == 0 || to == ranks - 1)
    return 0;
  return (from + 2 * to) % 4;
}

/// Every pair gets 1 to 4 rows.
inline int64_t positiveCount(int from, int to) {
  return 1 + (3 * from + to) % 4;
}

/// Element `column` of row `row` that `from` sends to `to`.
inline int64_t rowValue(int from, int to, int64_t row, int64_t column) {
  return from * 1000 + to * 100 + row * 10 + column;
}

/// Tensor form, f32 rows of 3 with uneven and zero counts.
inline Status checkRaggedAllToAll(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  std::vector<int64_t> counts;
  std::vector<float> rows;
  for (int to = 0; to < ranks; ++to) {
    counts.push_back(unevenCount(me, to, ranks));
    for (int64_t row = 0; row < counts.back(); ++row)
      for (int64_t column = 0; column < 3; ++column)
        rows.push_back(static_cast<float>(rowValue(me, to, row, column)));
  }
  int64_t sendRows = static_cast<int64_t>(rows.size()) / 3;
  Tensor input = makeTensor(DType::F32, {sendRows, 3}, rows);
  Tensor sendCounts = makeTensor(DType::I64, {ranks}, counts);
  Tensor output, recvCounts;
  if (Status status =
          comm.raggedAllToAll(input, sendCounts, output, recvCounts);
      !status)
    return status;

  std::vector<int64_t> expectedCounts;
  std::vector<float> expectedRows;
  for (int from = 0; from < ranks; ++from) {
    expectedCounts.push_back(unevenCount(from, me, ranks));
    for (int64_t row = 0; row < expectedCounts.back(); ++row)
      for (int64_t column = 0; column < 3; ++column)
        expectedRows.push_back(
            static_cast<float>(rowValue(from, me, row, column)));
  }
  int64_t recvRows = static_cast<int64_t>(expectedRows.size()) / 3;
  if (Status status =
          expectShape("recv counts", recvCounts, DType::I64, {ranks});
      !status)
    return status;
  if (Status status =
          expectValues("recv counts", recvCounts.as<int64_t>(), expectedCounts);
      !status)
    return status;
  if (Status status = expectShape("output", output, DType::F32, {recvRows, 3});
      !status)
    return status;
  return expectValues("received rows", output.as<float>(), expectedRows);
}

/// Buffer form, i64 rows of 2x2, every count positive, a receive buffer
/// larger than needed.
inline Status checkRaggedAllToAllBuffers(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  constexpr int64_t rowElements = 4;
  std::vector<int64_t> counts, rows;
  for (int to = 0; to < ranks; ++to) {
    counts.push_back(positiveCount(me, to));
    for (int64_t row = 0; row < counts.back(); ++row)
      for (int64_t column = 0; column < rowElements; ++column)
        rows.push_back(rowValue(me, to, row, column));
  }
  std::vector<int64_t> expectedCounts, expectedRows;
  for (int from = 0; from < ranks; ++from) {
    expectedCounts.push_back(positiveCount(from, me));
    for (int64_t row = 0; row < expectedCounts.back(); ++row)
      for (int64_t column = 0; column < rowElements; ++column)
        expectedRows.push_back(rowValue(from, me, row, column));
  }
  constexpr int64_t spareRows = 3;
  int64_t capacity =
      static_cast<int64_t>(expectedRows.size()) / rowElements + spareRows;
  std::vector<int64_t> received(capacity * rowElements, -1);
  std::vector<int64_t> recvCounts(ranks, -1);
  if (Status status = comm.raggedAllToAll(
          rows.data(), counts.data(), received.data(), capacity,
          recvCounts.data(), rowElements * sizeof(int64_t));
      !status)
    return status;
  if (Status status =
          expectValues("recv counts", recvCounts.data(), expectedCounts);
      !status)
    return status;
  // The spare rows stay untouched.
  expectedRows.resize(received.size(), -1);
  return expectValues("received rows", received.data(), expectedRows);
}

//===----------------------------------------------------------------------===//
// All-reduce, all-gather, reduce-scatter
//===----------------------------------------------------------------------===//

/// Element `i` of rank `rank`'s f32 input: halves, negative and positive.
inline float floatInput(int rank, int64_t i) {
  return static_cast<float>((rank + 1) * (i - 3)) + 0.5f * rank;
}

/// Element `i` of rank `rank`'s i64 input: beyond the 2^53 that a double
/// holds exactly, so a reduction through double would show.
inline int64_t intInput(int rank, int64_t i) {
  int64_t sign = (rank + i) % 2 ? -1 : 1;
  return sign * ((int64_t{1} << 54) + rank * 1000 + i);
}

template <typename T>
T reduceExpected(ReduceOp op, int ranks,
                 const std::function<T(int rank)> &value) {
  T result = value(0);
  for (int rank = 1; rank < ranks; ++rank) {
    T next = value(rank);
    result = op == ReduceOp::Sum   ? result + next
             : op == ReduceOp::Max ? std::max(result, next)
                                   : std::min(result, next);
  }
  return result;
}

inline Status checkAllReduce(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  constexpr int64_t count = 7;
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    std::string name = reduceOpName(op);
    std::vector<float> floats, expectedFloats;
    std::vector<int64_t> ints, expectedInts;
    for (int64_t i = 0; i < count; ++i) {
      floats.push_back(floatInput(me, i));
      ints.push_back(intInput(me, i));
      expectedFloats.push_back(reduceExpected<float>(
          op, ranks, [&](int rank) { return floatInput(rank, i); }));
      expectedInts.push_back(reduceExpected<int64_t>(
          op, ranks, [&](int rank) { return intInput(rank, i); }));
    }
    // f32 through tensors into a separate output.
    Tensor input = makeTensor(DType::F32, {count}, floats);
    Tensor output(DType::F32, {count});
    if (Status status = comm.allReduce(input, output, op); !status)
      return status;
    if (Status status =
            expectValues("f32 " + name, output.as<float>(), expectedFloats);
        !status)
      return status;
    // i64 through buffers, in place.
    if (Status status =
            comm.allReduce(ints.data(), ints.data(), count, DType::I64, op);
        !status)
      return status;
    if (Status status = expectValues("i64 " + name + " in place", ints.data(),
                                     expectedInts);
        !status)
      return status;
  }
  // An f32 tensor in place, and an empty reduction.
  Tensor buffer(DType::F32, {2, 2});
  for (int64_t i = 0; i < 4; ++i)
    buffer.as<float>()[i] = floatInput(me, i);
  if (Status status = comm.allReduce(buffer, ReduceOp::Sum); !status)
    return status;
  std::vector<float> expected;
  for (int64_t i = 0; i < 4; ++i)
    expected.push_back(reduceExpected<float>(
        ReduceOp::Sum, ranks, [&](int rank) { return floatInput(rank, i); }));
  if (Status status =
          expectValues("f32 tensor in place", buffer.as<float>(), expected);
      !status)
    return status;
  float unused = 0;
  return comm.allReduce(&unused, &unused, 0, DType::F32, ReduceOp::Max);
}

inline Status checkAllGather(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  auto value = [](int rank, int64_t i) { return rank * 100 + i; };
  Tensor input(DType::F32, {2, 3});
  for (int64_t i = 0; i < 6; ++i)
    input.as<float>()[i] = static_cast<float>(value(me, i));
  Tensor output(DType::F32, {2 * ranks, 3});
  if (Status status = comm.allGather(input, output); !status)
    return status;
  std::vector<float> expected;
  for (int rank = 0; rank < ranks; ++rank)
    for (int64_t i = 0; i < 6; ++i)
      expected.push_back(static_cast<float>(value(rank, i)));
  if (Status status =
          expectValues("gathered rows", output.as<float>(), expected);
      !status)
    return status;

  // In place: this rank's piece already sits in its slot.
  std::vector<int64_t> gathered(5 * ranks, -1), expectedInts;
  for (int64_t i = 0; i < 5; ++i)
    gathered[me * 5 + i] = value(me, i);
  if (Status status = comm.allGather(gathered.data() + me * 5, gathered.data(),
                                     5 * sizeof(int64_t));
      !status)
    return status;
  for (int rank = 0; rank < ranks; ++rank)
    for (int64_t i = 0; i < 5; ++i)
      expectedInts.push_back(value(rank, i));
  return expectValues("gathered in place", gathered.data(), expectedInts);
}

inline Status checkReduceScatter(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  auto value = [](int rank, int64_t i) {
    return static_cast<float>(rank * 10 + i) - 0.5f;
  };
  // Tensor form: input (2 * ranks) x 3, output 2 x 3, sum.
  Tensor input(DType::F32, {2 * ranks, 3});
  for (int64_t i = 0; i < input.numElements(); ++i)
    input.as<float>()[i] = value(me, i);
  Tensor output(DType::F32, {2, 3});
  if (Status status = comm.reduceScatter(input, output); !status)
    return status;
  std::vector<float> expected;
  for (int64_t i = 0; i < 6; ++i)
    expected.push_back(
        reduceExpected<float>(ReduceOp::Sum, ranks, [&](int rank) {
          return value(rank, me * 6 + i);
        }));
  if (Status status =
          expectValues("reduce-scatter sum", output.as<float>(), expected);
      !status)
    return status;

  // In place on buffers: the output is this rank's piece of the input.
  std::vector<float> buffer(4 * ranks);
  for (int64_t i = 0; i < 4 * ranks; ++i)
    buffer[i] = value(me, i);
  if (Status status = comm.reduceScatter(buffer.data(), buffer.data() + me * 4,
                                         4, DType::F32, ReduceOp::Sum);
      !status)
    return status;
  expected.clear();
  for (int64_t i = 0; i < 4; ++i)
    expected.push_back(
        reduceExpected<float>(ReduceOp::Sum, ranks, [&](int rank) {
          return value(rank, me * 4 + i);
        }));
  if (Status status = expectValues("reduce-scatter in place",
                                   buffer.data() + me * 4, expected);
      !status)
    return status;

  // i64 max.
  Tensor ints(DType::I64, {ranks, 2});
  for (int64_t i = 0; i < 2 * ranks; ++i)
    ints.as<int64_t>()[i] = intInput(me, i);
  Tensor maxima(DType::I64, {1, 2});
  if (Status status = comm.reduceScatter(ints, maxima, ReduceOp::Max); !status)
    return status;
  std::vector<int64_t> expectedMaxima;
  for (int64_t i = 0; i < 2; ++i)
    expectedMaxima.push_back(
        reduceExpected<int64_t>(ReduceOp::Max, ranks, [&](int rank) {
          return intInput(rank, me * 2 + i);
        }));
  return expectValues("reduce-scatter i64 max", maxima.as<int64_t>(),
                      expectedMaxima);
}

//===----------------------------------------------------------------------===//
// Point to point
//===----------------------------------------------------------------------===//

/// A ring with sendRecv (to self on one rank), then a chain of plain sends
/// and receives around the ring. Messages are 16 KiB, beyond MPI's eager
/// limit for shared memory, so sends wait for their receivers.
inline Status checkSendRecvRing(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  int next = (me + 1) % ranks, previous = (me + ranks - 1) % ranks;
  constexpr int64_t count = 2048;
  auto value = [](int rank, int64_t i) { return rank * 100000 + i; };
  Tensor outgoing(DType::I64, {count}), incoming(DType::I64, {count});
  for (int64_t i = 0; i < count; ++i)
    outgoing.as<int64_t>()[i] = value(me, i);
  if (Status status = comm.sendRecv(outgoing, next, incoming, previous);
      !status)
    return status;
  std::vector<int64_t> expected;
  for (int64_t i = 0; i < count; ++i)
    expected.push_back(value(previous, i));
  if (Status status =
          expectValues("ring message", incoming.as<int64_t>(), expected);
      !status)
    return status;
  if (ranks == 1)
    return Status::success();

  // A token around the ring: every rank adds its rank to element i * rank.
  std::vector<int64_t> token(count, 0);
  if (me != 0) {
    if (Status status =
            comm.recv(token.data(), token.size() * sizeof(int64_t), previous);
        !status)
      return status;
  }
  for (int64_t i = 0; i < count; ++i)
    token[i] += i * me;
  if (Status status =
          comm.send(token.data(), token.size() * sizeof(int64_t), next);
      !status)
    return status;
  if (me != 0)
    return Status::success();
  if (Status status =
          comm.recv(token.data(), token.size() * sizeof(int64_t), previous);
      !status)
    return status;
  expected.clear();
  for (int64_t i = 0; i < count; ++i)
    expected.push_back(i * (ranks * (ranks - 1) / 2));
  return expectValues("token after the ring", token.data(), expected);
}

//===----------------------------------------------------------------------===//
// Sub-groups
//===----------------------------------------------------------------------===//

/// Gathers the parent ranks of `group`'s members in its rank order and
/// compares them with `expectedMembers`.
inline Status expectMembers(Communicator &group, int parentRank,
                            const std::vector<int64_t> &expectedMembers) {
  if (group.size() != static_cast<int>(expectedMembers.size()))
    return Status::error("group \"" + group.name() + "\" has " +
                         std::to_string(group.size()) + " ranks, expected " +
                         std::to_string(expectedMembers.size()));
  std::vector<int64_t> members(group.size(), -1);
  int64_t mine = parentRank;
  if (Status status = group.allGather(&mine, members.data(), sizeof(int64_t));
      !status)
    return status;
  return expectValues("members of \"" + group.name() + "\"", members.data(),
                      expectedMembers);
}

/// split: even and odd ranks, in reverse rank order (key = -rank); the last
/// rank (of two or more) opts out with a negative color.
inline Status checkSplit(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  bool optsOut = ranks > 1 && me == ranks - 1;
  int color = optsOut ? -1 : me % 2;
  std::unique_ptr<Communicator> group;
  if (Status status = comm.split(color, -me, group); !status)
    return status;
  if (optsOut)
    return group ? Status::error("a negative color produced a group")
                 : Status::success();
  if (!group)
    return Status::error("split gave no group for color " +
                         std::to_string(color));
  std::vector<int64_t> expectedMembers;
  for (int rank = ranks - 1; rank >= 0; --rank)
    if (rank % 2 == color && !(ranks > 1 && rank == ranks - 1))
      expectedMembers.push_back(rank);
  std::string expectedName = comm.name() + "/" + std::to_string(color);
  if (group->name() != expectedName)
    return Status::error("group is named \"" + group->name() +
                         "\", expected \"" + expectedName + "\"");
  if (Status status = expectMembers(*group, me, expectedMembers); !status)
    return status;
  return group->barrier();
}

/// splitGrid: on an even number of ranks a 2 x (ranks / 2) grid, split along
/// each axis; otherwise a 1-D grid, split along it and along no axis.
inline Status checkGridGroups(Communicator &comm) {
  int ranks = comm.size(), me = comm.rank();
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> splits;
  if (ranks % 2 == 0)
    splits = {{{2, ranks / 2}, {1}}, {{2, ranks / 2}, {0}}};
  else
    splits = {{{ranks}, {0}}, {{ranks}, {}}};
  for (const auto &[gridShape, gridAxes] : splits) {
    std::unique_ptr<Communicator> group;
    if (Status status = comm.splitGrid(gridShape, gridAxes, group); !status)
      return status;
    if (!group)
      return Status::error("splitGrid gave no group");
    // Members: the ranks sharing this rank's coordinates off the group's
    // axes, in the order of their coordinate along it.
    std::vector<int64_t> expectedMembers;
    if (gridShape.size() == 2) {
      int64_t columns = gridShape[1];
      if (gridAxes[0] == 1)
        for (int64_t column = 0; column < columns; ++column)
          expectedMembers.push_back(me / columns * columns + column);
      else
        for (int64_t row = 0; row < 2; ++row)
          expectedMembers.push_back(row * columns + me % columns);
    } else if (gridAxes.empty()) {
      expectedMembers = {me};
    } else {
      for (int rank = 0; rank < ranks; ++rank)
        expectedMembers.push_back(rank);
    }
    if (Status status = expectMembers(*group, me, expectedMembers); !status)
      return status;
  }
  return Status::success();
}

/// Every check, by name.
inline std::vector<std::pair<const char *, Status (*)(Communicator &)>>
allChecks() {
  return {{"ragged_all_to_all", checkRaggedAllToAll},
          {"ragged_all_to_all_buffers", checkRaggedAllToAllBuffers},
          {"all_reduce", checkAllReduce},
          {"all_gather", checkAllGather},
          {"reduce_scatter", checkReduceScatter},
          {"send_recv_ring", checkSendRecvRing},
          {"split", checkSplit},
          {"grid_groups", checkGridGroups}};
}

} // namespace moe::rt::test

#endif // MOE_RUNTIME_TESTS_COLLECTIVESCHECKS_H
