//===- ExpertPlacement.cpp - load-balanced expert placement ---------------===//
//
// Part of moe-compiler.
//
// The algorithm is described in ExpertPlacement.h. Every step breaks ties by
// the lowest expert or rank index, so a placement is a pure function of its
// inputs.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/ExpertPlacement.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <cassert>
#include <queue>

using namespace llvm;
using namespace moe::plan;

double ExpertPlacement::maxOverMean() const {
  double total = 0, maximum = 0;
  for (double load : rankLoad) {
    total += load;
    maximum = std::max(maximum, load);
  }
  return total > 0 ? maximum * numRanks / total : 1.0;
}

int64_t ExpertPlacement::numSlotsUsed() const {
  int64_t slots = 0;
  for (const std::vector<int64_t> &experts : expertsOnRank)
    slots += experts.size();
  return slots;
}

bool ExpertPlacement::operator==(const ExpertPlacement &other) const {
  return numRanks == other.numRanks && slotsPerRank == other.slotsPerRank &&
         expertsOnRank == other.expertsOnRank;
}

int64_t moe::plan::minSlotsPerRank(int64_t numExperts, int64_t numRanks) {
  return (numExperts + numRanks - 1) / numRanks;
}

namespace {

/// Shares scaled to sum to 1; all zero becomes uniform.
std::vector<double> normalise(ArrayRef<double> shares) {
  double total = 0;
  for (double share : shares)
    total += share;
  std::vector<double> normalised;
  for (double share : shares)
    normalised.push_back(total > 0 ? share / total : 1.0 / shares.size());
  return normalised;
}

/// Fills ranksOfExpert and rankLoad from expertsOnRank, with each replica of
/// an expert receiving an equal part of its share.
ExpertPlacement finish(ArrayRef<double> shares, int64_t numRanks,
                       int64_t slotsPerRank,
                       std::vector<std::vector<int64_t>> expertsOnRank) {
  ExpertPlacement placement;
  placement.numRanks = numRanks;
  placement.slotsPerRank = slotsPerRank;
  placement.ranksOfExpert.resize(shares.size());
  for (auto [rank, experts] : enumerate(expertsOnRank))
    for (int64_t expert : experts)
      placement.ranksOfExpert[expert].push_back(rank);
  placement.rankLoad.assign(numRanks, 0.0);
  for (auto [expert, ranks] : enumerate(placement.ranksOfExpert))
    for (int64_t rank : ranks)
      placement.rankLoad[rank] += shares[expert] / ranks.size();
  placement.expertsOnRank = std::move(expertsOnRank);
  return placement;
}

/// One replica of an expert during packing.
struct Replica {
  int64_t expert;
  double share;
};

/// Packs replicas onto ranks and improves the packing by swaps.
class Packer {
public:
  Packer(int64_t numRanks, int64_t numExperts, int64_t capacity)
      : numExperts(numExperts), capacity(capacity), load(numRanks, 0.0),
        slots(numRanks), holds(numRanks * numExperts, false) {}

  /// Longest processing time first, under the slot and distinctness
  /// constraints.
  void pack(ArrayRef<Replica> replicas) {
    for (const Replica &replica : replicas) {
      int64_t best = -1;
      for (int64_t rank = 0, e = load.size(); rank < e; ++rank)
        if (hasRoom(rank) && !holds[index(rank, replica.expert)] &&
            (best < 0 || load[rank] < load[best]))
          best = rank;
      if (best < 0)
        best = makeRoom(replica.expert);
      add(best, replica);
    }
  }

  /// Best-improvement swaps (or moves into a free slot) between the most
  /// loaded rank and any other, while they lower the larger of the two
  /// loads. The most loaded rank sets the expert time, so when it cannot
  /// improve, nothing can improve the figure of merit.
  void refine() {
    int64_t numRanks = load.size();
    for (int64_t iteration = 0, limit = 16 * numRanks * capacity + 64;
         iteration < limit; ++iteration) {
      int64_t top = std::max_element(load.begin(), load.end()) - load.begin();
      double bestMax = load[top] * (1 - 1e-12);
      int64_t bestRank = -1, bestFrom = -1, bestTo = -1;
      for (int64_t other = 0; other < numRanks; ++other) {
        if (other == top)
          continue;
        for (int64_t from = 0, e = slots[top].size(); from < e; ++from) {
          const Replica &moving = slots[top][from];
          if (holds[index(other, moving.expert)])
            continue;
          // to == size: a move into a free slot of `other`.
          int64_t choices = slots[other].size() + (hasRoom(other) ? 1 : 0);
          for (int64_t to = 0; to < choices; ++to) {
            double back = 0;
            if (to < int64_t(slots[other].size())) {
              const Replica &returning = slots[other][to];
              if (holds[index(top, returning.expert)])
                continue;
              back = returning.share;
            }
            double newMax = std::max(load[top] - moving.share + back,
                                     load[other] + moving.share - back);
            if (newMax < bestMax) {
              bestMax = newMax;
              bestRank = other;
              bestFrom = from;
              bestTo = to;
            }
          }
        }
      }
      if (bestRank < 0)
        return;
      Replica moving = slots[top][bestFrom];
      remove(top, bestFrom);
      if (bestTo < int64_t(slots[bestRank].size())) {
        Replica returning = slots[bestRank][bestTo];
        remove(bestRank, bestTo);
        add(top, returning);
      }
      add(bestRank, moving);
    }
  }

