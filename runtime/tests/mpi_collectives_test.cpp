//===- mpi_collectives_test.cpp - collectives on the MPI transport --------===//
//
// Part of moe-compiler's runtime tests.
//
// Run under mpirun, one process per rank; ctest starts it (see
// runtime/CMakeLists.txt) in one of these modes:
//
//   checks          every check of CollectivesChecks.h, the ones the thread
//                   transport passes; exits 0 when all pass on this rank.
//   abort           the last rank aborts; rank 0, calling later, and rank 1,
//                   waiting to receive from it, get an error naming it
//                   (returned, MPI_Abort-free); exits 0 when they do.
//   abort-in-flight the last rank aborts while the others wait in an
//                   all-reduce: they print the error and end the job
//                   (ctest matches the message).
//   timeout         the last rank never reaches step 2: the others print a
//                   timeout naming it and end the job (ctest matches it).
//
//===----------------------------------------------------------------------===//

#include "CollectivesChecks.h"

#include <cstdio>
#include <cstring>
#include <thread>

using namespace moe::rt;
using namespace moe::rt::test;
using namespace std::chrono_literals;

namespace {

int runChecks(Communicator &world) {
  int failures = 0;
  std::vector<std::pair<const char *, Status (*)(Communicator &)>> checks =
      allChecks();
  for (const auto &[name, check] : checks) {
    Status status = check(world);
    if (!status)
      ++failures;
    std::printf("rank %d of %d: %s %s%s%s\n", world.rank(), world.size(), name,
                status ? "passed" : "FAILED", status ? "" : ": ",
                status.message.c_str());
  }
  std::printf("rank %d of %d: %zu of %zu checks passed\n", world.rank(),
              world.size(), checks.size() - failures, checks.size());
  return failures ? 1 : 0;
}

/// Returns 0 when `status`, from a call that the last rank (having aborted)
/// never joins, is the error naming the abort.
int expectAbortError(Communicator &world, const Status &status) {
  std::string expected = "stopped because rank " +
                         std::to_string(world.size() - 1) + " of " +
                         std::to_string(world.size()) +
                         " in \"world\" (mpi) aborted after barrier step 1: "
                         "injected failure";
  if (!status && status.message.find(expected) != std::string::npos) {
    std::printf("rank %d: got the expected error: %s\n", world.rank(),
                status.message.c_str());
    return 0;
  }
  std::printf("rank %d: UNEXPECTED result: %s\n", world.rank(),
              status ? "success" : status.message.c_str());
  return 1;
}

/// Calls an all-reduce that should end the job instead of returning.
int expectJobEnd(Communicator &world) {
  float value = 1;
  Status status = world.allReduce(&value, &value, 1, DType::F32, ReduceOp::Sum);
  std::printf("rank %d: UNEXPECTED: all_reduce returned: %s\n", world.rank(),
              status ? "success" : status.message.c_str());
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "checks" && mode != "abort" && mode != "abort-in-flight" &&
      mode != "timeout") {
    std::fprintf(stderr,
                 "usage: mpirun -np N %s "
                 "checks|abort|abort-in-flight|timeout\n",
                 argv[0]);
    return 2;
  }
  CommunicatorOptions options;
  options.timeout = mode == "timeout" ? 500ms : 20s;
  std::unique_ptr<Communicator> world;
  if (Status status = createMPIWorldCommunicator(options, world); !status) {
    std::fprintf(stderr, "mpi_collectives_test: %s\n", status.message.c_str());
    return 1;
  }
  if (mode == "checks")
    return runChecks(*world);

  if (Status status = world->barrier(); !status) {
    std::printf("rank %d: UNEXPECTED barrier error: %s\n", world->rank(),
                status.message.c_str());
    return 1;
  }
  bool last = world->rank() == world->size() - 1;
  if (mode == "abort") {
    if (last) {
      world->abort("injected failure");
      // Stay until the others have had the notice: a process that ends
      // at once may take its unsent notices with it on a loaded machine.
      std::this_thread::sleep_for(3s);
      return 0;
    }
    // Rank 0 calls after the notice has arrived (2 s: ctest runs this
    // beside other tests on few cores); rank 1 (of three or more) is
    // already waiting for a message from the aborting rank. Neither has
    // anything in flight, so both get the error back.
    if (world->rank() == 1) {
      int64_t value = 0;
      return expectAbortError(
          *world, world->recv(&value, sizeof(value), world->size() - 1));
    }
    std::this_thread::sleep_for(2s);
    float value = 1;
    return expectAbortError(
        *world, world->allReduce(&value, &value, 1, DType::F32, ReduceOp::Sum));
  }
  if (mode == "abort-in-flight") {
    if (last) {
      std::this_thread::sleep_for(300ms);
      world->abort("injected failure");
      // The others end the job; stay until they do.
      std::this_thread::sleep_for(20s);
      std::printf("rank %d: UNEXPECTED: the job did not end\n", world->rank());
      return 1;
    }
    return expectJobEnd(*world);
  }
  // timeout
  if (last) {
    std::this_thread::sleep_for(20s);
    std::printf("rank %d: UNEXPECTED: the job did not end\n", world->rank());
    return 1;
  }
  return expectJobEnd(*world);
}
