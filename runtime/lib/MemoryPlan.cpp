//===- MemoryPlan.cpp - one arena for a program's values ------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/MemoryPlan.h"

#include <algorithm>
#include <numeric>

using namespace moe::rt;

MemoryPlan moe::rt::planMemory(const std::vector<BufferLifetime> &buffers,
                               int64_t alignment) {
  MemoryPlan plan;
  plan.offsets.assign(buffers.size(), 0);
  auto aligned = [&](int64_t bytes) {
    return (bytes + alignment - 1) / alignment * alignment;
  };
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return buffers[a].bytes > buffers[b].bytes;
  });
  std::vector<size_t> placed;
  for (size_t index : order) {
    const BufferLifetime &buffer = buffers[index];
    int64_t size = aligned(buffer.bytes);
    // The byte ranges of placed buffers alive at the same time, by offset.
    std::vector<std::pair<int64_t, int64_t>> taken;
    for (size_t other : placed) {
      const BufferLifetime &o = buffers[other];
      if (o.first <= buffer.last && buffer.first <= o.last)
        taken.push_back(
            {plan.offsets[other], plan.offsets[other] + aligned(o.bytes)});
    }
    std::sort(taken.begin(), taken.end());
    // The smallest gap that fits, else the end of the last taken range.
    int64_t best = -1, bestGap = 0, cursor = 0;
    for (const auto &[begin, end] : taken) {
      int64_t gap = begin - cursor;
      if (gap >= size && (best < 0 || gap < bestGap)) {
        best = cursor;
        bestGap = gap;
      }
      cursor = std::max(cursor, end);
    }
    plan.offsets[index] = best >= 0 ? best : cursor;
    plan.arenaBytes = std::max(plan.arenaBytes, plan.offsets[index] + size);
    placed.push_back(index);
  }
  return plan;
}
