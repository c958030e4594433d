//===- MoEKernelsTest.cpp - the Mixture-of-Experts CPU kernels ------------===//
//
// Part of moe-compiler's runtime tests.
//
// The configurations and expected values of MoECases.inc come from the numpy
// reference tools/reference/moe_reference.py in float64 (regenerate with
// runtime/tests/gen_moe_cases.py). The kernels compute in f32, hence the
// 1e-5 tolerance. The small dispatch and expert_ffn cases at the end are
// worked by hand from the contracts in MoEOps.td.
//
//===----------------------------------------------------------------------===//

#include "KernelTestUtils.h"

#include <deque>

using namespace moe::rt;
using namespace moe::rt::test;

namespace {

/// An operand of a case: its shape and values; absent when the shape is
/// empty (no case has a scalar operand).
struct Operand {
  Shape shape;
  std::vector<float> values;
};

struct MoELayerCase {
  const char *name;
  int64_t experts, topK;
  const char *score;
  bool normalize;
  const char *activation;
  int64_t numGroups, topKGroups;
  double routedScalingFactor;
  /// The capacity factor and the capacity it gives; 0 and -1 when dropless.
  double capacityFactor;
  int64_t capacity;
  Operand input, routerWeight, routerBias, correctionBias, gateWeight, upWeight,
      downWeight, gateBias, upBias, downBias, sharedGateWeight, sharedUpWeight,
      sharedDownWeight, sharedExpertGateWeight;
  std::vector<float> weights;
  std::vector<int64_t> selected, counts, sources;
  std::vector<float> result;
};

struct MoEFFNCase {
  const char *name;
  const char *activation;
  Operand input, gateWeight, upWeight, downWeight, gateBias, upBias, downBias;
  std::vector<float> result;
};

#include "MoECases.inc"

// gtest prints a failing case by its name rather than its bytes.
void PrintTo(const MoELayerCase &c, std::ostream *os) { *os << c.name; }
void PrintTo(const MoEFFNCase &c, std::ostream *os) { *os << c.name; }

/// Tensors for the present operands of a case; `pointers` lists them in the
/// order asked for, with nullptr for absent ones.
class CaseOperands {
public:
  explicit CaseOperands(std::initializer_list<const Operand *> operands) {
    for (const Operand *operand : operands) {
      if (operand->shape.empty()) {
        pointers.push_back(nullptr);
        continue;
      }
      tensors.push_back(f32(operand->shape, operand->values));
      pointers.push_back(&tensors.back());
    }
  }
  CaseOperands(const CaseOperands &) = delete;
  CaseOperands &operator=(const CaseOperands &) = delete;

