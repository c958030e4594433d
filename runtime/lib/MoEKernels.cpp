//===- MoEKernels.cpp - Mixture-of-Experts kernels ------------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// router, dispatch, expert_ffn, combine and ffn as moe-decompose-layers
// produces them, and layer, which chains the same code. The numpy reference
// tools/reference/moe_reference.py settles the details MoEOps.td leaves
// open: group ratings include the correction bias, geglu uses the erf GELU,
// routing weights are computed before capacity drops and not renormalised
// after them, and capacity padding rows of expert_ffn stay zero.
//
//===----------------------------------------------------------------------===//

#include "ExpertMatrices.h"
#include "KernelSupport.h"

#include <algorithm>
#include <iterator>
#include <limits>

using namespace moe::rt;
using namespace moe::rt::detail;

namespace {

//===----------------------------------------------------------------------===//
// Feed-forward blocks
//===----------------------------------------------------------------------===//

enum class Activation { Relu, Gelu, GeluTanh, Silu, SwiGLU, GeGLU, Identity };

Status parseActivation(const char *op, const Attributes &attrs,
                       Activation &activation) {
  std::string name;
  if (Status status = requireString(op, attrs, "activation", name); !status)
    return status;
  static const std::pair<const char *, Activation> names[] = {
      {"relu", Activation::Relu},          {"gelu", Activation::Gelu},
      {"gelu_tanh", Activation::GeluTanh}, {"silu", Activation::Silu},
      {"swiglu", Activation::SwiGLU},      {"geglu", Activation::GeGLU},
      {"identity", Activation::Identity}};
  for (const auto &[text, value] : names) {
    if (name == text) {
      activation = value;
      return Status::success();
    }
  }
  return fail(op, "unknown activation '", name,
              "'; expected relu, gelu, gelu_tanh, silu, swiglu, geglu or "
              "identity");
}

bool isGated(Activation activation) {
  return activation == Activation::SwiGLU || activation == Activation::GeGLU;
}

/// The non-linearity of `activation`; gated ones apply it to the gate
/// projection only.
float activate(Activation activation, float x) {
  switch (activation) {
  case Activation::Relu:
    return x < 0.0f ? 0.0f : x;
  case Activation::Gelu:
  case Activation::GeGLU:
    return geluErf(x);
  case Activation::GeluTanh:
    return geluTanh(x);
  case Activation::Silu:
  case Activation::SwiGLU:
    return silu(x);
  case Activation::Identity:
    break;
  }
  return x;
}

/// The operands of one feed-forward block, or of a group of them with a
/// leading expert dimension. Absent optional operands are nullptr.
struct FFNOperands {
  const Tensor *gate = nullptr, *up = nullptr, *down = nullptr;
  const Tensor *gateBias = nullptr, *upBias = nullptr, *downBias = nullptr;
};

/// Checks the biases of FFN operands ([lead..., inter] or [lead...,
/// hidden]); `lead` is [experts] or empty for a single block.
Status checkBiases(const char *op, const FFNOperands &ffn, const Shape &lead,
                   int64_t hidden, int64_t inter, const std::string &prefix) {
  auto withLead = [&](int64_t dim) {
    Shape shape = lead;
    shape.push_back(dim);
    return shape;
  };
  std::pair<const Tensor *, Shape> expected[] = {
      {ffn.gateBias, withLead(inter)},
      {ffn.upBias, withLead(inter)},
      {ffn.downBias, withLead(hidden)}};
  const char *names[] = {"gate_bias", "up_bias", "down_bias"};
  for (size_t i = 0; i < std::size(expected); ++i) {
    const Tensor *tensor = expected[i].first;
    if (!tensor)
      continue;
    if (Status status = expectDType(op, prefix + names[i], *tensor, DType::F32);
        !status)
      return status;
    if (Status status =
            expectShape(op, prefix + names[i], *tensor, expected[i].second);
        !status)
      return status;
  }
  return Status::success();
}

/// Checks FFN operands: `experts` >= 0 for the grouped layout
/// ([experts, hidden, inter] and so on), -1 for a single block. Names in
/// messages get `prefix` ("shared_"). Sets `inter`.
Status checkFFN(const char *op, const FFNOperands &ffn, Activation activation,
                int64_t experts, int64_t hidden, const std::string &prefix,
                int64_t &inter) {
  bool gated = isGated(activation);
  if (gated != (ffn.gate != nullptr))
    return fail(op,
                gated ? "a gated activation needs a "
                      : "an ungated activation takes no ",
                prefix, "gate_weight");
  if (ffn.gateBias && !gated)
    return fail(op, "a gate bias needs a gated activation");
  Shape lead;
  if (experts >= 0)
    lead.push_back(experts);
  const Tensor &up = *ffn.up;
  if (up.rank() != static_cast<int64_t>(lead.size()) + 2)
    return fail(op, prefix, "up_weight has shape ", formatShape(up.shape()),
                "; expected ", experts >= 0 ? "[experts, " : "[",
                "hidden, inter]");
  inter = up.shape().back();
  auto withLead = [&](std::initializer_list<int64_t> dims) {
    Shape shape = lead;
    shape.insert(shape.end(), dims);
    return shape;
  };
  std::pair<const Tensor *, Shape> expected[] = {
      {ffn.gate, withLead({hidden, inter})},
      {ffn.up, withLead({hidden, inter})},
      {ffn.down, withLead({inter, hidden})}};
  const char *names[] = {"gate_weight", "up_weight", "down_weight"};
  for (size_t i = 0; i < std::size(expected); ++i) {
    const Tensor *tensor = expected[i].first;
    if (!tensor)
      continue;
    if (Status status = expectDType(op, prefix + names[i], *tensor, DType::F32);
        !status)
      return status;
    if (Status status =
            expectShape(op, prefix + names[i], *tensor, expected[i].second);
        !status)
      return status;
  }
  return checkBiases(op, ffn, lead, hidden, inter, prefix);
}

/// The weight matrices of FFNOperands, as runFFN multiplies by them.
struct FFNWeights {
  ExpertMatrices gate, up, down;
  const Tensor *gateBias = nullptr, *upBias = nullptr, *downBias = nullptr;

