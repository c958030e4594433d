//===- WorkerPool.cpp - a fixed set of threads for parallel loops ---------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
//===----------------------------------------------------------------------===//

#include "WorkerPool.h"

#include <algorithm>

using namespace moe::rt;

WorkerPool::WorkerPool(int threads) {
  for (int i = 1; i < threads; ++i)
    workers_.emplace_back([this, i] { work(i); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread &worker : workers_)
    worker.join();
}

std::pair<int64_t, int64_t> WorkerPool::part(int64_t count, int index) const {
  int64_t parts = size();
  return {count * index / parts, count * (index + 1) / parts};
}

void WorkerPool::parallelFor(
    int64_t count, const std::function<void(int64_t, int64_t)> &body) {
  if (workers_.empty() || count < 2) {
    body(0, count);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    count_ = count;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  auto [begin, end] = part(count, 0);
  body(begin, end);
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] { return pending_ == 0; });
  body_ = nullptr;
}

void WorkerPool::work(int index) {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int64_t, int64_t)> *body;
    int64_t count;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_)
        return;
      seen = generation_;
      body = body_;
      count = count_;
    }
    auto [begin, end] = part(count, index);
    if (begin < end)
      (*body)(begin, end);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0)
        finished_.notify_one();
    }
  }
}
