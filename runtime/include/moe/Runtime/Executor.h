//===- Executor.h - running a program on one rank ---------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// An Executor loads a program: it maps the weight files, reads the bytes this
// rank needs, allocates every value once, and evaluates the operations whose
// operands are all weights or constants (layout changes of weights: reshape,
// transpose, slice) a single time. Each run then executes only the
// operations that depend on the inputs.
//
// A program with grids (partitioned by moe-compile) is SPMD: every rank loads
// the same program with its communicator, and the executor splits that
// communicator into the device groups the program's collectives name.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_EXECUTOR_H
#define MOE_RUNTIME_EXECUTOR_H

#include "moe/Runtime/Collectives.h"
#include "moe/Runtime/Kernels.h"
#include "moe/Runtime/Program.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace moe::rt {

/// Time spent in one operation during a run.
struct OpTiming {
  int operation; ///< index into Program::operations
  double startSeconds;
  double durationSeconds;
};

/// Fails, saying how much, when the buffers `program` declares cannot fit in
/// this machine's memory.
Status checkFitsInMemory(const Program &program);

/// The host tensors of `program`'s constants and weights, stored in
/// `values` (sized for the program's values) by id. Weight files are found
/// in `programDirectory` joined with the program's weights-dir and mapped:
/// a weight that is not sliced and is 64-byte aligned in its file is a
/// zero-copy view, whose bytes `views` receives; others are copied, only
/// the box this rank owns.
Status loadStaticValues(
    const Program &program, const std::string &programDirectory,
    std::vector<Tensor> &values,
    std::map<int, std::pair<const void *, size_t>> *views = nullptr);

/// The device groups of `program`'s collectives, by groupKey (what
/// KernelContext::groups holds), split from `world`; `owned` keeps them.
/// Collective over `world`, whose size must be the program's ranks. A null
/// `world` serves a one-device grid (a one-rank thread group).
Status createDeviceGroups(const Program &program, Communicator *world,
                          std::map<std::string, Communicator *> &groups,
                          std::vector<std::unique_ptr<Communicator>> &owned);

/// Per operation, whether rank `rank` runs it: the operations of its
/// pipeline stage, those without a stage, its stage transfers, and the
/// static operations (`isStatic`, per value) they need; every operation
/// without a pipeline. Fails when an output is not computed on the stage.
Status selectStageOperations(const Program &program,
                             const std::vector<bool> &isStatic, int64_t rank,
                             std::vector<bool> &runsHere);

class Executor {
public:
  /// Loads `program`; weight files are found in `programDirectory` joined
  /// with the program's weights-dir. A program with grids needs `world`, a
  /// communicator of as many ranks as its grid has devices (collective: all
  /// ranks create their executors together); one without ignores it.
  static Status create(Program program, const std::string &programDirectory,
                       int threads, std::unique_ptr<Executor> &executor,
                       Communicator *world = nullptr);

  /// The ranks the program runs on: the size of its grid, 1 without one.
  static int64_t ranksOf(const Program &program);

  ~Executor();

  const Program &program() const { return program_; }

  /// Runs the program on `inputs` (one per program input, matching its
  /// dtype and shape). Results stay owned by the executor: `outputs` point at
  /// them until the next run. With `timings`, records every operation.
  Status run(const std::vector<Tensor> &inputs,
             std::vector<const Tensor *> &outputs,
             std::vector<OpTiming> *timings = nullptr);

  /// The current value of program value `id` (after a run: what it
  /// computed for outputs, dispatch results and collectives' operands and
  /// results; other intermediate values share an arena, so a later
  /// operation may have overwritten them; released static values are
  /// empty).
  const Tensor &value(int id) const { return values_[id]; }

  /// Bytes of weights (and constants) this rank holds for its runs, after
  /// their layout changes.
  int64_t weightBytes() const { return weightBytes_; }

private:
  /// An expert_ffn whose weights the executor reads itself (ExpertMatrices.h).
  struct PreparedFFN;

  Executor() = default;
  void prepareExpertWeights();
  /// Places the intermediate values this rank computes in one arena
  /// (MemoryPlan.h): `offsets[id]` is a value's byte offset, -1 for one
  /// with a buffer of its own.
  Status planActivations(const std::vector<bool> &isOutput,
                         std::vector<int64_t> &offsets);
  Status runOperation(size_t index);

  Program program_;
  KernelContext context_;
  std::vector<Tensor> values_;
  std::vector<bool> isStatic_;
  std::vector<KernelFn> kernels_;
  /// The device groups of KernelContext::groups.
  std::vector<std::unique_ptr<Communicator>> groups_;
  /// Per operation: whether this rank runs it (its pipeline stage's
  /// operations and the static ones they need; all without a pipeline).
  std::vector<bool> runsHere_;
  /// Weights that are views of mapped files: their bytes, by value.
  std::map<int, std::pair<const void *, size_t>> weightViews_;
  /// The arena of intermediate values (planActivations).
  std::shared_ptr<void> arena_;
  /// The kernels' threads beyond the caller's (with --threads > 1).
  std::unique_ptr<WorkerPool> pool_;
  /// Per operation: set for an expert_ffn whose weights were traced back
  /// through their layout changes to the file (read in place or packed).
  std::vector<std::unique_ptr<PreparedFFN>> prepared_;
  int64_t weightBytes_ = 0;
};

} // namespace moe::rt

#endif // MOE_RUNTIME_EXECUTOR_H