  /// The (checked) tensors of `ffn`, read in place.
  static FFNWeights of(const FFNOperands &ffn) {
    FFNWeights weights;
    if (ffn.gate)
      weights.gate = ExpertMatrices::contiguous(*ffn.gate);
    weights.up = ExpertMatrices::contiguous(*ffn.up);
    weights.down = ExpertMatrices::contiguous(*ffn.down);
    weights.gateBias = ffn.gateBias;
    weights.upBias = ffn.upBias;
    weights.downBias = ffn.downBias;
    return weights;
  }
};

/// Scratch space for the intermediate activations, reused across experts.
struct FFNScratch {
  std::vector<float> up, gate;
};

/// `y = ffn(x)` on `rows` contiguous rows of `hidden`, using expert
/// `expert` of grouped operands (0 for a single block).
Status runFFN(const char *op, const FFNWeights &ffn, Activation activation,
              int64_t expert, int64_t hidden, int64_t inter, const float *x,
              int64_t rows, float *y, FFNScratch &scratch,
              WorkerPool *pool = nullptr) {
  if (rows == 0)
    return Status::success();
  auto vector = [&](const Tensor *tensor, int64_t size) {
    return tensor ? tensor->as<float>() + expert * size : nullptr;
  };
  auto addBias = [](float *values, int64_t rows, int64_t cols,
                    const float *bias) {
    if (!bias)
      return;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        values[r * cols + c] += bias[c];
  };

  scratch.up.resize(rows * inter);
  float *h = scratch.up.data();
  ExpertMatrices gateAndUp;
  if (isGated(activation) &&
      ExpertMatrices::interleaved(ffn.gate, ffn.up, gateAndUp)) {
    // One pass over the whole matrix, then the rows' halves apart.
    scratch.gate.resize(2 * rows * inter);
    float *both = scratch.gate.data();
    if (Status status = gateAndUp.multiply(op, expert, x, rows, both, pool);
        !status)
      return status;
    for (int64_t i = 0; i < rows * inter; ++i)
      h[i] = both[2 * i + 1];
    for (int64_t i = 0; i < rows * inter; ++i)
      both[i] = both[2 * i];
  } else {
    if (Status status = ffn.up.multiply(op, expert, x, rows, h, pool); !status)
      return status;
  }
  addBias(h, rows, inter, vector(ffn.upBias, inter));
  if (isGated(activation)) {
    scratch.gate.resize(rows * inter);
    float *g = scratch.gate.data();
    if (!gateAndUp.data) {
      if (Status status = ffn.gate.multiply(op, expert, x, rows, g, pool);
          !status)
        return status;
    }
    addBias(g, rows, inter, vector(ffn.gateBias, inter));
    if (activation == Activation::SwiGLU) {
      multiplyBySiluOf(h, g, rows * inter);
    } else {
      for (int64_t i = 0; i < rows * inter; ++i)
        h[i] *= activate(activation, g[i]);
    }
  } else {
    for (int64_t i = 0; i < rows * inter; ++i)
      h[i] = activate(activation, h[i]);
  }
  if (Status status = ffn.down.multiply(op, expert, h, rows, y, pool); !status)
    return status;
  addBias(y, rows, hidden, vector(ffn.downBias, hidden));
  return Status::success();
}

/// Runs expert e's FFN on its group of `rows` ([numRows, hidden]): groups
/// are contiguous in expert order (capacity < 0) or `capacity` rows apart.
/// Rows outside every group (capacity padding) are zero in `out`.
Status runExperts(const char *op, const FFNWeights &ffn, Activation activation,
                  const std::vector<int64_t> &counts, int64_t capacity,
                  int64_t hidden, int64_t inter, const float *rows,
                  int64_t numRows, float *out, WorkerPool *pool = nullptr) {
  int64_t limit = capacity >= 0 ? capacity : numRows;
  int64_t total = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] < 0 || counts[e] > limit)
      return fail(op, "count ", counts[e], " of expert ", e,
                  " is out of range [0, ", limit, "]");
    total += counts[e];
  }
  if (capacity < 0 && total > numRows)
    return fail(op, "counts add up to ", total, " rows but there are only ",
                numRows);
  std::fill(out, out + numRows * hidden, 0.0f);
  FFNScratch scratch;
  int64_t start = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (capacity >= 0)
      start = static_cast<int64_t>(e) * capacity;
    if (Status status =
            runFFN(op, ffn, activation, e, hidden, inter, rows + start * hidden,
                   counts[e], out + start * hidden, scratch, pool);
        !status)
      return status;
    start += counts[e];
  }
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

