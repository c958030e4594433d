//===- BenchSupport.h - what the GPU benchmarks share -----------*- C++ -*-===//
//
// Part of moe-compiler's benchmarks: failing with a message, checking CUDA
// calls, timing launches with CUDA events, reading size arguments.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_BENCH_GPU_BENCHSUPPORT_H
#define MOE_BENCH_GPU_BENCHSUPPORT_H

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace moe::bench {

/// The program's name in messages.
inline const char *&programName() {
  static const char *name = "bench";
  return name;
}

[[noreturn]] inline void die(const std::string &message) {
  std::fprintf(stderr, "%s: %s\n", programName(), message.c_str());
  std::exit(1);
}

inline void check(cudaError_t error, const char *what) {
  if (error != cudaSuccess)
    die(std::string(what) + ": " + cudaGetErrorString(error));
}

/// Median milliseconds of `launch` over `timed` runs after `warmup` runs.
inline double medianMilliseconds(const std::function<void()> &launch,
                                 int warmup, int timed) {
  for (int i = 0; i < warmup; ++i)
    launch();
  check(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < timed; ++i) {
    check(cudaEventRecord(start), "cudaEventRecord");
    launch();
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

inline int64_t parseSize(const char *text, const char *name) {
  char *end = nullptr;
  long long value = std::strtoll(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < 1)
    die(std::string(name) + " must be a positive integer, got '" + text + "'");
  return value;
}

} // namespace moe::bench

#endif // MOE_BENCH_GPU_BENCHSUPPORT_H
