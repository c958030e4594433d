//===- KernelsTest.cpp - tensors and the graph-level CPU kernels ----------===//
//
// Part of moe-compiler's runtime tests.
//
// Expected values come from numpy or from onnxruntime running the equivalent
// single ONNX node (opset 18 unless noted), each noted at its test; a few
// bit patterns are worked by hand from IEEE 754. Inputs are small so that
// they can be read next to the answers. The MoE kernels are tested in
// MoEKernelsTest.cpp.
//
//===----------------------------------------------------------------------===//

#include "KernelTestUtils.h"

#include <iterator>
#include <limits>
#include <sstream>

using namespace moe::rt;
using namespace moe::rt::test;

namespace {

constexpr float quietNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float infinity = std::numeric_limits<float>::infinity();

//===----------------------------------------------------------------------===//
// Tensors and conversions
//===----------------------------------------------------------------------===//

TEST(TensorTest, DTypeNamesRoundTrip) {
  for (DType dtype :
       {DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32,
        DType::I16, DType::I8, DType::U8, DType::Bool}) {
    DType parsed;
    ASSERT_TRUE(parseDType(dtypeName(dtype), parsed)) << dtypeName(dtype);
    EXPECT_EQ(parsed, dtype);
  }
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::Bool), 1u);
  EXPECT_EQ(dtypeSize(DType::I64), 8u);
  DType unused;
  EXPECT_FALSE(parseDType("f8", unused));
}

TEST(TensorTest, ShapesAndViews) {
  EXPECT_EQ(numElements({}), 1);
  EXPECT_EQ(numElements({2, 0, 3}), 0);
  EXPECT_EQ(formatShape({}), "scalar");
  EXPECT_EQ(formatShape({2, 3, 4}), "2x3x4");

  Tensor zeros(DType::F32, {2, 3});
  EXPECT_EQ(contents<float>(zeros), std::vector<float>(6, 0.0f));
  Tensor flat = zeros.reshaped({6});
  flat.as<float>()[4] = 7.0f;
  EXPECT_EQ(zeros.as<float>()[4], 7.0f) << "reshaped shares the bytes";

  float external[2] = {1.0f, 2.0f};
  Tensor view(DType::F32, {2}, external, nullptr);
  EXPECT_EQ(view.data(), external);
}