struct RouterConfig {
  int64_t topK = 0;
  bool sigmoidScore = false;
  bool normalize = false;
  int64_t numGroups = 1;
  int64_t topKGroups = 1;
  float routedScalingFactor = 1.0f;
};

/// Reads the router attributes and checks them against the router operands.
Status checkRouter(const char *op, const Attributes &attrs, const Tensor &input,
                   const Tensor &routerWeight, const Tensor *routerBias,
                   const Tensor *correctionBias, RouterConfig &config) {
  std::string score;
  if (Status status = requireInt(op, attrs, "top_k", config.topK); !status)
    return status;
  if (Status status = requireString(op, attrs, "score", score); !status)
    return status;
  if (score != "softmax" && score != "sigmoid")
    return fail(op, "unknown score '", score, "'; expected softmax or sigmoid");
  config.sigmoidScore = score == "sigmoid";
  config.normalize = attrs.getInt("normalize");
  config.numGroups = attrs.getInt("num_groups", 1);
  config.topKGroups = attrs.getInt("top_k_groups", 1);
  double scaling = attrs.getFloat("routed_scaling_factor", 1.0);
  config.routedScalingFactor = static_cast<float>(scaling);

  if (input.rank() != 2)
    return fail(op, "input must be [tokens, hidden], got ",
                formatShape(input.shape()));
  if (routerWeight.rank() != 2 || routerWeight.dim(0) != input.dim(1))
    return fail(op, "router_weight has shape ",
                formatShape(routerWeight.shape()),
                "; expected [hidden, experts] with hidden = ", input.dim(1));
  int64_t experts = routerWeight.dim(1);
  std::pair<const char *, const Tensor *> operands[] = {
      {"input", &input},
      {"router_weight", &routerWeight},
      {"router_bias", routerBias},
      {"correction_bias", correctionBias}};
  for (auto [name, tensor] : operands) {
    if (!tensor)
      continue;
    if (Status status = expectDType(op, name, *tensor, DType::F32); !status)
      return status;
  }
  for (auto [name, tensor] : {operands[2], operands[3]}) {
    if (!tensor)
      continue;
    if (Status status = expectShape(op, name, *tensor, {experts}); !status)
      return status;
  }
  if (config.topK < 1 || config.topK > experts)
    return fail(op, "top_k = ", config.topK, " must be in [1, ", experts, "]");
  if (config.numGroups < 1 || experts % config.numGroups != 0)
    return fail(op, "num_groups = ", config.numGroups,
                " must be positive and divide the ", experts, " experts");
  if (config.topKGroups < 1 || config.topKGroups > config.numGroups)
    return fail(op, "top_k_groups = ", config.topKGroups, " must be in [1, ",
                config.numGroups, "]");
  if (config.topK > config.topKGroups * (experts / config.numGroups))
    return fail(op, "top_k = ", config.topK,
                " exceeds the experts in the selected groups");
  if (!(scaling > 0.0))
    return fail(op, "routed_scaling_factor ", scaling, " must be positive");
  return Status::success();
}

/// Whether candidate `a` (value `va`) is preferred to `b` (value `vb`):
/// higher first, ties to the lower index, NaN last (as the reference's
/// stable argsort).
bool prefer(float va, int64_t a, float vb, int64_t b) {
  if (std::isnan(va) || std::isnan(vb))
    return std::isnan(vb) && (!std::isnan(va) || a < b);
  return va > vb || (va == vb && a < b);
}

/// The `k` best of `candidates` by `values`, best first.
void selectBest(const float *values, std::vector<int64_t> &candidates,
                int64_t k) {
  std::partial_sort(
      candidates.begin(), candidates.begin() + k, candidates.end(),
      [&](int64_t a, int64_t b) { return prefer(values[a], a, values[b], b); });
  candidates.resize(k);
}

