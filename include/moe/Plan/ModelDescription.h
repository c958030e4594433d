//===- ModelDescription.h - the shapes the planner prices -------*- C++ -*-===//
//
// Part of moe-compiler.
//
// A model as the planner sees it: a list of decoder layers (attention followed
// by a dense MLP or by a Mixture-of-Experts block), the vocabulary, the
// element type and the work of one step (batch x sequence tokens). No weight
// bytes: everything the cost model needs follows from the shapes. The MLIR
// side fills this from moe.layer ops; DeepSeek-V3 and Mixtral 8x7B are built
// in for benchmarks and tests.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PLAN_MODELDESCRIPTION_H
#define MOE_PLAN_MODELDESCRIPTION_H

#include "moe/Plan/MachineDescription.h"

#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace moe::plan {

enum class LayerKind { Dense, MoE };

struct LayerDescription {
  LayerKind kind = LayerKind::Dense;
  int64_t hidden = 0;

  // Attention: query heads, key/value heads (grouped-query attention when
  // fewer), and the width of one head; a head width of 0 means the layer has
  // no attention (its norms and residual adds are still priced).
  int64_t numHeads = 0;
  int64_t numKVHeads = 0;
  int64_t headDim = 0;
  /// Elements cached per token for later decoding; 0 means keys and values of
  /// every key/value head (2 x numKVHeads x headDim), split over tensor
  /// parallel ranks by head. A non-zero value is a per-token latent that every
  /// tensor-parallel rank keeps whole (DeepSeek's multi-head latent attention).
  int64_t kvCacheElementsPerToken = 0;

  /// Gated MLPs (SwiGLU, GeGLU) have gate, up and down matrices; others have
  /// up and down only.
  bool gatedMLP = true;

  /// Intermediate size of the MLP of a dense layer.
  int64_t denseInter = 0;

  // Mixture of experts: routed experts of which each token picks topK, and
  // shared experts that see every token.
  int64_t numExperts = 0;
  int64_t topK = 0;
  int64_t expertInter = 0;
  int64_t numSharedExperts = 0;
  int64_t sharedExpertInter = 0;

  bool isMoE() const { return kind == LayerKind::MoE; }
  /// 3 for gated MLPs, 2 otherwise.
  int64_t mlpMatrices() const { return gatedMLP ? 3 : 2; }

  bool operator==(const LayerDescription &other) const;
};

struct ModelDescription {
  std::string name;
  std::vector<LayerDescription> layers;
  int64_t vocab = 0;
  /// Element type of weights, activations and arithmetic.
  DataType dtype = DataType::BF16;
  /// One step processes `batch` sequences of `sequence` tokens (a prefill).
  int64_t batch = 1;
  int64_t sequence = 1;

  int64_t tokensPerStep() const { return batch * sequence; }
  int64_t numMoELayers() const;
  /// Parameter count (embeddings and LM head included), for reports.
  double numParameters() const;
};

/// Checks that every size is positive where it must be and that top-k fits
/// the experts; the error names the model, the layer and the field.
llvm::Error validateModel(const ModelDescription &model);

/// DeepSeek-V3 (arXiv 2412.19437, config.json of deepseek-ai/DeepSeek-V3):
/// 61 layers of which the first 3 are dense (inter 18432), 256 routed experts
/// (inter 2048, top-8) and 1 shared expert, hidden 7168, 128 heads, vocab
/// 129280, bf16.
ModelDescription makeDeepSeekV3(int64_t batch, int64_t sequence);

/// Mixtral 8x7B (arXiv 2401.04088, config.json of mistralai/Mixtral-8x7B-v0.1):
/// 32 MoE layers, hidden 4096, 8 experts of inter 14336, top-2, 32 heads,
/// 8 key/value heads, vocab 32000, bf16.
ModelDescription makeMixtral8x7B(int64_t batch, int64_t sequence);

} // namespace moe::plan

#endif // MOE_PLAN_MODELDESCRIPTION_H