  std::vector<std::vector<int64_t>> expertsOnRank() const {
    std::vector<std::vector<int64_t>> experts(slots.size());
    for (auto [rank, replicas] : enumerate(slots))
      for (const Replica &replica : replicas)
        experts[rank].push_back(replica.expert);
    return experts;
  }

private:
  int64_t index(int64_t rank, int64_t expert) const {
    return rank * numExperts + expert;
  }
  bool hasRoom(int64_t rank) const {
    return int64_t(slots[rank].size()) < capacity;
  }
  void add(int64_t rank, const Replica &replica) {
    slots[rank].push_back(replica);
    load[rank] += replica.share;
    holds[index(rank, replica.expert)] = true;
  }
  void remove(int64_t rank, int64_t slot) {
    const Replica &replica = slots[rank][slot];
    load[rank] -= replica.share;
    holds[index(rank, replica.expert)] = false;
    slots[rank].erase(slots[rank].begin() + slot);
  }

  /// Every rank with a free slot already holds `expert`. Some rank without
  /// it exists (an expert has at most one replica per rank) and is full; it
  /// holds an expert the free rank lacks (it has more distinct experts), so
  /// that expert moves to the free rank and frees a slot for `expert`.
  int64_t makeRoom(int64_t expert) {
    int64_t numRanks = load.size();
    int64_t freeRank = 0;
    while (!hasRoom(freeRank))
      ++freeRank;
    int64_t fullRank = -1;
    for (int64_t rank = 0; rank < numRanks; ++rank)
      if (!holds[index(rank, expert)] &&
          (fullRank < 0 || load[rank] < load[fullRank]))
        fullRank = rank;
    assert(fullRank >= 0 && "an expert has more replicas than ranks");
    for (int64_t slot = 0, e = slots[fullRank].size(); slot < e; ++slot) {
      Replica moved = slots[fullRank][slot];
      if (holds[index(freeRank, moved.expert)])
        continue;
      remove(fullRank, slot);
      add(freeRank, moved);
      return fullRank;
    }
    llvm_unreachable("a full rank holds only experts of a less full rank");
  }

  int64_t numExperts;
  int64_t capacity;
  std::vector<double> load;
  std::vector<std::vector<Replica>> slots;
  std::vector<bool> holds;
};

} // namespace

ExpertPlacement moe::plan::placeExpertsBalanced(ArrayRef<double> shares,
                                                int64_t numRanks,
                                                int64_t slotsPerRank) {
  int64_t numExperts = shares.size();
  assert(numRanks > 0 && numExperts > 0 &&
         slotsPerRank >= minSlotsPerRank(numExperts, numRanks) &&
         "the slots must hold every expert");
  std::vector<double> normalised = normalise(shares);
  // A rank holds an expert at most once, so it uses at most numExperts
  // slots and an expert has at most numRanks replicas.
  int64_t capacity = std::min(slotsPerRank, numExperts);

  // 1. Replica counts by D'Hondt: the next extra slot goes to the largest
  // per-replica share.
  std::vector<int64_t> replicas(numExperts, 1);
  auto lessUrgent = [&](int64_t a, int64_t b) {
    double shareA = normalised[a] / replicas[a];
    double shareB = normalised[b] / replicas[b];
    return shareA != shareB ? shareA < shareB : a > b;
  };
  std::priority_queue<int64_t, std::vector<int64_t>, decltype(lessUrgent)>
      queue(lessUrgent);
  if (numRanks > 1)
    for (int64_t expert = 0; expert < numExperts; ++expert)
      queue.push(expert);
  for (int64_t extra = numRanks * capacity - numExperts;
       extra > 0 && !queue.empty(); --extra) {
    int64_t expert = queue.top();
    queue.pop();
    if (++replicas[expert] < numRanks)
      queue.push(expert);
  }

  // 2. Replicas by decreasing share, experts in index order among equals.
  std::vector<Replica> items;
  for (int64_t expert = 0; expert < numExperts; ++expert)
    for (int64_t copy = 0; copy < replicas[expert]; ++copy)
      items.push_back({expert, normalised[expert] / replicas[expert]});
  std::stable_sort(
      items.begin(), items.end(),
      [](const Replica &a, const Replica &b) { return a.share > b.share; });
  Packer packer(numRanks, numExperts, capacity);
  packer.pack(items);
  // 3. Swaps.
  packer.refine();
  return finish(normalised, numRanks, slotsPerRank, packer.expertsOnRank());
}

ExpertPlacement moe::plan::placeExpertsContiguous(ArrayRef<double> shares,
                                                  int64_t numRanks) {
  int64_t numExperts = shares.size();
  std::vector<std::vector<int64_t>> expertsOnRank(numRanks);
  for (int64_t expert = 0; expert < numExperts; ++expert)
    expertsOnRank[expert * numRanks / numExperts].push_back(expert);
  return finish(normalise(shares), numRanks,
                minSlotsPerRank(numExperts, numRanks),
                std::move(expertsOnRank));
}

ExpertPlacement moe::plan::placeExpertsRoundRobin(ArrayRef<double> shares,
                                                  int64_t numRanks) {
  int64_t numExperts = shares.size();
  std::vector<std::vector<int64_t>> expertsOnRank(numRanks);
  for (int64_t expert = 0; expert < numExperts; ++expert)
    expertsOnRank[expert % numRanks].push_back(expert);
  return finish(normalise(shares), numRanks,
                minSlotsPerRank(numExperts, numRanks),
                std::move(expertsOnRank));
}