TEST(TensorTest, HalfRoundsToNearestEven) {
  // Every finite half survives a round trip through float.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x3ff))
      continue;
    ASSERT_EQ(floatToHalf(halfToFloat(bits)), bits) << std::hex << bits;
  }
  // numpy: np.float32(v).astype(np.float16).view(np.uint16).
  EXPECT_EQ(floatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalf(0.1f), 0x2e66);
  EXPECT_EQ(floatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(floatToHalf(65519.99f), 0x7bff);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00);
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(floatToHalf(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  EXPECT_EQ(floatToHalf(6.1e-5f), 0x03ff);
  EXPECT_EQ(floatToHalf(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(quietNaN))));
  EXPECT_EQ(halfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(halfToFloat(0xfc00), -infinity);
}

TEST(TensorTest, Bfloat16RoundsToNearestEven) {
  // By hand: bfloat16 keeps 7 mantissa bits, so 1 + 2^-8 is halfway between
  // 0x3f80 and 0x3f81 (ties to the even 0x3f80) and 1 + 3 * 2^-8 halfway
  // between 0x3f81 and 0x3f82 (ties to 0x3f82).
  EXPECT_EQ(floatToBfloat16(1.0f), 0x3f80);
  EXPECT_EQ(floatToBfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(floatToBfloat16(1.0f + std::ldexp(3.0f, -8)), 0x3f82);
  EXPECT_EQ(floatToBfloat16(-2.0f), 0xc000);
  EXPECT_EQ(bfloat16ToFloat(0x3f81), 1.0078125f);
  EXPECT_TRUE(std::isnan(bfloat16ToFloat(floatToBfloat16(quietNaN))));
  EXPECT_EQ(floatToBfloat16(infinity), 0x7f80);
}

TEST(TensorTest, ConvertFollowsCastRules) {
  // onnxruntime Cast(to=INT64) and Cast(to=BOOL).
  Tensor floats = f32({5}, {-2.7f, -0.5f, 0.0f, 0.5f, 2.7f});
  Tensor integers(DType::I64, {5});
  convert(floats, integers);
  EXPECT_EQ(contents<int64_t>(integers),
            (std::vector<int64_t>{-2, 0, 0, 0, 2}));

  Tensor mixed = f32({5}, {0.0f, -0.0f, 0.5f, quietNaN, -3.0f});
  Tensor flags(DType::Bool, {5});
  convert(mixed, flags);
  EXPECT_EQ(contents<uint8_t>(flags), (std::vector<uint8_t>{0, 0, 1, 1, 1}));

  // Integers to floats and back through half and bfloat16.
  Tensor halves(DType::F16, {5});
  convert(integers, halves);
  Tensor back(DType::F32, {5});
  convert(halves, back);
  expectValues(back, {-2.0f, 0.0f, 0.0f, 0.0f, 2.0f}, 0.0f);
  Tensor brains(DType::BF16, {1});
  convert(f32({1}, {0.1f}), brains);
  EXPECT_EQ(brains.as<uint16_t>()[0], floatToBfloat16(0.1f));

  // No undefined behaviour at the edges: NaN becomes 0, the rest saturates.
  Tensor edges = f32({3}, {quietNaN, 1e30f, -1e30f});
  Tensor small(DType::I8, {3});
  convert(edges, small);
  EXPECT_EQ(contents<int8_t>(small), (std::vector<int8_t>{0, 127, -128}));
}

//===----------------------------------------------------------------------===//
// Registry
//===----------------------------------------------------------------------===//

TEST(KernelRegistryTest, EveryComputeOpHasAKernel) {
  // Every op of MoEOps.td except weights (mapped, not computed), and the
  // upstream shard collectives the partitioner emits.
  std::istringstream names(
      "neg abs exp log sqrt reciprocal tanh erf cos sin sigmoid relu silu gelu "
      "cast is_nan not "
      "add sub mul div pow max min compare and or where "
      "matmul gemm reduce softmax top_k layer_norm rms_norm "
      "gather gather_elements scatter_elements scatter_nd "
      "reshape transpose expand slice concat split trilu "
      "layer router dispatch expert_ffn combine ffn dequantize "
      "ragged_all_to_all transpose_chunks stage_transfer all_slice all_gather "
      "all_reduce");
  std::vector<std::string> expected{std::istream_iterator<std::string>(names),
                                    {}};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(kernelNames(), expected);
  for (const std::string &name : expected)
    EXPECT_NE(findKernel(name), nullptr) << name;
  EXPECT_EQ(findKernel("weight_ref"), nullptr);
}

TEST(KernelRegistryTest, AttributeGetters) {
  Attrs attrs;
  attrs.integer("k", 3)
      .real("epsilon", 1e-5)
      .string("kind", "sum")
      .array("axes", {0, -1});
  EXPECT_EQ(attrs.getInt("k"), 3);
  EXPECT_EQ(attrs.getInt("absent", 7), 7);
  EXPECT_EQ(attrs.getFloat("epsilon"), 1e-5);
  EXPECT_EQ(attrs.getString("kind"), "sum");
  EXPECT_EQ(attrs.getString("absent", "none"), "none");
  ASSERT_NE(attrs.getArray("axes"), nullptr);
  EXPECT_EQ(*attrs.getArray("axes"), (std::vector<int64_t>{0, -1}));
  EXPECT_EQ(attrs.getArray("k"), nullptr);
  EXPECT_TRUE(attrs.has("axes"));
  EXPECT_FALSE(attrs.has("absent"));
}

TEST(KernelRegistryTest, CallsAreChecked) {
  Tensor x = f32({2}, {1.0f, 2.0f});
  Tensor y(DType::F32, {2});
  EXPECT_TRUE(failsWith(runKernel("add", {}, {&x}, {&y}), "'rhs'"));
  EXPECT_TRUE(failsWith(runKernel("add", {}, {&x, &x}, {}), "outputs"));
  EXPECT_TRUE(failsWith(runKernel("gemm", {}, {&x, &x, &x, &x}, {&y}),
                        "at most 3 operands"));
  EXPECT_TRUE(failsWith(runKernel("softmax", {}, {&x}, {&y}), "'axis'"));
}

//===----------------------------------------------------------------------===//
// Element-wise
//===----------------------------------------------------------------------===//

/// Runs a unary f32 kernel on `input` and returns its result.
Tensor unary(const std::string &op, const Tensor &input,
             const Attributes &attrs = {}) {
  Tensor result(input.dtype(), input.shape());
  EXPECT_TRUE(succeeds(runKernel(op, attrs, {&input}, {&result}))) << op;
  return result;
}

TEST(ElementwiseTest, UnaryMath) {
  // numpy in float64 (math.erf for erf and gelu), on these inputs.
  Tensor x = f32({5}, {-2.5f, -0.5f, 0.0f, 0.75f, 3.0f});
  expectValues(unary("neg", x), {2.5f, 0.5f, 0.0f, -0.75f, -3.0f});
  expectValues(unary("abs", x), {2.5f, 0.5f, 0.0f, 0.75f, 3.0f});
  expectValues(unary("exp", x),
               {0.082084999f, 0.60653066f, 1.0f, 2.117f, 20.085537f});
  expectValues(unary("tanh", x),
               {-0.9866143f, -0.46211716f, 0.0f, 0.63514895f, 0.99505475f});
  expectValues(unary("erf", x),
               {-0.99959305f, -0.52049988f, 0.0f, 0.71115563f, 0.99997791f});
  expectValues(unary("sigmoid", x),
               {0.07585818f, 0.37754067f, 0.5f, 0.6791787f, 0.95257413f});
  expectValues(unary("relu", x), {0.0f, 0.0f, 0.0f, 0.75f, 3.0f});
  expectValues(unary("silu", x),
               {-0.18964545f, -0.18877033f, 0.0f, 0.50938402f, 2.8577224f});
  // onnxruntime Gelu (opset 20) agrees with these to 1e-7.
  expectValues(unary("gelu", x),
               {-0.015524163f, -0.15426877f, 0.0f, 0.5800295f, 2.9959503f});
  expectValues(unary("gelu", x, Attrs().integer("tanh", 1)),
               {-0.015084266f, -0.15428599f, 0.0f, 0.57996056f, 2.9963626f});

  Tensor positive = f32({4}, {0.25f, 1.0f, 2.5f, 9.0f});
  expectValues(unary("log", positive),
               {-1.3862944f, 0.0f, 0.91629073f, 2.1972246f});
  expectValues(unary("sqrt", positive), {0.5f, 1.0f, 1.5811388f, 3.0f});
  expectValues(unary("reciprocal", positive), {4.0f, 1.0f, 0.4f, 0.11111111f});
  EXPECT_TRUE(
      std::isnan(unary("sigmoid", f32({1}, {quietNaN})).as<float>()[0]));
}

TEST(ElementwiseTest, TrigonometryNaNTestAndNot) {
  // numpy float64 cos and sin of the same inputs.
  Tensor x = f32({5}, {-2.5f, -0.5f, 0.0f, 0.75f, 3.0f});
  expectValues(unary("cos", x),
               {-0.80114362f, 0.87758256f, 1.0f, 0.73168887f, -0.9899925f});
  expectValues(unary("sin", x),
               {-0.59847214f, -0.47942554f, 0.0f, 0.68163876f, 0.14112001f});

  Tensor withNaN = f32({3}, {1.0f, quietNaN, -0.0f});
  Tensor flags(DType::Bool, {3});
  ASSERT_TRUE(succeeds(runKernel("is_nan", {}, {&withNaN}, {&flags})));
  EXPECT_EQ(contents<uint8_t>(flags), (std::vector<uint8_t>{0, 1, 0}));
  Tensor negated(DType::Bool, {3});
  ASSERT_TRUE(succeeds(runKernel("not", {}, {&flags}, {&negated})));
  EXPECT_EQ(contents<uint8_t>(negated), (std::vector<uint8_t>{1, 0, 1}));
  Tensor floats(DType::F32, {3});
  EXPECT_TRUE(
      failsWith(runKernel("not", {}, {&withNaN}, {&floats}), "expected i1"));
}

TEST(ElementwiseTest, UnaryIntegersAndErrors) {
  Tensor x = i64({3}, {-4, 0, std::numeric_limits<int64_t>::min()});
  Tensor negated(DType::I64, {3}), absolute(DType::I64, {3});
  ASSERT_TRUE(succeeds(runKernel("neg", {}, {&x}, {&negated})));
  ASSERT_TRUE(succeeds(runKernel("abs", {}, {&x}, {&absolute})));
  // The most negative value wraps to itself, as in two's complement.
  EXPECT_EQ(contents<int64_t>(negated),
            (std::vector<int64_t>{4, 0, std::numeric_limits<int64_t>::min()}));
  EXPECT_EQ(contents<int64_t>(absolute),
            (std::vector<int64_t>{4, 0, std::numeric_limits<int64_t>::min()}));

  Tensor result(DType::I64, {3});
  EXPECT_TRUE(failsWith(runKernel("exp", {}, {&x}, {&result}), "expected f32"));
  Tensor wrongShape(DType::F32, {2});
  Tensor floats = f32({3}, {1.0f, 2.0f, 3.0f});
  EXPECT_TRUE(failsWith(runKernel("exp", {}, {&floats}, {&wrongShape}),
                        "result has shape 2"));
}

/// Runs a binary kernel and returns its result of `shape`.
Tensor binary(const std::string &op, const Tensor &lhs, const Tensor &rhs,
              const Shape &shape, const Attributes &attrs = {}) {
  Tensor result(op == "compare" ? DType::Bool : lhs.dtype(), shape);
  EXPECT_TRUE(succeeds(runKernel(op, attrs, {&lhs, &rhs}, {&result}))) << op;
  return result;
}

TEST(ElementwiseTest, BinaryBroadcasting) {
  // numpy broadcasting; these are small enough to check by eye.
  Tensor matrix = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor row = f32({3}, {10, 20, 30});
  expectValues(binary("add", matrix, row, {2, 3}), {11, 22, 33, 14, 25, 36});
  expectValues(binary("add", row, matrix, {2, 3}), {11, 22, 33, 14, 25, 36});

  Tensor column = f32({2, 1}, {1, 2});
  Tensor wide = f32({1, 3}, {10, 20, 30});
  expectValues(binary("sub", column, wide, {2, 3}),
               {-9, -19, -29, -8, -18, -28});

  Tensor half = f32({}, {0.5f});
  expectValues(binary("mul", matrix, half, {2, 3}), {0.5, 1, 1.5, 2, 2.5, 3});
  expectValues(binary("div", half, matrix, {2, 3}),
               {0.5f, 0.25f, 0.16666667f, 0.125f, 0.1f, 0.083333333f});

  // onnxruntime Pow, base [3, 1] against exponent [2].
  Tensor bases = f32({3, 1}, {2, 4, 9});
  Tensor exponents = f32({2}, {3, 0.5f});
  expectValues(binary("pow", bases, exponents, {3, 2}),
               {8, 1.4142135f, 64, 2, 729, 3});

  // onnxruntime Max and Min propagate NaN, as numpy's maximum and minimum.
  Tensor a = f32({3}, {1, quietNaN, 3});
  Tensor b = f32({3}, {2, 0, quietNaN});
  expectValues(binary("max", a, b, {3}), {2, quietNaN, quietNaN});
  expectValues(binary("min", a, b, {3}), {1, quietNaN, quietNaN});

  Tensor wrong = f32({2}, {1, 2});
  Tensor result(DType::F32, {2, 3});
  EXPECT_TRUE(failsWith(runKernel("add", {}, {&matrix, &wrong}, {&result}),
                        "do not broadcast"));
  Tensor integers = i64({3}, {1, 2, 3});
  EXPECT_TRUE(failsWith(runKernel("add", {}, {&matrix, &integers}, {&result}),
                        "element types f32 and i64"));
}

TEST(ElementwiseTest, BinaryIntegers) {
  // onnxruntime Div truncates toward zero.
  Tensor dividends = i64({4}, {7, -7, 7, -7});
  Tensor divisors = i64({4}, {2, 2, -2, -2});
  EXPECT_EQ(contents<int64_t>(binary("div", dividends, divisors, {4})),
            (std::vector<int64_t>{3, -3, -3, 3}));

  // onnxruntime Pow on int64; 2^-1 truncates to 0.
  Tensor bases = i64({7}, {2, 3, -2, 5, 1, -1, 2});
  Tensor exponents = i64({7}, {10, 3, 3, 0, -2, -3, -1});
  EXPECT_EQ(contents<int64_t>(binary("pow", bases, exponents, {7})),
            (std::vector<int64_t>{1024, 27, -8, 1, 1, -1, 0}));

  Tensor largest = i64({}, {std::numeric_limits<int64_t>::max()});
  Tensor one = i64({}, {1});
  EXPECT_EQ(contents<int64_t>(binary("add", largest, one, {}))[0],
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(contents<int64_t>(binary("max", dividends, one, {4})),
            (std::vector<int64_t>{7, 1, 7, 1}));

  Tensor zero = i64({}, {0});
  Tensor result(DType::I64, {4});
  EXPECT_TRUE(failsWith(runKernel("div", {}, {&dividends, &zero}, {&result}),
                        "division by zero"));
}

TEST(ElementwiseTest, AndOrBroadcastOverBools) {
  // A causal mask and a padding mask, combined as exporters do.
  Tensor causal = i1({2, 2}, {1, 0, 1, 1});
  Tensor keep = i1({2, 1, 2}, {1, 1, 0, 1});
  using Flags = std::vector<uint8_t>;
  EXPECT_EQ(contents<uint8_t>(binary("and", causal, keep, {2, 2, 2})),
            (Flags{1, 0, 1, 1, 0, 0, 0, 1}));
  EXPECT_EQ(contents<uint8_t>(binary("or", causal, keep, {2, 2, 2})),
            (Flags{1, 1, 1, 1, 1, 1, 1, 1}));
  Tensor floats = f32({2, 2}, {1, 0, 1, 1});
  Tensor result(DType::Bool, {2, 2});
  EXPECT_TRUE(failsWith(runKernel("and", {}, {&floats, &floats}, {&result}),
                        "expected i1"));
}

TEST(ElementwiseTest, CompareEveryPredicate) {
  Tensor lhs = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor rhs = f32({3}, {2, 2, 6});
  auto compare = [&](const char *predicate, const Tensor &a, const Tensor &b) {
    return contents<uint8_t>(binary("compare", a, b, {2, 3},
                                    Attrs().string("predicate", predicate)));
  };
  using Flags = std::vector<uint8_t>;
  EXPECT_EQ(compare("eq", lhs, rhs), (Flags{0, 1, 0, 0, 0, 1}));
  EXPECT_EQ(compare("ne", lhs, rhs), (Flags{1, 0, 1, 1, 1, 0}));
  EXPECT_EQ(compare("lt", lhs, rhs), (Flags{1, 0, 1, 0, 0, 0}));
  EXPECT_EQ(compare("le", lhs, rhs), (Flags{1, 1, 1, 0, 0, 1}));
  EXPECT_EQ(compare("gt", lhs, rhs), (Flags{0, 0, 0, 1, 1, 0}));
  EXPECT_EQ(compare("ge", lhs, rhs), (Flags{0, 1, 0, 1, 1, 1}));

  Tensor integers = i64({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor bound = i64({1, 3}, {2, 2, 6});
  EXPECT_EQ(compare("lt", integers, bound), (Flags{1, 0, 1, 0, 0, 0}));
  Tensor flags = i1({2, 3}, {0, 1, 1, 0, 0, 1});
  Tensor on = i1({}, {1});
  EXPECT_EQ(compare("eq", flags, on), (Flags{0, 1, 1, 0, 0, 1}));

  Tensor nans = f32({1}, {quietNaN});
  Tensor out(DType::Bool, {1});
  ASSERT_TRUE(succeeds(runKernel("compare", Attrs().string("predicate", "eq"),
                                 {&nans, &nans}, {&out})));
  EXPECT_EQ(out.as<uint8_t>()[0], 0);

  Tensor result(DType::Bool, {2, 3});
  EXPECT_TRUE(
      failsWith(runKernel("compare", Attrs().string("predicate", "approx"),
                          {&lhs, &rhs}, {&result}),
                "unknown predicate 'approx'"));
}

TEST(ElementwiseTest, WhereBroadcastsThreeOperands) {
  Tensor condition = i1({2, 1}, {1, 0});
  Tensor onTrue = f32({1, 3}, {1, 2, 3});
  Tensor onFalse = f32({}, {-1});
  Tensor result(DType::F32, {2, 3});
  ASSERT_TRUE(succeeds(
      runKernel("where", {}, {&condition, &onTrue, &onFalse}, {&result})));
  expectValues(result, {1, 2, 3, -1, -1, -1});

  Tensor indices = i64({3}, {7, 8, 9});
  Tensor fallback = i64({3}, {0, 0, 0});
  Tensor mask = i1({3}, {0, 1, 0});
  Tensor picked(DType::I64, {3});
  ASSERT_TRUE(succeeds(
      runKernel("where", {}, {&mask, &indices, &fallback}, {&picked})));
  EXPECT_EQ(contents<int64_t>(picked), (std::vector<int64_t>{0, 8, 0}));

  EXPECT_TRUE(
      failsWith(runKernel("where", {}, {&onTrue, &onTrue, &onFalse}, {&result}),
                "condition has element type f32"));
}

TEST(ElementwiseTest, CastUsesConvert) {
  Tensor floats = f32({2, 2}, {-2.7f, 0.5f, 2.7f, 0.0f});
  Tensor integers(DType::I64, {2, 2});
  ASSERT_TRUE(succeeds(runKernel("cast", {}, {&floats}, {&integers})));
  EXPECT_EQ(contents<int64_t>(integers), (std::vector<int64_t>{-2, 0, 2, 0}));
  Tensor flags(DType::Bool, {2, 2});
  ASSERT_TRUE(succeeds(runKernel("cast", {}, {&integers}, {&flags})));
  EXPECT_EQ(contents<uint8_t>(flags), (std::vector<uint8_t>{1, 0, 1, 0}));
  Tensor wrong(DType::I64, {4});
  EXPECT_TRUE(failsWith(runKernel("cast", {}, {&floats}, {&wrong}),
                        "result has shape 4"));
}

//===----------------------------------------------------------------------===//
// Matrix products
//===----------------------------------------------------------------------===//

TEST(LinalgTest, MatMulMatrices) {
  // numpy: arange(6).reshape(2, 3) @ (arange(6) - 2).reshape(3, 2).
  Tensor a = f32({2, 3}, {0, 1, 2, 3, 4, 5});
  Tensor b = f32({3, 2}, {-2, -1, 0, 1, 2, 3});
  Tensor result(DType::F32, {2, 2});
  ASSERT_TRUE(succeeds(runKernel("matmul", {}, {&a, &b}, {&result})));
  expectValues(result, {4, 7, 4, 16});
}

TEST(LinalgTest, MatMulBroadcastsBatches) {
  // numpy (and onnxruntime MatMul, identically):
  // (arange(12) * 0.5 - 3).reshape(2, 1, 2, 3)
  //   @ (arange(18) * 0.25 - 2).reshape(3, 3, 2).
  std::vector<float> lhsValues(12), rhsValues(18);
  for (int i = 0; i < 12; ++i)
    lhsValues[i] = i * 0.5f - 3.0f;
  for (int i = 0; i < 18; ++i)
    rhsValues[i] = i * 0.25f - 2.0f;
  Tensor lhs = f32({2, 1, 2, 3}, lhsValues);
  Tensor rhs = f32({3, 3, 2}, rhsValues);
  Tensor result(DType::F32, {2, 3, 2, 2});
  ASSERT_TRUE(succeeds(runKernel("matmul", {}, {&lhs, &rhs}, {&result})));
  expectValues(result, {11.75,  9.875,   5,   4.25,  0.5,   -1.375, 0.5,  -0.25,
                        -10.75, -12.625, -4,  -4.75, -1.75, -1.375, -8.5, -7,
                        0.5,    0.875,   0.5, 2,     2.75,  3.125,  9.5,  11});
}

TEST(LinalgTest, MatMulPromotesVectors) {
  // numpy: [1, 2, 3] @ B, B @ [1, -1, 2, 0.5] and v @ v, with
  // B = (arange(24) - 10).reshape(2, 3, 4).
  std::vector<float> batchValues(24);
  for (int i = 0; i < 24; ++i)
    batchValues[i] = i - 10.0f;
  Tensor batch = f32({2, 3, 4}, batchValues);
  Tensor vector3 = f32({3}, {1, 2, 3});
  Tensor vector4 = f32({4}, {1, -1, 2, 0.5f});

  Tensor rowTimes(DType::F32, {2, 4});
  ASSERT_TRUE(
      succeeds(runKernel("matmul", {}, {&vector3, &batch}, {&rowTimes})));
  expectValues(rowTimes, {-28, -22, -16, -10, 44, 50, 56, 62});

  Tensor timesColumn(DType::F32, {2, 3});
  ASSERT_TRUE(
      succeeds(runKernel("matmul", {}, {&batch, &vector4}, {&timesColumn})));
  expectValues(timesColumn, {-20.5, -10.5, -0.5, 9.5, 19.5, 29.5});

  Tensor dot(DType::F32, {});
  ASSERT_TRUE(succeeds(runKernel("matmul", {}, {&vector3, &vector3}, {&dot})));
  expectValues(dot, {14});

  Tensor wrong(DType::F32, {2, 3});
  EXPECT_TRUE(failsWith(runKernel("matmul", {}, {&vector4, &batch}, {&wrong}),
                        "contracting dimensions differ"));
  EXPECT_TRUE(failsWith(runKernel("matmul", {}, {&vector3, &batch}, {&wrong}),
                        "result has shape 2x3; expected 2x4"));
}

TEST(LinalgTest, GemmTransposesScalesAndBroadcastsC) {
  // onnxruntime Gemm(alpha=0.5, beta=2, transA=1, transB=1) with
  // A = [[1, 2], [3, 4], [5, 6]], B = (arange(12) * 0.5 - 2).reshape(4, 3).
  Tensor a = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  std::vector<float> bValues(12);
  for (int i = 0; i < 12; ++i)
    bValues[i] = i * 0.5f - 2.0f;
  Tensor b = f32({4, 3}, bValues);
  Tensor row = f32({4}, {1, -1, 0.5f, 2});
  Attrs transposed;
  transposed.integer("trans_a", 1).integer("trans_b", 1);
  Attrs scaled = transposed;
  scaled.real("alpha", 0.5).real("beta", 2.0);

  Tensor result(DType::F32, {2, 4});
  ASSERT_TRUE(succeeds(runKernel("gemm", scaled, {&a, &b, &row}, {&result})));
  expectValues(result, {-3.75, -1, 8.75, 18.5, -6, -1, 11, 23});

  // numpy: A.T @ B.T, without C and with a [2, 1] C.
  ASSERT_TRUE(succeeds(runKernel("gemm", transposed, {&a, &b}, {&result})));
  expectValues(result, {-11.5, 2, 15.5, 29, -16, 2, 20, 38});
  Tensor column = f32({2, 1}, {10, 20});
  ASSERT_TRUE(
      succeeds(runKernel("gemm", transposed, {&a, &b, &column}, {&result})));
  expectValues(result, {-1.5, 12, 25.5, 39, 4, 22, 40, 58});

  EXPECT_TRUE(failsWith(runKernel("gemm", {}, {&a, &b}, {&result}),
                        "contracting dimensions differ"));
  Tensor badC = f32({3}, {1, 2, 3});
  EXPECT_TRUE(
      failsWith(runKernel("gemm", transposed, {&a, &b, &badC}, {&result}),
                "does not broadcast"));
}

//===----------------------------------------------------------------------===//
// Reductions and normalisation
//===----------------------------------------------------------------------===//

/// ((arange(24) * 7 % 11 - 5) / 4 + 0.125).reshape(2, 3, 4): mixed signs,
/// no zeros.
Tensor reduceInput() {
  return f32({2, 3, 4},
             {-1.125, 0.625, -0.375, 1.375,  0.375, -0.625, 1.125,  0.125,
              -0.875, 0.875, -0.125, -1.125, 0.625, -0.375, 1.375,  0.375,
              -0.625, 1.125, 0.125,  -0.875, 0.875, -0.125, -1.125, 0.625});
}

Tensor reduce(const char *kind, const Tensor &input, std::vector<int64_t> axes,
              bool keepDims, const Shape &shape) {
  Tensor result(input.dtype(), shape);
  Attrs attrs;
  attrs.string("kind", kind).array("axes", axes).integer("keep_dims", keepDims);
  EXPECT_TRUE(succeeds(runKernel("reduce", attrs, {&input}, {&result})))
      << kind;
  return result;
}

TEST(LinalgTest, ReduceEveryKind) {
  // numpy in float64 on reduceInput(); onnxruntime ReduceSum agrees.
  Tensor x = reduceInput();
  expectValues(reduce("sum", x, {0, 2}, true, {1, 3, 1}), {2.5, 0.75, -1});
  expectValues(reduce("mean", x, {-1}, false, {2, 3}),
               {0.125, 0.25, -0.3125, 0.5, -0.0625, 0.0625});
  expectValues(reduce("max", x, {1}, true, {2, 1, 4}),
               {0.375, 0.875, 1.125, 1.375, 0.875, 1.125, 1.375, 0.625});
  expectValues(reduce("min", x, {0, 1, 2}, false, {}), {-1.125});
  expectValues(reduce("prod", x, {2}, false, {2, 3}),
               {0.36254883, -0.032958984, -0.10766602, -0.12084961, 0.076904297,
                0.076904297});
  // The importer lists every axis for ONNX's "reduce all", so no axes
  // reduces nothing, as the verifier's result shape says.
  expectValues(reduce("sum", x, {}, false, {2, 3, 4}), contents<float>(x));

  Tensor integers = i64({2, 3}, {0, 1, 2, 3, 4, 5});
  EXPECT_EQ(contents<int64_t>(reduce("sum", integers, {1}, false, {2})),
            (std::vector<int64_t>{3, 12}));
  EXPECT_EQ(contents<int64_t>(reduce("mean", integers, {1}, false, {2})),
            (std::vector<int64_t>{1, 4}));
}

TEST(LinalgTest, ReduceEdgeCases) {
  // ONNX: an empty set sums to 0 and its maximum is -inf; NaN propagates.
  Tensor empty(DType::F32, {2, 0});
  expectValues(reduce("sum", empty, {1}, false, {2}), {0, 0});
  expectValues(reduce("max", empty, {1}, false, {2}), {-infinity, -infinity});
  Tensor withNan = f32({2, 2}, {1, quietNaN, 3, 2});
  expectValues(reduce("max", withNan, {1}, false, {2}), {quietNaN, 3});
  expectValues(reduce("min", withNan, {1}, false, {2}), {quietNaN, 2});

  Tensor x = reduceInput();
  Tensor result(DType::F32, {2, 3});
  EXPECT_TRUE(failsWith(
      runKernel("reduce", Attrs().string("kind", "median").array("axes", {2}),
                {&x}, {&result}),
      "unknown kind 'median'"));
  EXPECT_TRUE(failsWith(
      runKernel("reduce", Attrs().string("kind", "sum").array("axes", {2, -1}),
                {&x}, {&result}),
      "listed twice"));
  EXPECT_TRUE(failsWith(
      runKernel("reduce", Attrs().string("kind", "sum").array("axes", {3}),
                {&x}, {&result}),
      "out of range"));
}

TEST(LinalgTest, SoftmaxAlongAnyAxis) {
  // numpy in float64 on (arange(12) * 0.3 - 1.5).reshape(2, 3, 2).
  std::vector<float> values(12);
  for (int i = 0; i < 12; ++i)
    values[i] = i * 0.3f - 1.5f;
  Tensor x = f32({2, 3, 2}, values);
  Tensor result(DType::F32, {2, 3, 2});
  ASSERT_TRUE(succeeds(
      runKernel("softmax", Attrs().integer("axis", 1), {&x}, {&result})));
  expectValues(result, {0.16280716, 0.16280716, 0.296654, 0.29665401,
                        0.54053884, 0.54053883, 0.16280717, 0.16280717,
                        0.29665402, 0.29665397, 0.54053881, 0.54053886});
  ASSERT_TRUE(succeeds(
      runKernel("softmax", Attrs().integer("axis", -1), {&x}, {&result})));
  for (int i = 0; i < 12; i += 2) {
    EXPECT_NEAR(result.as<float>()[i], 0.42555749f, 1e-6f);
    EXPECT_NEAR(result.as<float>()[i + 1], 0.57444251f, 1e-6f);
  }
  // Large logits must not overflow.
  Tensor large = f32({2}, {1000, 1000});
  Tensor halves(DType::F32, {2});
  ASSERT_TRUE(succeeds(
      runKernel("softmax", Attrs().integer("axis", 0), {&large}, {&halves})));
  expectValues(halves, {0.5, 0.5});
}

TEST(LinalgTest, TopKBreaksTiesByLowerIndex) {
  // onnxruntime TopK (opset 11).
  Tensor x = f32({2, 5}, {1, 3, 3, 2, 3, 5, 4, 4, 5, 0});
  Tensor values(DType::F32, {2, 3}), indices(DType::I64, {2, 3});
  ASSERT_TRUE(
      succeeds(runKernel("top_k", Attrs().integer("k", 3).integer("axis", -1),
                         {&x}, {&values, &indices})));
  expectValues(values, {3, 3, 3, 5, 5, 4});
  EXPECT_EQ(contents<int64_t>(indices),
            (std::vector<int64_t>{1, 2, 4, 0, 3, 1}));

  Tensor smallest(DType::F32, {2, 2}), smallestIndices(DType::I64, {2, 2});
  ASSERT_TRUE(succeeds(runKernel(
      "top_k",
      Attrs().integer("k", 2).integer("axis", 1).integer("smallest", 1), {&x},
      {&smallest, &smallestIndices})));
  expectValues(smallest, {1, 2, 0, 4});
  EXPECT_EQ(contents<int64_t>(smallestIndices),
            (std::vector<int64_t>{0, 3, 4, 1}));

  // Along axis 0 of an i64 tensor, into i32 indices.
  Tensor integers = i64({3, 2}, {4, 1, 7, 1, 4, 9});
  Tensor best(DType::I64, {2, 2}), where(DType::I32, {2, 2});
  ASSERT_TRUE(
      succeeds(runKernel("top_k", Attrs().integer("k", 2).integer("axis", 0),
                         {&integers}, {&best, &where})));
  EXPECT_EQ(contents<int64_t>(best), (std::vector<int64_t>{7, 9, 4, 1}));
  EXPECT_EQ(contents<int32_t>(where), (std::vector<int32_t>{1, 2, 0, 0}));

  Tensor tooMany(DType::F32, {2, 6}), tooManyIndices(DType::I64, {2, 6});
  EXPECT_TRUE(
      failsWith(runKernel("top_k", Attrs().integer("k", 6).integer("axis", 1),
                          {&x}, {&tooMany, &tooManyIndices}),
                "k = 6 must be in [1, 5]"));
}

TEST(LinalgTest, LayerNormAndRMSNorm) {
  // onnxruntime LayerNormalization (opset 17), epsilon 1e-5.
  Tensor x = f32({2, 4}, {1, 2, 3, 4, -1, 0.5f, 2, -3});
  Tensor scale = f32({4}, {1, 0.5f, 2, -1});
  Tensor bias = f32({4}, {0, 1, -1, 0.25f});
  Tensor result(DType::F32, {2, 4});
  Attrs lastAxis;
  lastAxis.integer("axis", -1).real("epsilon", 1e-5);
  ASSERT_TRUE(succeeds(
      runKernel("layer_norm", lastAxis, {&x, &scale, &bias}, {&result})));
  expectValues(result, {-1.3416355, 0.77639407, -0.10557634, -1.0916355,
                        -0.33786821, 1.2365078, 1.5677984, 1.6690464});

  // Over the last two axes, without bias, epsilon 1e-3:
  // x = (arange(12) * 0.5 - 2).reshape(2, 2, 3),
  // scale = (arange(6) * 0.25 + 0.5).reshape(2, 3).
  std::vector<float> xValues(12), scaleValues(6);
  for (int i = 0; i < 12; ++i)
    xValues[i] = i * 0.5f - 2.0f;
  for (int i = 0; i < 6; ++i)
    scaleValues[i] = i * 0.25f + 0.5f;
  Tensor x3 = f32({2, 2, 3}, xValues);
  Tensor scale3 = f32({2, 3}, scaleValues);
  Tensor result3(DType::F32, {2, 2, 3});
  ASSERT_TRUE(succeeds(
      runKernel("layer_norm", Attrs().integer("axis", 1).real("epsilon", 1e-3),
                {&x3, &scale3}, {&result3})));
  expectValues(result3, {-0.73142368, -0.65828133, -0.29256946, 0.36571181,
                         1.3165627, 2.5599828, -0.73142368, -0.65828133,
                         -0.29256946, 0.36571181, 1.3165627, 2.5599828});

  // numpy: x / sqrt(mean(x^2, -1) + 1e-6) * scale.
  ASSERT_TRUE(succeeds(
      runKernel("rms_norm", Attrs().integer("axis", -1).real("epsilon", 1e-6),
                {&x, &scale}, {&result})));
  expectValues(result, {0.36514835, 0.36514835, 2.1908901, -1.4605934,
                        -0.52981287, 0.13245322, 2.1192515, 1.5894386});

  EXPECT_TRUE(failsWith(
      runKernel("rms_norm", Attrs().integer("axis", 0).real("epsilon", 1e-6),
                {&x, &scale}, {&result}),
      "scale has shape 4; expected 2x4"));
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

TEST(ShapeTest, GatherWrapsNegativeIndices) {
  // onnxruntime Gather.
  Tensor data = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor indices = i64({2, 2}, {0, -1, 1, -3});
  Tensor result(DType::F32, {2, 2, 2});
  ASSERT_TRUE(succeeds(runKernel("gather", Attrs().integer("axis", 0),
                                 {&data, &indices}, {&result})));
  expectValues(result, {1, 2, 5, 6, 3, 4, 1, 2});

  Tensor rows = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor columns(DType::I32, {2});
  columns.as<int32_t>()[0] = -1;
  columns.as<int32_t>()[1] = 0;
  Tensor picked(DType::F32, {2, 2});
  ASSERT_TRUE(succeeds(runKernel("gather", Attrs().integer("axis", 1),
                                 {&rows, &columns}, {&picked})));
  expectValues(picked, {3, 1, 6, 4});

  for (int64_t bad : {3, -4}) {
    Tensor badIndex = i64({1}, {bad});
    Tensor out(DType::F32, {1, 2});
    EXPECT_TRUE(failsWith(runKernel("gather", Attrs().integer("axis", 0),
                                    {&data, &badIndex}, {&out}),
                          "index " + std::to_string(bad) + " is out of range"));
  }
}

TEST(ShapeTest, GatherElements) {
  // onnxruntime GatherElements.
  Tensor data = f32({2, 2}, {1, 2, 3, 4});
  Tensor indices = i64({2, 2}, {0, 0, 1, -2});
  Tensor result(DType::F32, {2, 2});
  ASSERT_TRUE(succeeds(runKernel("gather_elements", Attrs().integer("axis", 1),
                                 {&data, &indices}, {&result})));
  expectValues(result, {1, 1, 4, 3});

  Tensor bad = i64({2, 2}, {0, 2, 0, 0});
  EXPECT_TRUE(failsWith(runKernel("gather_elements", Attrs().integer("axis", 1),
                                  {&data, &bad}, {&result}),
                        "index 2 is out of range"));
}

TEST(ShapeTest, ScatterElementsReductions) {
  // onnxruntime ScatterElements (axis 1); the reductions hit index 1 twice.
  Tensor data = f32({1, 5}, {1, 2, 3, 4, 5});
  Tensor result(DType::F32, {1, 5});
  Tensor distinct = i64({1, 3}, {1, 3, -1});
  Tensor replacements = f32({1, 3}, {1.1f, 2.1f, 3.1f});
  ASSERT_TRUE(
      succeeds(runKernel("scatter_elements", Attrs().integer("axis", 1),
                         {&data, &distinct, &replacements}, {&result})));
  expectValues(result, {1, 1.1f, 3, 2.1f, 3.1f});

  Tensor repeated = i64({1, 3}, {1, 3, 1});
  Tensor updates = f32({1, 3}, {1.5f, -2, 3});
  std::pair<const char *, std::vector<float>> cases[] = {
      {"add", {1, 6.5, 3, 2, 5}},
      {"mul", {1, 9, 3, -8, 5}},
      {"max", {1, 3, 3, 4, 5}},
      {"min", {1, 1.5, 3, -2, 5}}};
  for (const auto &[reduction, expected] : cases) {
    ASSERT_TRUE(succeeds(
        runKernel("scatter_elements",
                  Attrs().integer("axis", 1).string("reduction", reduction),
                  {&data, &repeated, &updates}, {&result})))
        << reduction;
    SCOPED_TRACE(reduction);
    expectValues(result, expected);
  }

  Tensor bad = i64({1, 3}, {1, 5, 0});
  EXPECT_TRUE(
      failsWith(runKernel("scatter_elements", Attrs().integer("axis", 1),
                          {&data, &bad, &updates}, {&result}),
                "index 5 is out of range"));
  EXPECT_TRUE(failsWith(
      runKernel("scatter_elements",
                Attrs().integer("axis", 1).string("reduction", "mean"),
                {&data, &repeated, &updates}, {&result}),
      "unknown reduction 'mean'"));
}

TEST(ShapeTest, ScatterND) {
  // onnxruntime ScatterND on arange(12).reshape(4, 3).
  std::vector<float> values(12);
  for (int i = 0; i < 12; ++i)
    values[i] = i;
  Tensor data = f32({4, 3}, values);
  Tensor rows = i64({3, 1}, {1, 3, 1});
  Tensor updates = f32({3, 3}, {1, 1, 1, 2, 2, 2, 10, 20, 30});
  Tensor result(DType::F32, {4, 3});
  ASSERT_TRUE(
      succeeds(runKernel("scatter_nd", Attrs().string("reduction", "add"),
                         {&data, &rows, &updates}, {&result})));
  expectValues(result, {0, 1, 2, 14, 25, 36, 6, 7, 8, 11, 12, 13});
  ASSERT_TRUE(
      succeeds(runKernel("scatter_nd", Attrs().string("reduction", "mul"),
                         {&data, &rows, &updates}, {&result})));
  expectValues(result, {0, 1, 2, 30, 80, 150, 6, 7, 8, 18, 20, 22});

  Tensor elements = i64({2, 2}, {0, 2, 3, -1});
  Tensor scalars = f32({2}, {-5, -6});
  ASSERT_TRUE(succeeds(
      runKernel("scatter_nd", {}, {&data, &elements, &scalars}, {&result})));
  expectValues(result, {0, 1, -5, 3, 4, 5, 6, 7, 8, 9, 10, -6});

  Tensor bad = i64({2, 2}, {0, 2, 4, 0});
  EXPECT_TRUE(
      failsWith(runKernel("scatter_nd", {}, {&data, &bad, &scalars}, {&result}),
                "index 4 is out of range"));
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

std::vector<float> iota(int count, float start = 0) {
  std::vector<float> values(count);
  for (int i = 0; i < count; ++i)
    values[i] = start + i;
  return values;
}

TEST(ShapeTest, Reshape) {
  Tensor x = f32({2, 3, 4}, iota(24));
  Tensor result(DType::F32, {2, 12});
  ASSERT_TRUE(succeeds(runKernel("reshape", {}, {&x}, {&result})));
  expectValues(result, iota(24));
  // ONNX Reshape shape values: 0 copies a dimension, -1 is inferred.
  Tensor shape = i64({2}, {0, -1});
  ASSERT_TRUE(succeeds(runKernel("reshape", {}, {&x, &shape}, {&result})));
  Tensor otherShape = i64({2}, {4, -1});
  EXPECT_TRUE(failsWith(runKernel("reshape", {}, {&x, &otherShape}, {&result}),
                        "entry 0 is 4"));
  Tensor tooSmall(DType::F32, {5});
  EXPECT_TRUE(failsWith(runKernel("reshape", {}, {&x}, {&tooSmall}),
                        "cannot reshape 2x3x4 into 5"));
}

TEST(ShapeTest, TransposeAndExpand) {
  // numpy: transpose(arange(24).reshape(2, 3, 4), (2, 0, 1)).
  Tensor x = f32({2, 3, 4}, iota(24));
  Tensor transposed(DType::F32, {4, 2, 3});
  ASSERT_TRUE(
      succeeds(runKernel("transpose", Attrs().array("permutation", {2, 0, 1}),
                         {&x}, {&transposed})));
  expectValues(transposed, {0, 4, 8,  12, 16, 20, 1, 5, 9,  13, 17, 21,
                            2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23});
  Tensor wrong(DType::F32, {4, 2, 3});
  EXPECT_TRUE(
      failsWith(runKernel("transpose", Attrs().array("permutation", {2, 0, 0}),
                          {&x}, {&wrong}),
                "exactly once"));

  // numpy: broadcast_to([[1], [2], [3]], (2, 3, 4)).
  Tensor column = f32({3, 1}, {1, 2, 3});
  Tensor expanded(DType::F32, {2, 3, 4});
  ASSERT_TRUE(succeeds(runKernel("expand", {}, {&column}, {&expanded})));
  expectValues(expanded, {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                          1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  Tensor narrower(DType::F32, {2, 2});
  EXPECT_TRUE(failsWith(runKernel("expand", {}, {&column}, {&narrower}),
                        "does not broadcast"));
}

/// Slices arange(20).reshape(4, 5) into a result of `shape`.
Tensor slice(std::vector<int64_t> starts, std::vector<int64_t> ends,
             std::vector<int64_t> axes, std::vector<int64_t> steps,
             const Shape &shape) {
  Tensor x = f32({4, 5}, iota(20));
  Tensor result(DType::F32, shape);
  Attrs attrs;
  attrs.array("starts", starts)
      .array("ends", ends)
      .array("axes", axes)
      .array("steps", steps);
  EXPECT_TRUE(succeeds(runKernel("slice", attrs, {&x}, {&result})));
  return result;
}

TEST(ShapeTest, SliceClampsAndStepsBackwards) {
  // onnxruntime Slice (opset 13) on arange(20).reshape(4, 5).
  constexpr int64_t int64Min = std::numeric_limits<int64_t>::min();
  expectValues(slice({-1}, {int64Min}, {1}, {-2}, {4, 3}),
               {4, 2, 0, 9, 7, 5, 14, 12, 10, 19, 17, 15});
  expectValues(slice({1, 100}, {1000, 0}, {0, 1}, {2, -1}, {2, 4}),
               {9, 8, 7, 6, 19, 18, 17, 16});
  expectValues(slice({-100, -3}, {2, -1}, {0, 1}, {1, 1}, {2, 2}),
               {2, 3, 7, 8});
  expectValues(
      slice({10}, {-100}, {0}, {-1}, {4, 5}),
      {15, 16, 17, 18, 19, 10, 11, 12, 13, 14, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4});
  EXPECT_EQ(slice({3}, {1}, {-1}, {1}, {4, 0}).numElements(), 0);
  // Extreme steps take one element and must not overflow.
  expectValues(
      slice({1}, {5}, {1}, {std::numeric_limits<int64_t>::max()}, {4, 1}),
      {1, 6, 11, 16});
  expectValues(slice({-1}, {int64Min}, {0}, {int64Min}, {1, 5}),
               {15, 16, 17, 18, 19});

  Tensor x = f32({4, 5}, iota(20));
  Tensor result(DType::F32, {4, 5});
  EXPECT_TRUE(failsWith(runKernel("slice",
                                  Attrs()
                                      .array("starts", {0})
                                      .array("ends", {5})
                                      .array("axes", {1})
                                      .array("steps", {0}),
                                  {&x}, {&result}),
                        "step of axis 1 is 0"));
}

TEST(ShapeTest, ConcatAndSplit) {
  Tensor a = f32({2, 1}, {1, 2});
  Tensor b = f32({2, 2}, {3, 4, 5, 6});
  Tensor empty(DType::F32, {2, 0});
  Tensor joined(DType::F32, {2, 3});
  ASSERT_TRUE(succeeds(runKernel("concat", Attrs().integer("axis", -1),
                                 {&a, &empty, &b}, {&joined})));
  expectValues(joined, {1, 3, 4, 2, 5, 6});
  Tensor stacked(DType::F32, {4, 1});
  EXPECT_TRUE(failsWith(
      runKernel("concat", Attrs().integer("axis", 0), {&a, &b}, {&stacked}),
      "input 1"));

  Tensor first(DType::F32, {2, 2}), second(DType::F32, {2, 1});
  ASSERT_TRUE(succeeds(runKernel("split", Attrs().integer("axis", 1), {&joined},
                                 {&first, &second})));
  expectValues(first, {1, 3, 2, 5});
  expectValues(second, {4, 6});
  Tensor tooBig(DType::F32, {2, 3});
  EXPECT_TRUE(failsWith(runKernel("split", Attrs().integer("axis", 1),
                                  {&joined}, {&first, &tooBig}),
                        "add up to 5"));
}

TEST(ShapeTest, MovesAnyElementType) {
  // Data movement copies elements by their size: i64, i1 and f16 here.
  Tensor ids = i64({3}, {7, 8, 9});
  Tensor which = i64({2}, {2, -3});
  Tensor picked(DType::I64, {2});
  ASSERT_TRUE(succeeds(runKernel("gather", Attrs().integer("axis", 0),
                                 {&ids, &which}, {&picked})));
  EXPECT_EQ(contents<int64_t>(picked), (std::vector<int64_t>{9, 7}));

  Tensor flags = i1({2, 3}, {1, 0, 0, 0, 1, 1});
  Tensor transposed(DType::Bool, {3, 2});
  ASSERT_TRUE(
      succeeds(runKernel("transpose", Attrs().array("permutation", {1, 0}),
                         {&flags}, {&transposed})));
  EXPECT_EQ(contents<uint8_t>(transposed),
            (std::vector<uint8_t>{1, 0, 0, 1, 0, 1}));

  // f16 1, 2, 3, 4; the second row is 3, 4.
  Tensor halves = makeTensor<uint16_t>(DType::F16, {2, 2},
                                       {0x3c00, 0x4000, 0x4200, 0x4400});
  Tensor row(DType::F16, {1, 2});
  ASSERT_TRUE(succeeds(runKernel("slice",
                                 Attrs()
                                     .array("starts", {1})
                                     .array("ends", {2})
                                     .array("axes", {0})
                                     .array("steps", {1}),
                                 {&halves}, {&row})));
  EXPECT_EQ(contents<uint16_t>(row), (std::vector<uint16_t>{0x4200, 0x4400}));
}

TEST(ShapeTest, TriluKeepsATriangle) {
  // onnxruntime Trilu (opset 14) on arange(1, 25).reshape(2, 3, 4).
  Tensor x = f32({2, 3, 4}, iota(24, 1));
  Tensor result(DType::F32, {2, 3, 4});
  ASSERT_TRUE(succeeds(runKernel(
      "trilu", Attrs().integer("upper", 1).integer("k", 1), {&x}, {&result})));
  expectValues(result, {0, 2,  3,  4,  0, 0, 7,  8,  0, 0, 0, 12,
                        0, 14, 15, 16, 0, 0, 19, 20, 0, 0, 0, 24});
  ASSERT_TRUE(
      succeeds(runKernel("trilu", Attrs().integer("k", -1), {&x}, {&result})));
  expectValues(result, {0, 0, 0, 0, 5,  0, 0, 0, 9,  10, 0, 0,
                        0, 0, 0, 0, 17, 0, 0, 0, 21, 22, 0, 0});
  // Diagonals past the matrix keep everything or nothing.
  ASSERT_TRUE(succeeds(runKernel(
      "trilu", Attrs().integer("k", std::numeric_limits<int64_t>::max()), {&x},
      {&result})));
  expectValues(result, iota(24, 1));
  ASSERT_TRUE(
      succeeds(runKernel("trilu",
                         Attrs()
                             .integer("upper", 1)
                             .integer("k", std::numeric_limits<int64_t>::max()),
                         {&x}, {&result})));
  expectValues(result, std::vector<float>(24, 0.0f));
}

} // namespace
