//===- MemoryPlan.h - one arena for a program's values ----------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// A program's intermediate values live between the operation that writes
// them and the last one that reads them. planMemory places them in one
// arena so that values alive at the same time never share bytes and values
// that are not reuse the same ones. The CPU executor uses it for its
// activations; the CUDA backend's device arena is planned the same way.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_MEMORYPLAN_H
#define MOE_RUNTIME_MEMORYPLAN_H

#include <cstdint>
#include <vector>

namespace moe::rt {

/// A buffer of `bytes` that must hold its contents from operation `first`
/// through operation `last` (inclusive: an operation's operands and results
/// never overlap).
struct BufferLifetime {
  int64_t bytes = 0;
  int64_t first = 0, last = 0;
};

struct MemoryPlan {
  /// Byte offset of each buffer in the arena, aligned to the alignment.
  std::vector<int64_t> offsets;
  /// The arena's size.
  int64_t arenaBytes = 0;
};

/// Places `buffers` in one arena: two buffers whose lifetimes intersect get
/// disjoint byte ranges. Greedy best fit, largest buffers first (each goes
/// into the smallest gap left by the already placed buffers it coexists
/// with, or past them); `alignment` must be a power of two.
MemoryPlan planMemory(const std::vector<BufferLifetime> &buffers,
                      int64_t alignment = 64);

} // namespace moe::rt

#endif // MOE_RUNTIME_MEMORYPLAN_H
