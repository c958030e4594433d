//===- WorkerPool.h - a fixed set of threads for parallel loops -*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Private to runtime/lib. The kernels' own parallel loops (the packed expert
// GEMM) run on an executor's pool of `--threads` threads; OpenBLAS keeps its
// own. The workers sleep between loops, so an idle pool costs nothing.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_LIB_WORKERPOOL_H
#define MOE_RUNTIME_LIB_WORKERPOOL_H

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe::rt {

class WorkerPool {
public:
  /// A pool of `threads` threads: the caller of parallelFor and
  /// `threads - 1` workers.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool &) = delete;
  WorkerPool &operator=(const WorkerPool &) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /// Splits [0, count) into size() contiguous parts and runs `body(begin,
  /// end)` on each, the caller taking the first; returns when all are done.
  /// Not reentrant: one loop at a time per pool.
  void parallelFor(int64_t count,
                   const std::function<void(int64_t, int64_t)> &body);

private:
  void work(int index);
  /// Part `index` of `count` split into size() parts.
  std::pair<int64_t, int64_t> part(int64_t count, int index) const;

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  const std::function<void(int64_t, int64_t)> *body_ = nullptr;
  int64_t count_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
};

} // namespace moe::rt

#endif // MOE_RUNTIME_LIB_WORKERPOOL_H
