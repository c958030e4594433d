//===- Kernels.h - CPU kernels of the runtime -------------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// One kernel per moe dialect operation, named like the operation without the
// `moe.` prefix ("add", "matmul", "expert_ffn", ...). The semantics of each
// kernel are those of its operation as documented in
// include/moe/Dialect/MoE/IR/MoEOps.td (ONNX semantics for graph ops).
//
// Calling convention:
// - `inputs` are the operation's operands in their declared (ODS) order; an
//   absent optional operand is nullptr.
// - `outputs` are preallocated by the caller with the result shapes and
//   dtypes of the program (computed by the compiler); a kernel fills them.
// - `attrs` hold the operation's attributes under their MLIR names: enums as
//   strings ("swiglu", "sum", "lt", "softmax", "add"), unit and bool
//   attributes as ints 0/1 (absent = 0), integers as ints, floats as doubles,
//   integer arrays as arrays.
// - Floating-point compute is f32; index tensors are i64 (i32 accepted where
//   ONNX allows); bool tensors are one byte per element.
// - A kernel never aborts on bad data (out-of-range gather indices, a
//   corrupt count): it returns an error Status naming the problem.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_KERNELS_H
#define MOE_RUNTIME_KERNELS_H

#include "moe/Runtime/Tensor.h"

#include <map>
#include <string>
#include <vector>

namespace moe::rt {

struct Status {
  bool ok = true;
  std::string message;

  static Status success() { return {}; }
  static Status error(std::string message) {
    return {false, std::move(message)};
  }
  explicit operator bool() const { return ok; }
};

struct Attributes {
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> floats;
  std::map<std::string, std::vector<int64_t>> arrays;
  std::map<std::string, std::string> strings;

  int64_t getInt(const std::string &name, int64_t fallback = 0) const;
  double getFloat(const std::string &name, double fallback = 0.0) const;
  const std::vector<int64_t> *getArray(const std::string &name) const;
  std::string getString(const std::string &name,
                        const std::string &fallback = "") const;
  bool has(const std::string &name) const;
};

class Communicator;
class WorkerPool;

/// The key of a device group in KernelContext::groups: "ep[0]".
std::string groupKey(const std::string &grid, const std::vector<int64_t> &axes);

/// Per-run settings shared by kernels.
struct KernelContext {
  /// Threads a kernel may use (BLAS and parallel loops).
  int threads = 1;
  /// The executor's pool of `threads` threads for the kernels' own parallel
  /// loops; null with one thread.
  WorkerPool *pool = nullptr;
  /// The device group of every (grid, grid axes) pair the program's
  /// collectives use, by groupKey; this rank's index in a group is its
  /// communicator's rank. Empty for a program without grids.
  std::map<std::string, Communicator *> groups;
};

using KernelFn = Status (*)(const Attributes &attrs,
                            const std::vector<const Tensor *> &inputs,
                            const std::vector<Tensor *> &outputs,
                            KernelContext &context);

/// The kernel for an operation name, or nullptr when there is none.
KernelFn findKernel(const std::string &op);

/// Every operation name with a kernel, sorted.
std::vector<std::string> kernelNames();

} // namespace moe::rt

#endif // MOE_RUNTIME_KERNELS_H