/// Steps 1 to 3 of moe.layer for every token: `weights` and `selected` are
/// [tokens, top_k], best first.
Status route(const char *op, const RouterConfig &config, const Tensor &input,
             const Tensor &routerWeight, const Tensor *routerBias,
             const Tensor *correctionBias, std::vector<float> &weights,
             std::vector<int64_t> &selected) {
  int64_t tokens = input.dim(0), hidden = input.dim(1);
  int64_t experts = routerWeight.dim(1), topK = config.topK;
  std::vector<float> scores(tokens * experts);
  if (Status status = sgemm(op, false, false, tokens, experts, hidden, 1.0f,
                            input.as<float>(), hidden, routerWeight.as<float>(),
                            experts, 0.0f, scores.data(), experts);
      !status)
    return status;

  weights.resize(tokens * topK);
  selected.resize(tokens * topK);
  int64_t groupSize = experts / config.numGroups;
  std::vector<float> choice(experts), ratings(config.numGroups);
  std::vector<int64_t> candidates, groups, members;
  for (int64_t t = 0; t < tokens; ++t) {
    float *score = scores.data() + t * experts;
    if (routerBias) {
      for (int64_t e = 0; e < experts; ++e)
        score[e] += routerBias->as<float>()[e];
    }
    if (config.sigmoidScore) {
      for (int64_t e = 0; e < experts; ++e)
        score[e] = sigmoid(score[e]);
    } else {
      float maximum = *std::max_element(score, score + experts);
      float sum = 0.0f;
      for (int64_t e = 0; e < experts; ++e) {
        score[e] = std::exp(score[e] - maximum);
        sum += score[e];
      }
      for (int64_t e = 0; e < experts; ++e)
        score[e] /= sum;
    }

    // The correction bias steers selection only; weights use plain scores.
    for (int64_t e = 0; e < experts; ++e)
      choice[e] =
          score[e] + (correctionBias ? correctionBias->as<float>()[e] : 0.0f);

    candidates.clear();
    if (config.numGroups > 1) {
      // Rate each group by the sum of its two best choices and let only the
      // best top_k_groups groups compete.
      for (int64_t g = 0; g < config.numGroups; ++g) {
        members.resize(groupSize);
        for (int64_t i = 0; i < groupSize; ++i)
          members[i] = g * groupSize + i;
        selectBest(choice.data(), members, std::min<int64_t>(2, groupSize));
        ratings[g] = 0.0f;
        for (int64_t member : members)
          ratings[g] += choice[member];
      }
      groups.resize(config.numGroups);
      for (int64_t g = 0; g < config.numGroups; ++g)
        groups[g] = g;
      selectBest(ratings.data(), groups, config.topKGroups);
      std::sort(groups.begin(), groups.end());
      for (int64_t g : groups)
        for (int64_t i = 0; i < groupSize; ++i)
          candidates.push_back(g * groupSize + i);
    } else {
      for (int64_t e = 0; e < experts; ++e)
        candidates.push_back(e);
    }
    selectBest(choice.data(), candidates, topK);

    float *weight = weights.data() + t * topK;
    float sum = 0.0f;
    for (int64_t j = 0; j < topK; ++j) {
      selected[t * topK + j] = candidates[j];
      weight[j] = score[candidates[j]];
      sum += weight[j];
    }
    for (int64_t j = 0; j < topK; ++j) {
      if (config.normalize)
        weight[j] /= sum;
      weight[j] *= config.routedScalingFactor;
    }
  }
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Dispatch and combine
//===----------------------------------------------------------------------===//

} // namespace

/// Orders the (token, slot) pairs of `selected` ([tokens, top_k]) by expert,
/// stably (a counting sort): `sources[r]` is the pair of row r, -1 for
/// capacity padding. With capacity >= 0 expert e owns rows [e*C, (e+1)*C)
/// and keeps its earliest pairs.
Status moe::rt::detail::planDispatch(const char *op,
                                     const std::vector<int64_t> &selected,
                                     int64_t numExperts, int64_t capacity,
                                     std::vector<int64_t> &counts,
                                     std::vector<int64_t> &sources) {
  counts.assign(numExperts, 0);
  for (int64_t expert : selected) {
    if (expert < 0 || expert >= numExperts)
      return fail(op, "expert index ", expert, " is out of range for ",
                  numExperts, " experts");
    ++counts[expert];
  }
  int64_t pairs = static_cast<int64_t>(selected.size());
  std::vector<int64_t> next(numExperts);
  if (capacity < 0) {
    sources.resize(pairs);
    for (int64_t e = 1; e < numExperts; ++e)
      next[e] = next[e - 1] + counts[e - 1];
  } else {
    sources.assign(numExperts * capacity, -1);
    for (int64_t e = 0; e < numExperts; ++e) {
      next[e] = e * capacity;
      counts[e] = std::min(counts[e], capacity);
    }
  }
  for (int64_t pair = 0; pair < pairs; ++pair) {
    int64_t expert = selected[pair];
    if (capacity < 0 || next[expert] < (expert + 1) * capacity)
      sources[next[expert]++] = pair;
  }
  return Status::success();
}

