//===- ModelDescription.cpp - model shapes and built-in models ------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/ModelDescription.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <tuple>

using namespace llvm;
using namespace moe::plan;

bool LayerDescription::operator==(const LayerDescription &other) const {
  return std::make_tuple(kind, hidden, numHeads, numKVHeads, headDim,
                         kvCacheElementsPerToken, gatedMLP, denseInter,
                         numExperts, topK, expertInter, numSharedExperts,
                         sharedExpertInter) ==
         std::make_tuple(
             other.kind, other.hidden, other.numHeads, other.numKVHeads,
             other.headDim, other.kvCacheElementsPerToken, other.gatedMLP,
             other.denseInter, other.numExperts, other.topK, other.expertInter,
             other.numSharedExperts, other.sharedExpertInter);
}

int64_t ModelDescription::numMoELayers() const {
  return count_if(layers,
                  [](const LayerDescription &layer) { return layer.isMoE(); });
}

double ModelDescription::numParameters() const {
  double total = 0;
  int64_t lastHidden = 0;
  for (const LayerDescription &layer : layers) {
    double hidden = layer.hidden;
    double attentionWidth = double(layer.numHeads) * layer.headDim;
    double kvWidth = double(layer.numKVHeads) * layer.headDim;
    // Query and output projections, key and value projections, two norms.
    total += 2 * hidden * attentionWidth + 2 * hidden * kvWidth + 2 * hidden;
    double matrices = layer.mlpMatrices();
    if (layer.isMoE())
      total +=
          hidden * layer.numExperts +
          layer.numExperts * matrices * hidden * layer.expertInter +
          layer.numSharedExperts * matrices * hidden * layer.sharedExpertInter;
    else
      total += matrices * hidden * layer.denseInter;
    lastHidden = layer.hidden;
  }
  // Embedding, final norm and LM head (not tied).
  return total + 2.0 * vocab * lastHidden + lastHidden;
}

llvm::Error moe::plan::validateModel(const ModelDescription &model) {
  auto fail = [&](const Twine &what) {
    return createStringError(
        inconvertibleErrorCode(),
        formatv("model '{0}': {1}", model.name, what.str()).str());
  };
  if (model.layers.empty())
    return fail("has no layers");
  if (model.vocab <= 0)
    return fail(formatv("vocab must be positive, got {0}", model.vocab));
  if (model.batch <= 0 || model.sequence <= 0)
    return fail(formatv("batch and sequence must be positive, got {0} x {1}",
                        model.batch, model.sequence));
  for (auto [index, layer] : enumerate(model.layers)) {
    auto layerError = [&, index = index](StringRef field, int64_t value,
                                         StringRef rule) {
      return fail(
          formatv("layer {0}: {1} {2}, got {3}", index, field, rule, value));
    };
    if (layer.hidden <= 0)
      return layerError("hidden", layer.hidden, "must be positive");
    if (layer.numHeads <= 0)
      return layerError("heads", layer.numHeads, "must be positive");
    if (layer.numKVHeads <= 0 || layer.numHeads % layer.numKVHeads != 0)
      return layerError(
          "kv_heads", layer.numKVHeads,
          formatv("must be positive and divide the {0} heads", layer.numHeads)
              .str());
    if (layer.headDim < 0)
      return layerError("head_dim", layer.headDim,
                        "must not be negative (0: no attention)");
    if (layer.kvCacheElementsPerToken < 0)
      return layerError("kv_cache_elements_per_token",
                        layer.kvCacheElementsPerToken, "must not be negative");
    if (!layer.isMoE()) {
      if (layer.denseInter <= 0)
        return layerError("dense_inter", layer.denseInter,
                          "must be positive in a dense layer");
      continue;
    }
    if (layer.numExperts <= 0)
      return layerError("experts", layer.numExperts,
                        "must be positive in an MoE layer");
    if (layer.topK <= 0 || layer.topK > layer.numExperts)
      return layerError(
          "top_k", layer.topK,
          formatv("must be 1 to the {0} experts", layer.numExperts).str());
    if (layer.expertInter <= 0)
      return layerError("expert_inter", layer.expertInter, "must be positive");
    if (layer.numSharedExperts < 0)
      return layerError("shared_experts", layer.numSharedExperts,
                        "must not be negative");
    if (layer.numSharedExperts > 0 && layer.sharedExpertInter <= 0)
      return layerError("shared_expert_inter", layer.sharedExpertInter,
                        "must be positive when there are shared experts");
  }
  return Error::success();
}

ModelDescription moe::plan::makeDeepSeekV3(int64_t batch, int64_t sequence) {
  LayerDescription attention;
  attention.hidden = 7168;
  attention.numHeads = 128;
  attention.numKVHeads = 128;
  // Multi-head latent attention is priced as multi-head attention with head
  // dimension hidden / heads = 56: 205M weights per layer against MLA's 187M
  // (q_lora_rank 1536, kv_lora_rank 512, qk_nope 128 + qk_rope 64, v 128).
  // What MLA caches per token is its compressed latent, kv_lora_rank +
  // qk_rope_head_dim = 576 elements, whole on every tensor-parallel rank.
  attention.headDim = 56;
  attention.kvCacheElementsPerToken = 576;

  LayerDescription dense = attention;
  dense.denseInter = 18432;
  LayerDescription moe = attention;
  moe.kind = LayerKind::MoE;
  moe.numExperts = 256;
  moe.topK = 8;
  moe.expertInter = 2048;
  moe.numSharedExperts = 1;
  moe.sharedExpertInter = 2048;

  ModelDescription model;
  model.name = "deepseek-v3";
  model.layers.assign(3, dense);
  model.layers.insert(model.layers.end(), 58, moe);
  model.vocab = 129280;
  model.dtype = DataType::BF16;
  model.batch = batch;
  model.sequence = sequence;
  return model;
}

ModelDescription moe::plan::makeMixtral8x7B(int64_t batch, int64_t sequence) {
  LayerDescription moe;
  moe.kind = LayerKind::MoE;
  moe.hidden = 4096;
  moe.numHeads = 32;
  moe.numKVHeads = 8;
  moe.headDim = 128;
  moe.numExperts = 8;
  moe.topK = 2;
  moe.expertInter = 14336;

  ModelDescription model;
  model.name = "mixtral-8x7b";
  model.layers.assign(32, moe);
  model.vocab = 32000;
  model.dtype = DataType::BF16;
  model.batch = batch;
  model.sequence = sequence;
  return model;
}
