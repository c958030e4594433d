//===- ExpertLoad.h - how routed tokens spread over experts -----*- C++ -*-===//
//
// Part of moe-compiler.
//
// The share of routed (token, expert) pairs each expert of each MoE layer
// receives. Either assumed (uniform, or Zipf with exponent s: the expert with
// id i gets a share proportional to 1 / (i + 1)^s, so expert 0 is the
// hottest) or measured: the JSON lines `moe-run --expert-load` writes, one
// line per MoE layer and rank,
//
//   {"layer": 0, "rank": 0, "tokens_per_expert": [12, 0, 7, ...], ...}
//
// summed over ranks. "layer" counts MoE layers in model order (the i-th
// moe.dispatch), not decoder layers.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PLAN_EXPERTLOAD_H
#define MOE_PLAN_EXPERTLOAD_H

#include "moe/Plan/ModelDescription.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace moe::plan {

struct ExpertLoadModel {
  enum class Kind { Uniform, Zipf, Histogram };
  Kind kind = Kind::Uniform;
  double zipfExponent = 0;
  /// Histogram: tokens per expert, one row per MoE layer. A single row
  /// applies to every MoE layer.
  std::vector<std::vector<double>> tokensPerExpert;
  /// Where the histogram came from, for messages.
  std::string source;

  static ExpertLoadModel uniform();
  static ExpertLoadModel zipf(double exponent);
  /// "uniform", "zipf:1.0", or "histogram FILE", for reports.
  std::string describe() const;
};

/// Shares (summing to 1) of a Zipf distribution over `numExperts` experts.
std::vector<double> zipfShares(int64_t numExperts, double exponent);

/// Parses `moe-run --expert-load` output; errors name `fileName`, the line
/// and the field.
llvm::Expected<ExpertLoadModel>
parseExpertLoadHistogram(llvm::StringRef text, llvm::StringRef fileName);
llvm::Expected<ExpertLoadModel> loadExpertLoadHistogram(llvm::StringRef path);

/// "uniform", "zipf:S" (S > 0), or the path of a histogram file.
llvm::Expected<ExpertLoadModel> resolveExpertLoad(llvm::StringRef spec);

/// The shares of every MoE layer of `model`, in model order. Fails when a
/// histogram has a different number of MoE layers (other than one row for
/// all) or a different expert count than the model, or a layer with no
/// tokens.
llvm::Expected<std::vector<std::vector<double>>>
expertShares(const ExpertLoadModel &load, const ModelDescription &model);

} // namespace moe::plan

#endif // MOE_PLAN_EXPERTLOAD_H
