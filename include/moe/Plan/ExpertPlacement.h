//===- ExpertPlacement.h - experts onto expert-parallel ranks ---*- C++ -*-===//
//
// Part of moe-compiler.
//
// Places the experts of one MoE layer on R expert-parallel ranks that each
// have the same number of expert slots (so every rank holds the same weight
// bytes). When the slots outnumber the experts, hot experts get replicas;
// the dispatcher splits an expert's tokens evenly over its replicas, so a
// replica of an expert with share p and n replicas receives p / n. A rank's
// load is the sum over its slots; the time of the expert step is set by the
// most loaded rank, hence the figure of merit max/mean rank load.
//
// The balanced placement (placeExpertsBalanced):
//  1. replicas: every expert gets one; each extra slot goes to the expert
//     with the largest per-replica share p / n (D'Hondt apportionment,
//     which minimises the largest per-replica share for a slot count);
//  2. packing: replicas in decreasing share go to the least loaded rank that
//     has a free slot and no replica of the same expert (longest processing
//     time first, Graham 1969, with slot and distinctness constraints);
//  3. refinement: while a swap of two replicas between the most loaded rank
//     and another rank lowers the larger of their two loads, do the best
//     such swap.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PLAN_EXPERTPLACEMENT_H
#define MOE_PLAN_EXPERTPLACEMENT_H

#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <vector>

namespace moe::plan {

struct ExpertPlacement {
  int64_t numRanks = 0;
  int64_t slotsPerRank = 0;
  /// Experts held by each rank, in slot order; a rank holds an expert once.
  std::vector<std::vector<int64_t>> expertsOnRank;
  /// Ranks holding each expert, ascending.
  std::vector<std::vector<int64_t>> ranksOfExpert;
  /// Share of all routed (token, expert) pairs each rank receives.
  std::vector<double> rankLoad;

  /// Largest rank load over the mean (1 / numRanks); 1 is perfect balance.
  double maxOverMean() const;
  int64_t numSlotsUsed() const;
  bool operator==(const ExpertPlacement &other) const;
};

/// The fewest slots per rank that hold every expert: ceil(experts / ranks).
int64_t minSlotsPerRank(int64_t numExperts, int64_t numRanks);

/// Balanced placement of experts with `shares` (non-negative, normalised
/// here; all zero means uniform) on `numRanks` ranks of `slotsPerRank` slots,
/// which must hold every expert (slotsPerRank >= minSlotsPerRank). Slots
/// beyond one per expert and rank stay empty. Deterministic.
ExpertPlacement placeExpertsBalanced(llvm::ArrayRef<double> shares,
                                     int64_t numRanks, int64_t slotsPerRank);

/// The placements a planner without load information would use, for
/// comparison: contiguous blocks (expert e on rank e / ceil(E / R)) and
/// round robin (expert e on rank e mod R), one slot per expert.
ExpertPlacement placeExpertsContiguous(llvm::ArrayRef<double> shares,
                                       int64_t numRanks);
ExpertPlacement placeExpertsRoundRobin(llvm::ArrayRef<double> shares,
                                       int64_t numRanks);

} // namespace moe::plan

#endif // MOE_PLAN_EXPERTPLACEMENT_H