  std::vector<const Tensor *> pointers;

private:
  // A deque keeps the addresses in `pointers` valid as it grows.
  std::deque<Tensor> tensors;
};

Attrs routerAttrs(const MoELayerCase &c) {
  Attrs attrs;
  attrs.integer("top_k", c.topK)
      .string("score", c.score)
      .integer("normalize", c.normalize)
      .integer("num_groups", c.numGroups)
      .integer("top_k_groups", c.topKGroups)
      .real("routed_scaling_factor", c.routedScalingFactor);
  return attrs;
}

Attrs layerAttrs(const MoELayerCase &c) {
  Attrs attrs = routerAttrs(c);
  attrs.string("activation", c.activation);
  if (c.capacity >= 0)
    attrs.real("capacity_factor", c.capacityFactor);
  return attrs;
}

/// The attributes of the decomposed dispatch and expert_ffn.
Attrs partAttrs(const MoELayerCase &c) {
  Attrs attrs;
  attrs.integer("num_experts", c.experts).string("activation", c.activation);
  if (c.capacity >= 0)
    attrs.integer("capacity", c.capacity);
  return attrs;
}

int64_t numRows(const MoELayerCase &c) {
  return c.capacity >= 0 ? c.experts * c.capacity : moeCaseTokens * c.topK;
}

class MoELayerCaseTest : public ::testing::TestWithParam<MoELayerCase> {};

TEST_P(MoELayerCaseTest, RouterMatchesReference) {
  const MoELayerCase &c = GetParam();
  CaseOperands operands(
      {&c.input, &c.routerWeight, &c.routerBias, &c.correctionBias});
  Tensor weights(DType::F32, {moeCaseTokens, c.topK});
  Tensor experts(DType::I64, {moeCaseTokens, c.topK});
  ASSERT_TRUE(succeeds(runKernel("router", routerAttrs(c), operands.pointers,
                                 {&weights, &experts})));
  expectValues(weights, c.weights);
  EXPECT_EQ(contents<int64_t>(experts), c.selected);
}

TEST_P(MoELayerCaseTest, DispatchMatchesReference) {
  const MoELayerCase &c = GetParam();
  Tensor input = f32(c.input.shape, c.input.values);
  Tensor selected = i64({moeCaseTokens, c.topK}, c.selected);
  int64_t rows = numRows(c);
  Tensor permuted(DType::F32, {rows, moeCaseHidden});
  Tensor counts(DType::I64, {c.experts}), sources(DType::I64, {rows});
  ASSERT_TRUE(succeeds(runKernel("dispatch", partAttrs(c), {&input, &selected},
                                 {&permuted, &counts, &sources})));
  EXPECT_EQ(contents<int64_t>(counts), c.counts);
  EXPECT_EQ(contents<int64_t>(sources), c.sources);
  // Each row is its source token's row; padding rows are zero.
  for (int64_t r = 0; r < rows; ++r) {
    int64_t source = c.sources[r];
    for (int64_t i = 0; i < moeCaseHidden; ++i) {
      float expected =
          source < 0 ? 0.0f
                     : c.input.values[(source / c.topK) * moeCaseHidden + i];
      EXPECT_EQ(permuted.as<float>()[r * moeCaseHidden + i], expected)
          << "row " << r;
    }
  }
}

TEST_P(MoELayerCaseTest, LayerMatchesReference) {
  const MoELayerCase &c = GetParam();
  CaseOperands operands({&c.input, &c.routerWeight, &c.routerBias,
                         &c.correctionBias, &c.gateWeight, &c.upWeight,
                         &c.downWeight, &c.gateBias, &c.upBias, &c.downBias,
                         &c.sharedGateWeight, &c.sharedUpWeight,
                         &c.sharedDownWeight, &c.sharedExpertGateWeight});
  Tensor result(DType::F32, {moeCaseTokens, moeCaseHidden});
  ASSERT_TRUE(succeeds(
      runKernel("layer", layerAttrs(c), operands.pointers, {&result})));
  expectValues(result, c.result);
}

TEST_P(MoELayerCaseTest, DecomposedLayerMatchesReference) {
  // router, dispatch, expert_ffn and combine, plus the shared expert as ffn,
  // matmul, sigmoid, mul and add: what moe-decompose-layers produces.
  const MoELayerCase &c = GetParam();
  CaseOperands router(
      {&c.input, &c.routerWeight, &c.routerBias, &c.correctionBias});
  Tensor weights(DType::F32, {moeCaseTokens, c.topK});
  Tensor experts(DType::I64, {moeCaseTokens, c.topK});
  ASSERT_TRUE(succeeds(runKernel("router", routerAttrs(c), router.pointers,
                                 {&weights, &experts})));

  Tensor input = f32(c.input.shape, c.input.values);
  int64_t rows = numRows(c);
  Tensor permuted(DType::F32, {rows, moeCaseHidden});
  Tensor counts(DType::I64, {c.experts}), sources(DType::I64, {rows});
  ASSERT_TRUE(succeeds(runKernel("dispatch", partAttrs(c), {&input, &experts},
                                 {&permuted, &counts, &sources})));

  CaseOperands ffnWeights({&c.gateWeight, &c.upWeight, &c.downWeight,
                           &c.gateBias, &c.upBias, &c.downBias});
  std::vector<const Tensor *> ffnOperands = {&permuted, &counts};
  ffnOperands.insert(ffnOperands.end(), ffnWeights.pointers.begin(),
                     ffnWeights.pointers.end());
  Tensor expertOut(DType::F32, {rows, moeCaseHidden});
  ASSERT_TRUE(succeeds(
      runKernel("expert_ffn", partAttrs(c), ffnOperands, {&expertOut})));
  for (int64_t r = 0; r < rows; ++r) {
    if (c.sources[r] >= 0)
      continue;
    for (int64_t i = 0; i < moeCaseHidden; ++i)
      EXPECT_EQ(expertOut.as<float>()[r * moeCaseHidden + i], 0.0f)
          << "padding row " << r;
  }

  Tensor combined(DType::F32, {moeCaseTokens, moeCaseHidden});
  ASSERT_TRUE(succeeds(
      runKernel("combine", {}, {&expertOut, &sources, &weights}, {&combined})));
  if (c.sharedUpWeight.shape.empty()) {
    expectValues(combined, c.result);
    return;
  }

  CaseOperands shared(
      {&c.input, &c.sharedGateWeight, &c.sharedUpWeight, &c.sharedDownWeight});
  Tensor sharedOut(DType::F32, {moeCaseTokens, moeCaseHidden});
  ASSERT_TRUE(
      succeeds(runKernel("ffn", Attrs().string("activation", c.activation),
                         shared.pointers, {&sharedOut})));
  if (!c.sharedExpertGateWeight.shape.empty()) {
    Tensor gateWeight =
        f32(c.sharedExpertGateWeight.shape, c.sharedExpertGateWeight.values);
    Tensor logits(DType::F32, {moeCaseTokens, 1});
    Tensor gate(DType::F32, {moeCaseTokens, 1});
    Tensor gated(DType::F32, {moeCaseTokens, moeCaseHidden});
    ASSERT_TRUE(
        succeeds(runKernel("matmul", {}, {&input, &gateWeight}, {&logits})));
    ASSERT_TRUE(succeeds(runKernel("sigmoid", {}, {&logits}, {&gate})));
    ASSERT_TRUE(succeeds(runKernel("mul", {}, {&sharedOut, &gate}, {&gated})));
    sharedOut = gated;
  }
  Tensor result(DType::F32, {moeCaseTokens, moeCaseHidden});
  ASSERT_TRUE(
      succeeds(runKernel("add", {}, {&combined, &sharedOut}, {&result})));
  expectValues(result, c.result);
}

INSTANTIATE_TEST_SUITE_P(
    Reference, MoELayerCaseTest, ::testing::ValuesIn(moeLayerCases),
    [](const ::testing::TestParamInfo<MoELayerCase> &info) {
      return std::string(info.param.name);
    });

class MoEFFNCaseTest : public ::testing::TestWithParam<MoEFFNCase> {};

TEST_P(MoEFFNCaseTest, FFNMatchesReference) {
  const MoEFFNCase &c = GetParam();
  CaseOperands operands({&c.input, &c.gateWeight, &c.upWeight, &c.downWeight,
                         &c.gateBias, &c.upBias, &c.downBias});
  Tensor result(DType::F32, c.input.shape);
  ASSERT_TRUE(
      succeeds(runKernel("ffn", Attrs().string("activation", c.activation),
                         operands.pointers, {&result})));
  expectValues(result, c.result);
}

INSTANTIATE_TEST_SUITE_P(Reference, MoEFFNCaseTest,
                         ::testing::ValuesIn(moeFFNCases),
                         [](const ::testing::TestParamInfo<MoEFFNCase> &info) {
                           return std::string(info.param.name);
                         });

//===----------------------------------------------------------------------===//
// Worked by hand
//===----------------------------------------------------------------------===//

/// Three tokens of hidden size 2, token t = [t + 1, 10 * (t + 1)], routed to
/// experts [[0, 2], [2, 0], [1, 2]]: pairs (token * top_k + slot) 0 and 3
/// go to expert 0, 4 to expert 1, and 1, 2, 5 to expert 2.
struct DispatchByHand {
  Tensor input = f32({3, 2}, {1, 10, 2, 20, 3, 30});
  Tensor experts = i64({3, 2}, {0, 2, 2, 0, 1, 2});
};

TEST(MoEKernelsTest, DispatchDroplessByHand) {
  DispatchByHand in;
  Tensor rows(DType::F32, {6, 2}), counts(DType::I64, {3}),
      sources(DType::I64, {6});
  ASSERT_TRUE(succeeds(runKernel("dispatch", Attrs().integer("num_experts", 3),
                                 {&in.input, &in.experts},
                                 {&rows, &counts, &sources})));
  EXPECT_EQ(contents<int64_t>(counts), (std::vector<int64_t>{2, 1, 3}));
  EXPECT_EQ(contents<int64_t>(sources),
            (std::vector<int64_t>{0, 3, 4, 1, 2, 5}));
  expectValues(rows, {1, 10, 2, 20, 3, 30, 1, 10, 2, 20, 3, 30});
}

TEST(MoEKernelsTest, DispatchCapacityKeepsEarliestTokens) {
  // Capacity 2: expert 2 keeps pairs 1 and 2 and drops pair 5 (token 2);
  // expert 1 has one pair and a padding row.
  DispatchByHand in;
  Tensor rows(DType::F32, {6, 2}), counts(DType::I64, {3}),
      sources(DType::I32, {6});
  ASSERT_TRUE(succeeds(runKernel(
      "dispatch", Attrs().integer("num_experts", 3).integer("capacity", 2),
      {&in.input, &in.experts}, {&rows, &counts, &sources})));
  EXPECT_EQ(contents<int64_t>(counts), (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(contents<int32_t>(sources),
            (std::vector<int32_t>{0, 3, 4, -1, 1, 2}));
  expectValues(rows, {1, 10, 2, 20, 3, 30, 0, 0, 1, 10, 2, 20});
}

TEST(MoEKernelsTest, DispatchRejectsBadExperts) {
  DispatchByHand in;
  Tensor badExperts = i64({3, 2}, {0, 2, 3, 0, 1, 2});
  Tensor rows(DType::F32, {6, 2}), counts(DType::I64, {3}),
      sources(DType::I64, {6});
  EXPECT_TRUE(
      failsWith(runKernel("dispatch", Attrs().integer("num_experts", 3),
                          {&in.input, &badExperts}, {&rows, &counts, &sources}),
                "expert index 3 is out of range"));
  Tensor fewRows(DType::F32, {4, 2});
  EXPECT_TRUE(failsWith(runKernel("dispatch", Attrs().integer("num_experts", 3),
                                  {&in.input, &in.experts},
                                  {&fewRows, &counts, &sources}),
                        "rows has shape 4x2; expected 6x2"));
}

/// Identity-activated experts of hidden and inter size 2: expert 0 doubles
/// its rows (up = I, down = 2I), expert 1 adds 1 to each (up = I, down = I,
/// down_bias = 1), expert 2 negates them (up = I, down = -I).
struct ExpertsByHand {
  Tensor up = f32({3, 2, 2}, {1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1});
  Tensor down = f32({3, 2, 2}, {2, 0, 0, 2, 1, 0, 0, 1, -1, 0, 0, -1});
  Tensor downBias = f32({3, 2}, {0, 0, 1, 1, 0, 0});
  Attrs attrs = Attrs().string("activation", "identity");
  Tensor rows = f32({6, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
};

TEST(MoEKernelsTest, ExpertFFNSkipsZeroCountExperts) {
  ExpertsByHand e;
  // Dropless: rows 0-1 go to expert 0, none to expert 1, row 2 to expert 2;
  // rows past the counts stay zero.
  Tensor counts = i64({3}, {2, 0, 1});
  Tensor out(DType::F32, {6, 2});
  ASSERT_TRUE(succeeds(runKernel("expert_ffn", e.attrs,
                                 {&e.rows, &counts, nullptr, &e.up, &e.down,
                                  nullptr, nullptr, &e.downBias},
                                 {&out})));
  expectValues(out, {2, 4, 6, 8, -5, -6, 0, 0, 0, 0, 0, 0});

  // Capacity 2: expert e owns rows 2e and 2e + 1; padding rows are zero.
  Tensor capacityCounts = i64({3}, {1, 0, 2});
  Attrs capacity = e.attrs;
  capacity.integer("capacity", 2);
  ASSERT_TRUE(succeeds(runKernel("expert_ffn", capacity,
                                 {&e.rows, &capacityCounts, nullptr, &e.up,
                                  &e.down, nullptr, nullptr, &e.downBias},
                                 {&out})));
  expectValues(out, {2, 4, 0, 0, 0, 0, 0, 0, -9, -10, -11, -12});
}

TEST(MoEKernelsTest, ExpertFFNRejectsBadCounts) {
  ExpertsByHand e;
  Tensor out(DType::F32, {6, 2});
  Tensor tooMany = i64({3}, {4, 0, 3});
  EXPECT_TRUE(
      failsWith(runKernel("expert_ffn", e.attrs,
                          {&e.rows, &tooMany, nullptr, &e.up, &e.down}, {&out}),
                "counts add up to 7 rows but there are only 6"));
  Tensor negative = i64({3}, {-1, 0, 0});
  EXPECT_TRUE(failsWith(runKernel("expert_ffn", e.attrs,
                                  {&e.rows, &negative, nullptr, &e.up, &e.down},
                                  {&out}),
                        "count -1 of expert 0"));
  Tensor counts = i64({3}, {1, 1, 1});
  EXPECT_TRUE(
      failsWith(runKernel("expert_ffn", Attrs().string("activation", "swiglu"),
                          {&e.rows, &counts, nullptr, &e.up, &e.down}, {&out}),
                "needs a gate_weight"));
  EXPECT_TRUE(
      failsWith(runKernel("expert_ffn", Attrs().string("activation", "mish"),
                          {&e.rows, &counts, nullptr, &e.up, &e.down}, {&out}),
                "unknown activation 'mish'"));
}

TEST(MoEKernelsTest, CombineWeightsAndSkipsPadding) {
  // result[t] = sum_j weights[t, j] * expert_out[r] for sources[r] = 2t + j.
  Tensor expertOut = f32({4, 2}, {1, 2, 10, 20, 100, 200, 7, 7});
  Tensor sources = i64({4}, {3, 0, 1, -1});
  Tensor weights = f32({2, 2}, {0.5f, 0.25f, 2, 4});
  Tensor result(DType::F32, {2, 2});
  ASSERT_TRUE(succeeds(
      runKernel("combine", {}, {&expertOut, &sources, &weights}, {&result})));
  // Token 0: 0.5 * row 1 + 0.25 * row 2; token 1: slot 1 (weight 4) * row 0.
  expectValues(result, {30, 60, 4, 8});

  Tensor badSources = i64({4}, {3, 0, 4, -1});
  EXPECT_TRUE(failsWith(
      runKernel("combine", {}, {&expertOut, &badSources, &weights}, {&result}),
      "source 4 of row 2 is out of range"));
}

TEST(MoEKernelsTest, LayerRejectsBadOperands) {
  const MoELayerCase &c = moeLayerCases[0];
  Tensor input = f32(c.input.shape, c.input.values);
  Tensor routerWeight = f32(c.routerWeight.shape, c.routerWeight.values);
  Tensor gate = f32(c.gateWeight.shape, c.gateWeight.values);
  Tensor up = f32(c.upWeight.shape, c.upWeight.values);
  Tensor down = f32(c.downWeight.shape, c.downWeight.values);
  Tensor result(DType::F32, {moeCaseTokens, moeCaseHidden});
  std::vector<const Tensor *> operands = {
      &input, &routerWeight, nullptr, nullptr, &gate, &up, &down};
  ASSERT_TRUE(succeeds(runKernel("layer", layerAttrs(c), operands, {&result})));

  Attrs noCapacity = layerAttrs(c);
  noCapacity.real("capacity_factor", 0.0);
  EXPECT_TRUE(failsWith(runKernel("layer", noCapacity, operands, {&result}),
                        "capacity_factor 0 must be positive"));
  // The up weight where the down weight belongs: [4, 3, 2], not [4, 2, 3].
  std::vector<const Tensor *> swapped = {
      &input, &routerWeight, nullptr, nullptr, &gate, &up, &up};
  EXPECT_TRUE(failsWith(runKernel("layer", layerAttrs(c), swapped, {&result}),
                        "down_weight has shape 4x3x2; expected 4x2x3"));
  std::vector<const Tensor *> noGate = {
      &input, &routerWeight, nullptr, nullptr, nullptr, &up, &down};
  EXPECT_TRUE(failsWith(runKernel("layer", layerAttrs(c), noGate, {&result}),
                        "needs a gate_weight"));
  std::vector<const Tensor *> gateWithoutShared = operands;
  gateWithoutShared.resize(14, nullptr);
  gateWithoutShared[13] = &routerWeight;
  EXPECT_TRUE(
      failsWith(runKernel("layer", layerAttrs(c), gateWithoutShared, {&result}),
                "need shared expert weights"));
}

TEST(MoEKernelsTest, RouterRejectsBadAttributes) {
  Tensor input = f32({1, 2}, {1, 1});
  Tensor routerWeight = f32({2, 4}, {0, 0, 0, 0, 0, 0, 0, 0});
  Tensor weights(DType::F32, {1, 2}), experts(DType::I64, {1, 2});
  auto route = [&](const Attributes &attrs) {
    return runKernel("router", attrs, {&input, &routerWeight},
                     {&weights, &experts});
  };
  // Equal scores select the lower expert indices, in order.
  ASSERT_TRUE(
      succeeds(route(Attrs().integer("top_k", 2).string("score", "softmax"))));
  EXPECT_EQ(contents<int64_t>(experts), (std::vector<int64_t>{0, 1}));
  expectValues(weights, {0.25, 0.25});

  EXPECT_TRUE(
      failsWith(route(Attrs().integer("top_k", 2).string("score", "tanh")),
                "unknown score 'tanh'"));
  EXPECT_TRUE(failsWith(route(Attrs()
                                  .integer("top_k", 2)
                                  .string("score", "softmax")
                                  .integer("num_groups", 3)),
                        "must be positive and divide the 4 experts"));
  EXPECT_TRUE(failsWith(route(Attrs()
                                  .integer("top_k", 3)
                                  .string("score", "softmax")
                                  .integer("num_groups", 2)),
                        "exceeds the experts in the selected groups"));
}

} // namespace

namespace {

Tensor u8(const Shape &shape, const std::vector<uint8_t> &values) {
  Tensor tensor(DType::U8, shape);
  std::copy(values.begin(), values.end(), tensor.as<uint8_t>());
  return tensor;
}

TEST(DequantizeTest, FourBitCodesPackLowNibbleFirst) {
  // Hand worked: row 0 codes 1 2 3 4, row 1 codes 15 0 8 7, symmetric zero
  // point 8, scales 0.5 and 2: w = (q - 8) * scale.
  Tensor codes = u8({1, 2, 2}, {0x21, 0x43, 0x0F, 0x78});
  Tensor scales = f32({1, 2}, {0.5f, 2.0f});
  Tensor result(DType::F32, {1, 2, 4});
  ASSERT_TRUE(succeeds(runKernel("dequantize", Attrs().integer("bits", 4),
                                 {&codes, &scales}, {&result})));
  expectValues(result,
               {-3.5f, -3.0f, -2.5f, -2.0f, 14.0f, -16.0f, 0.0f, -2.0f});
}

TEST(DequantizeTest, BlockScalesAndPackedZeroPoints) {
  // 8-bit codes, blocks of 2 columns, zero points per block packed one per
  // byte: w = (q - zp[block]) * scale[block].
  Tensor codes = u8({1, 1, 4}, {10, 20, 30, 40});
  Tensor scales = f32({1, 1, 2}, {1.0f, 0.5f});
  Tensor zeroPoints = u8({1, 1, 2}, {10, 20});
  Tensor result(DType::F32, {1, 1, 4});
  ASSERT_TRUE(succeeds(runKernel(
      "dequantize", Attrs().integer("bits", 8).integer("block_size", 2),
      {&codes, &scales, &zeroPoints}, {&result})));
  expectValues(result, {0.0f, 10.0f, 5.0f, 10.0f});

  Tensor wrongScales = f32({1, 1}, {1.0f});
  EXPECT_TRUE(
      failsWith(runKernel("dequantize",
                          Attrs().integer("bits", 8).integer("block_size", 2),
                          {&codes, &wrongScales}, {&result}),
                "scales"));
}

} // namespace