namespace {

/// `result[t] = sum_j weights[t, j] * expertOut[r]` over rows r with
/// `sources[r] = t * topK + j`; rows with source -1 are padding.
Status combineRows(const char *op, const float *expertOut, int64_t hidden,
                   const std::vector<int64_t> &sources, const float *weights,
                   int64_t tokens, int64_t topK, float *result) {
  std::fill(result, result + tokens * hidden, 0.0f);
  for (size_t r = 0; r < sources.size(); ++r) {
    int64_t source = sources[r];
    if (source == -1)
      continue;
    if (source < -1 || source >= tokens * topK)
      return fail(op, "source ", source, " of row ", r, " is out of range for ",
                  tokens, " tokens of top_k ", topK);
    float weight = weights[source];
    const float *row = expertOut + r * hidden;
    float *target = result + (source / topK) * hidden;
    for (int64_t i = 0; i < hidden; ++i)
      target[i] += weight * row[i];
  }
  return Status::success();
}

std::vector<int64_t> loadIndices(const Tensor &tensor) {
  std::vector<int64_t> values(tensor.numElements());
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = loadIndex(tensor, i);
  return values;
}

/// The optional `capacity` attribute; -1 when absent (dropless). `experts`
/// blocks of it must be addressable.
Status readCapacity(const char *op, const Attributes &attrs, int64_t experts,
                    int64_t &capacity) {
  capacity = -1;
  if (!attrs.ints.count("capacity"))
    return Status::success();
  capacity = attrs.getInt("capacity");
  if (capacity < 1)
    return fail(op, "capacity = ", capacity, " must be positive");
  if (experts > 0 && capacity > std::numeric_limits<int64_t>::max() / experts)
    return fail(op, "capacity = ", capacity, " is too large for ", experts,
                " experts");
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

Status routerKernel(const Attributes &attrs,
                    const std::vector<const Tensor *> &inputs,
                    const std::vector<Tensor *> &outputs,
                    KernelContext &context) {
  const char *op = "router";
  if (Status status = checkCall(
          op, inputs,
          {"input", "router_weight", "router_bias?", "correction_bias?"},
          outputs, 2);
      !status)
    return status;
  RouterConfig config;
  if (Status status =
          checkRouter(op, attrs, *inputs[0], *inputs[1], operand(inputs, 2),
                      operand(inputs, 3), config);
      !status)
    return status;
  Tensor &weights = *outputs[0];
  Tensor &experts = *outputs[1];
  Shape expected = {inputs[0]->dim(0), config.topK};
  if (Status status = expectShape(op, "weights", weights, expected); !status)
    return status;
  if (Status status = expectShape(op, "experts", experts, expected); !status)
    return status;
  if (Status status = expectDType(op, "weights", weights, DType::F32); !status)
    return status;
  if (Status status = expectIndexDType(op, "experts", experts); !status)
    return status;
  std::vector<float> routingWeights;
  std::vector<int64_t> selected;
  if (Status status =
          route(op, config, *inputs[0], *inputs[1], operand(inputs, 2),
                operand(inputs, 3), routingWeights, selected);
      !status)
    return status;
  std::copy(routingWeights.begin(), routingWeights.end(), weights.as<float>());
  for (size_t i = 0; i < selected.size(); ++i)
    storeIndex(experts, i, selected[i]);
  return Status::success();
}

Status dispatchKernel(const Attributes &attrs,
                      const std::vector<const Tensor *> &inputs,
                      const std::vector<Tensor *> &outputs,
                      KernelContext &context) {
  const char *op = "dispatch";
  if (Status status = checkCall(op, inputs, {"input", "experts"}, outputs, 3);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  const Tensor &experts = *inputs[1];
  Tensor &rows = *outputs[0];
  Tensor &counts = *outputs[1];
  Tensor &sources = *outputs[2];
  int64_t numExperts, capacity;
  if (Status status = requireInt(op, attrs, "num_experts", numExperts); !status)
    return status;
  if (numExperts < 1)
    return fail(op, "num_experts = ", numExperts, " must be positive");
  if (Status status = readCapacity(op, attrs, numExperts, capacity); !status)
    return status;
  if (input.rank() != 2)
    return fail(op, "input must be [tokens, hidden], got ",
                formatShape(input.shape()));
  if (Status status = expectIndexDType(op, "experts", experts); !status)
    return status;
  if (experts.rank() != 2 || experts.dim(0) != input.dim(0))
    return fail(op, "experts has shape ", formatShape(experts.shape()),
                "; expected [tokens, top_k] with tokens = ", input.dim(0));
  int64_t numRows =
      capacity < 0 ? experts.numElements() : numExperts * capacity;
  int64_t hidden = input.dim(1);
  if (Status status = expectShape(op, "rows", rows, {numRows, hidden}); !status)
    return status;
  if (Status status = expectDType(op, "rows", rows, input.dtype()); !status)
    return status;
  if (Status status = expectShape(op, "counts", counts, {numExperts}); !status)
    return status;
  if (Status status = expectShape(op, "sources", sources, {numRows}); !status)
    return status;
  if (Status status = expectIndexDType(op, "counts", counts); !status)
    return status;
  if (Status status = expectIndexDType(op, "sources", sources); !status)
    return status;

  std::vector<int64_t> rowCounts, rowSources;
  if (Status status = planDispatch(op, loadIndices(experts), numExperts,
                                   capacity, rowCounts, rowSources);
      !status)
    return status;
  int64_t topK = experts.dim(1);
  size_t rowBytes = hidden * dtypeSize(input.dtype());
  const auto *source = static_cast<const uint8_t *>(input.data());
  auto *target = static_cast<uint8_t *>(rows.data());
  for (int64_t r = 0; r < numRows; ++r) {
    if (rowSources[r] < 0)
      std::memset(target + r * rowBytes, 0, rowBytes);
    else
      std::memcpy(target + r * rowBytes,
                  source + (rowSources[r] / topK) * rowBytes, rowBytes);
    storeIndex(sources, r, rowSources[r]);
  }
  for (int64_t e = 0; e < numExperts; ++e)
    storeIndex(counts, e, rowCounts[e]);
  return Status::success();
}

/// expert_ffn: with `prepared`, the weights are the executor's (inputs 2 to
/// 4 are then absent); otherwise they are inputs 2 to 4.
Status expertFFN(const Attributes &attrs,
                 const std::vector<const Tensor *> &inputs,
                 const PreparedExpertWeights *prepared,
                 const std::vector<Tensor *> &outputs, KernelContext &context) {
  const char *op = "expert_ffn";
  if (Status status = checkCall(op, inputs,
                                {"rows", "counts", "gate_weight?",
                                 prepared ? "up_weight?" : "up_weight",
                                 prepared ? "down_weight?" : "down_weight",
                                 "gate_bias?", "up_bias?", "down_bias?"},
                                outputs, 1);
      !status)
    return status;
  const Tensor &rows = *inputs[0];
  const Tensor &counts = *inputs[1];
  Tensor &result = *outputs[0];
  Activation activation;
  int64_t capacity;
  if (Status status = parseActivation(op, attrs, activation); !status)
    return status;
  if (Status status = expectDType(op, "rows", rows, DType::F32); !status)
    return status;
  if (rows.rank() != 2)
    return fail(op, "rows must be [rows, hidden], got ",
                formatShape(rows.shape()));
  if (Status status = expectIndexDType(op, "counts", counts); !status)
    return status;
  if (counts.rank() != 1)
    return fail(op, "counts must be 1-D, got ", formatShape(counts.shape()));
  int64_t experts = counts.dim(0), hidden = rows.dim(1), inter;
  if (Status status = readCapacity(op, attrs, experts, capacity); !status)
    return status;
  FFNWeights weights;
  if (prepared) {
    // The executor built these views from the operands' declared types, so
    // only the dimensions that the rows and counts fix are left to check.
    inter = prepared->up.n;
    if (isGated(activation) != prepared->gated)
      return fail(op, "internal error: prepared gate does not match the ",
                  "activation");
    std::pair<const ExpertMatrices *, Shape> expected[] = {
        {prepared->gated ? &prepared->gate : nullptr, {experts, hidden, inter}},
        {&prepared->up, {experts, hidden, inter}},
        {&prepared->down, {experts, inter, hidden}}};
    const char *names[] = {"gate_weight", "up_weight", "down_weight"};
    for (size_t i = 0; i < std::size(expected); ++i)
      if (expected[i].first && expected[i].first->shape() != expected[i].second)
        return fail(op, names[i], " has shape ",
                    formatShape(expected[i].first->shape()), "; expected ",
                    formatShape(expected[i].second));
    FFNOperands biases{nullptr,
                       nullptr,
                       nullptr,
                       operand(inputs, 5),
                       operand(inputs, 6),
                       operand(inputs, 7)};
    if (biases.gateBias && !prepared->gated)
      return fail(op, "a gate bias needs a gated activation");
    if (Status status = checkBiases(op, biases, {experts}, hidden, inter, "");
        !status)
      return status;
    weights.gate = prepared->gate;
    weights.up = prepared->up;
    weights.down = prepared->down;
    weights.gateBias = biases.gateBias;
    weights.upBias = biases.upBias;
    weights.downBias = biases.downBias;
  } else {
    FFNOperands ffn{operand(inputs, 2), inputs[3],          inputs[4],
                    operand(inputs, 5), operand(inputs, 6), operand(inputs, 7)};
    if (Status status =
            checkFFN(op, ffn, activation, experts, hidden, "", inter);
        !status)
      return status;
    weights = FFNWeights::of(ffn);
  }
  if (capacity >= 0 && rows.dim(0) != experts * capacity)
    return fail(op, "rows has ", rows.dim(0), " rows; expected experts * ",
                "capacity = ", experts * capacity);
  if (Status status = expectShape(op, "result", result, rows.shape()); !status)
    return status;
  if (Status status = expectDType(op, "result", result, DType::F32); !status)
    return status;
  return runExperts(op, weights, activation, loadIndices(counts), capacity,
                    hidden, inter, rows.as<float>(), rows.dim(0),
                    result.as<float>(), context.pool);
}

Status expertFFNKernel(const Attributes &attrs,
                       const std::vector<const Tensor *> &inputs,
                       const std::vector<Tensor *> &outputs,
                       KernelContext &context) {
  return expertFFN(attrs, inputs, nullptr, outputs, context);
}

/// The `index`-th `bits`-bit code of a row packed least significant first.
uint32_t unpackCode(const uint8_t *packed, int64_t index, int64_t bits) {
  int64_t perByte = 8 / bits;
  return (packed[index / perByte] >> ((index % perByte) * bits)) &
         ((1u << bits) - 1);
}

Status dequantizeKernel(const Attributes &attrs,
                        const std::vector<const Tensor *> &inputs,
                        const std::vector<Tensor *> &outputs,
                        KernelContext &context) {
  const char *op = "dequantize";
  if (Status status = checkCall(op, inputs, {"codes", "scales", "zero_points?"},
                                outputs, 1);
      !status)
    return status;
  const Tensor &codes = *inputs[0];
  const Tensor &scales = *inputs[1];
  // A trailing optional operand may be left out of the list entirely.
  const Tensor *zeroPoints = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor &result = *outputs[0];
  int64_t bits = attrs.getInt("bits");
  int64_t blockSize = attrs.getInt("block_size", 0);
  if (bits != 2 && bits != 4 && bits != 8)
    return fail(op, "bits = ", bits, " must be 2, 4 or 8");
  if (Status status = expectDType(op, "codes", codes, DType::U8); !status)
    return status;
  if (Status status = expectDType(op, "scales", scales, DType::F32); !status)
    return status;
  if (Status status = expectDType(op, "result", result, DType::F32); !status)
    return status;
  if (result.rank() != 3 || codes.rank() != 3)
    return fail(op, "codes and result must be [experts, rows, columns]");
  int64_t experts = result.dim(0), rows = result.dim(1),
          columns = result.dim(2);
  auto packed = [&](int64_t count) { return (count * bits + 7) / 8; };
  if (Status status =
          expectShape(op, "codes", codes, {experts, rows, packed(columns)});
      !status)
    return status;
  int64_t blocks = 1;
  if (blockSize > 0) {
    if (columns % blockSize != 0)
      return fail(op, "block_size ", blockSize, " does not divide ", columns,
                  " columns");
    blocks = columns / blockSize;
    if (Status status =
            expectShape(op, "scales", scales, {experts, rows, blocks});
        !status)
      return status;
  } else if (Status status = expectShape(op, "scales", scales, {experts, rows});
             !status) {
    return status;
  }
  if (zeroPoints) {
    if (Status status = expectDType(op, "zero_points", *zeroPoints, DType::U8);
        !status)
      return status;
    Shape expected = blockSize > 0 ? Shape{experts, rows, packed(blocks)}
                                   : Shape{experts, packed(rows)};
    if (Status status = expectShape(op, "zero_points", *zeroPoints, expected);
        !status)
      return status;
  }
  const uint8_t *code = codes.as<uint8_t>();
  const float *scale = scales.as<float>();
  float *w = result.as<float>();
  int64_t rowBytes = packed(columns);
  const float symmetric = static_cast<float>(1 << (bits - 1));
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t n = 0; n < rows; ++n) {
      const uint8_t *row = code + (e * rows + n) * rowBytes;
      float *out = w + (e * rows + n) * columns;
      for (int64_t k = 0; k < columns; ++k) {
        int64_t block = blockSize > 0 ? k / blockSize : 0;
        float rowScale = blockSize > 0 ? scale[(e * rows + n) * blocks + block]
                                       : scale[e * rows + n];
        float zero = symmetric;
        if (zeroPoints && blockSize > 0)
          zero = static_cast<float>(unpackCode(
              zeroPoints->as<uint8_t>() + (e * rows + n) * packed(blocks),
              block, bits));
        else if (zeroPoints)
          zero = static_cast<float>(unpackCode(
              zeroPoints->as<uint8_t>() + e * packed(rows), n, bits));
        out[k] =
            (static_cast<float>(unpackCode(row, k, bits)) - zero) * rowScale;
      }
    }
  }
  return Status::success();
}

Status combineKernel(const Attributes &attrs,
                     const std::vector<const Tensor *> &inputs,
                     const std::vector<Tensor *> &outputs,
                     KernelContext &context) {
  const char *op = "combine";
  if (Status status = checkCall(
          op, inputs, {"expert_out", "sources", "weights"}, outputs, 1);
      !status)
    return status;
  const Tensor &expertOut = *inputs[0];
  const Tensor &sources = *inputs[1];
  const Tensor &weights = *inputs[2];
  Tensor &result = *outputs[0];
  for (auto [name, tensor] :
       {std::pair<const char *, const Tensor *>{"expert_out", &expertOut},
        {"weights", &weights},
        {"result", &result}}) {
    if (Status status = expectDType(op, name, *tensor, DType::F32); !status)
      return status;
  }
  if (expertOut.rank() != 2)
    return fail(op, "expert_out must be [rows, hidden], got ",
                formatShape(expertOut.shape()));
  if (weights.rank() != 2)
    return fail(op, "weights must be [tokens, top_k], got ",
                formatShape(weights.shape()));
  if (Status status = expectIndexDType(op, "sources", sources); !status)
    return status;
  if (Status status = expectShape(op, "sources", sources, {expertOut.dim(0)});
      !status)
    return status;
  if (Status status =
          expectShape(op, "result", result, {weights.dim(0), expertOut.dim(1)});
      !status)
    return status;
  return combineRows(op, expertOut.as<float>(), expertOut.dim(1),
                     loadIndices(sources), weights.as<float>(), weights.dim(0),
                     weights.dim(1), result.as<float>());
}

Status ffnKernel(const Attributes &attrs,
                 const std::vector<const Tensor *> &inputs,
                 const std::vector<Tensor *> &outputs, KernelContext &context) {
  const char *op = "ffn";
  if (Status status =
          checkCall(op, inputs,
                    {"input", "gate_weight?", "up_weight", "down_weight",
                     "gate_bias?", "up_bias?", "down_bias?"},
                    outputs, 1);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  Activation activation;
  if (Status status = parseActivation(op, attrs, activation); !status)
    return status;
  if (Status status = expectDType(op, "input", input, DType::F32); !status)
    return status;
  if (input.rank() == 0)
    return fail(op, "input must be [..., hidden], not a scalar");
  int64_t hidden = input.shape().back(), inter;
  FFNOperands ffn{operand(inputs, 1), inputs[2],          inputs[3],
                  operand(inputs, 4), operand(inputs, 5), operand(inputs, 6)};
  if (Status status = checkFFN(op, ffn, activation, -1, hidden, "", inter);
      !status)
    return status;
  if (Status status = expectShape(op, "result", result, input.shape()); !status)
    return status;
  if (Status status = expectDType(op, "result", result, DType::F32); !status)
    return status;
  FFNScratch scratch;
  int64_t rows = hidden == 0 ? 0 : input.numElements() / hidden;
  return runFFN(op, FFNWeights::of(ffn), activation, 0, hidden, inter,
                input.as<float>(), rows, result.as<float>(), scratch);
}

Status layerKernel(const Attributes &attrs,
                   const std::vector<const Tensor *> &inputs,
                   const std::vector<Tensor *> &outputs,
                   KernelContext &context) {
  const char *op = "layer";
  if (Status status = checkCall(
          op, inputs,
          {"input", "router_weight", "router_bias?", "correction_bias?",
           "gate_weight?", "up_weight", "down_weight", "gate_bias?", "up_bias?",
           "down_bias?", "shared_gate_weight?", "shared_up_weight?",
           "shared_down_weight?", "shared_expert_gate_weight?"},
          outputs, 1);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  const Tensor &routerWeight = *inputs[1];
  const Tensor *routerBias = operand(inputs, 2);
  const Tensor *correctionBias = operand(inputs, 3);
  const Tensor *sharedExpertGate = operand(inputs, 13);
  Tensor &result = *outputs[0];

  RouterConfig config;
  Activation activation;
  if (Status status = checkRouter(op, attrs, input, routerWeight, routerBias,
                                  correctionBias, config);
      !status)
    return status;
  if (Status status = parseActivation(op, attrs, activation); !status)
    return status;
  int64_t tokens = input.dim(0), hidden = input.dim(1);
  int64_t experts = routerWeight.dim(1), topK = config.topK;
  int64_t capacity = -1;
  if (attrs.floats.count("capacity_factor")) {
    double factor = attrs.getFloat("capacity_factor");
    if (!(factor > 0.0))
      return fail(op, "capacity_factor ", factor, " must be positive");
    // The reference's order of operations, so that the ceiling agrees. An
    // expert gets at most one pair per token, so capping the capacity at
    // `tokens` changes nothing but keeps a huge factor from overflowing.
    double wanted =
        std::ceil(factor * static_cast<double>(tokens) * topK / experts);
    capacity = wanted < static_cast<double>(tokens)
                   ? static_cast<int64_t>(wanted)
                   : tokens;
  }

  int64_t inter, sharedInter = 0;
  FFNOperands routed{operand(inputs, 4), inputs[5],
                     inputs[6],          operand(inputs, 7),
                     operand(inputs, 8), operand(inputs, 9)};
  if (Status status =
          checkFFN(op, routed, activation, experts, hidden, "", inter);
      !status)
    return status;
  // Shared experts have no biases.
  FFNOperands shared{operand(inputs, 10), operand(inputs, 11),
                     operand(inputs, 12)};
  bool hasShared = shared.up || shared.down;
  if (hasShared) {
    if (!shared.up || !shared.down)
      return fail(op, "shared experts need both shared_up_weight and "
                      "shared_down_weight");
    if (Status status = checkFFN(op, shared, activation, -1, hidden, "shared_",
                                 sharedInter);
        !status)
      return status;
  } else if (shared.gate || sharedExpertGate) {
    return fail(op, "shared_gate_weight and shared_expert_gate_weight need "
                    "shared expert weights");
  }
  if (sharedExpertGate) {
    if (Status status = expectDType(op, "shared_expert_gate_weight",
                                    *sharedExpertGate, DType::F32);
        !status)
      return status;
    if (Status status = expectShape(op, "shared_expert_gate_weight",
                                    *sharedExpertGate, {hidden, 1});
        !status)
      return status;
  }
  if (Status status = expectShape(op, "result", result, input.shape()); !status)
    return status;
  if (Status status = expectDType(op, "result", result, DType::F32); !status)
    return status;

  std::vector<float> weights;
  std::vector<int64_t> selected, counts, sources;
  if (Status status = route(op, config, input, routerWeight, routerBias,
                            correctionBias, weights, selected);
      !status)
    return status;
  if (Status status =
          planDispatch(op, selected, experts, capacity, counts, sources);
      !status)
    return status;
  int64_t numRows = static_cast<int64_t>(sources.size());
  std::vector<float> rows(numRows * hidden, 0.0f), expertOut(numRows * hidden);
  const float *x = input.as<float>();
  for (int64_t r = 0; r < numRows; ++r) {
    if (sources[r] >= 0)
      std::copy(x + (sources[r] / topK) * hidden,
                x + (sources[r] / topK + 1) * hidden, rows.data() + r * hidden);
  }
  if (Status status =
          runExperts(op, FFNWeights::of(routed), activation, counts, capacity,
                     hidden, inter, rows.data(), numRows, expertOut.data());
      !status)
    return status;
  float *y = result.as<float>();
  if (Status status = combineRows(op, expertOut.data(), hidden, sources,
                                  weights.data(), tokens, topK, y);
      !status)
    return status;
  if (!hasShared)
    return Status::success();

  std::vector<float> sharedOut(tokens * hidden);
  FFNScratch scratch;
  if (Status status = runFFN(op, FFNWeights::of(shared), activation, 0, hidden,
                             sharedInter, x, tokens, sharedOut.data(), scratch);
      !status)
    return status;
  std::vector<float> gate(tokens, 1.0f);
  if (sharedExpertGate) {
    if (Status status =
            sgemm(op, false, false, tokens, 1, hidden, 1.0f, x, hidden,
                  sharedExpertGate->as<float>(), 1, 0.0f, gate.data(), 1);
        !status)
      return status;
    for (float &g : gate)
      g = sigmoid(g);
  }
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < hidden; ++i)
      y[t * hidden + i] += gate[t] * sharedOut[t * hidden + i];
  return Status::success();
}

} // namespace

Status detail::runPreparedExpertFFN(const Attributes &attrs,
                                    const std::vector<const Tensor *> &inputs,
                                    const PreparedExpertWeights &weights,
                                    const std::vector<Tensor *> &outputs,
                                    KernelContext &context) {
  return expertFFN(attrs, inputs, &weights, outputs, context);
}

void detail::addMoEKernels(KernelTable &table) {
  table["router"] = routerKernel;
  table["dispatch"] = dispatchKernel;
  table["expert_ffn"] = expertFFNKernel;
  table["dequantize"] = dequantizeKernel;
  table["combine"] = combineKernel;
  table["ffn"] = ffnKernel;
  table["layer"] = layerKernel;
}
