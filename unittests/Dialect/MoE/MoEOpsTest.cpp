//===- MoEOpsTest.cpp - moe dialect helpers and verifiers -----------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "gtest/gtest.h"

using namespace mlir;
using namespace moe;

namespace {

class MoEOpsTest : public ::testing::Test {
protected:
  MoEOpsTest() { context.loadDialect<MoEDialect, func::FuncDialect>(); }

  /// Parses `source`, collecting diagnostics instead of printing them.
  OwningOpRef<ModuleOp> parse(StringRef source) {
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
      diagnostics.push_back(diag.str());
      return success();
    });
    return parseSourceString<ModuleOp>(source, &context);
  }

  MLIRContext context;
  std::vector<std::string> diagnostics;
};

constexpr int64_t kDyn = ShapedType::kDynamic;

TEST(BroadcastShapesTest, FollowsNumpyRules) {
  EXPECT_EQ(*broadcastShapes({4, 8}, {8}), (SmallVector<int64_t>{4, 8}));
  EXPECT_EQ(*broadcastShapes({4, 1}, {1, 8}), (SmallVector<int64_t>{4, 8}));
  EXPECT_EQ(*broadcastShapes({}, {2, 3}), (SmallVector<int64_t>{2, 3}));
  EXPECT_EQ(*broadcastShapes({2, 1, 3}, {5, 1}),
            (SmallVector<int64_t>{2, 5, 3}));
  EXPECT_TRUE(failed(broadcastShapes({4, 8}, {4})));
  EXPECT_TRUE(failed(broadcastShapes({3}, {2, 4})));
}

TEST(BroadcastShapesTest, DynamicDimensionsStayOpenOrTakeTheStaticSize) {
  EXPECT_EQ(*broadcastShapes({kDyn, 8}, {1, 8}),
            (SmallVector<int64_t>{kDyn, 8}));
  EXPECT_EQ(*broadcastShapes({kDyn, 8}, {4, 8}), (SmallVector<int64_t>{4, 8}));
  EXPECT_EQ(*broadcastShapes({kDyn}, {kDyn}), (SmallVector<int64_t>{kDyn}));
}

TEST_F(MoEOpsTest, StorageSizesPackSubByteTypes) {
  Builder b(&context);
  EXPECT_EQ(getStorageSizeInBytes(b.getF32Type(), 10), 40);
  EXPECT_EQ(getStorageSizeInBytes(b.getBF16Type(), 10), 20);
  EXPECT_EQ(getStorageSizeInBytes(b.getF16Type(), 3), 6);
  EXPECT_EQ(getStorageSizeInBytes(b.getI8Type(), 7), 7);
  EXPECT_EQ(getStorageSizeInBytes(b.getIntegerType(4), 7), 4);
  EXPECT_EQ(getStorageSizeInBytes(b.getIntegerType(4), 8), 4);
  EXPECT_EQ(getStorageSizeInBytes(b.getI1Type(), 5), 5);
  EXPECT_EQ(getStorageSizeInBytes(b.getIndexType(), 1), std::nullopt);
  EXPECT_EQ(getStorageSizeInBytes(b.getIntegerType(3), 1), std::nullopt);
}

TEST_F(MoEOpsTest, GatedActivations) {
  EXPECT_TRUE(isGatedActivation(ActivationKind::swiglu));
  EXPECT_TRUE(isGatedActivation(ActivationKind::geglu));
  EXPECT_FALSE(isGatedActivation(ActivationKind::silu));
  EXPECT_FALSE(isGatedActivation(ActivationKind::relu));
}

TEST_F(MoEOpsTest, WeightRefReadsDeclaredTypeAndSlice) {
  OwningOpRef<ModuleOp> module = parse(R"mlir(
    moe.weight @up : tensor<8x64x128xbf16>
        storage = <"model.onnx.data", offset = 0, length = 131072>
    func.func @f() -> tensor<2x64x128xbf16> {
      %0 = moe.weight_ref @up slice = <offsets = [6, 0, 0], sizes = [2, 64, 128]>
          : tensor<2x64x128xbf16>
      return %0 : tensor<2x64x128xbf16>
    }
  )mlir");
  ASSERT_TRUE(module) << (diagnostics.empty() ? "" : diagnostics.front());
  auto weight = cast<WeightOp>(module->getBody()->front());
  EXPECT_EQ(weight.getStorage().getFile(), "model.onnx.data");
  EXPECT_EQ(weight.getStorage().getLength(), 131072);
  WeightRefOp ref;
  module->walk([&](WeightRefOp op) { ref = op; });
  ASSERT_TRUE(ref);
  ASSERT_TRUE(ref.getSlice().has_value());
  EXPECT_EQ(ref.getSlice()->getOffsets(), ArrayRef<int64_t>({6, 0, 0}));
}

TEST_F(MoEOpsTest, WeightRefSliceOutOfBoundsIsRejected) {
  OwningOpRef<ModuleOp> module = parse(R"mlir(
    moe.weight @up : tensor<8x64xf32>
        storage = <"w.bin", offset = 0, length = 2048>
    func.func @f() -> tensor<2x64xf32> {
      %0 = moe.weight_ref @up slice = <offsets = [7, 0], sizes = [2, 64]>
          : tensor<2x64xf32>
      return %0 : tensor<2x64xf32>
    }
  )mlir");
  EXPECT_FALSE(module);
  ASSERT_EQ(diagnostics.size(), 1u);
  EXPECT_NE(diagnostics[0].find("slice [7, 9) of dimension 0 exceeds size 8"),
            std::string::npos)
      << diagnostics[0];
}

TEST_F(MoEOpsTest, LayerBuiltInCodeVerifiesAndReportsExperts) {
  OpBuilder b(&context);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  auto f32 = b.getF32Type();
  auto tensor = [&](ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, f32);
  };
  auto func = func::FuncOp::create(
      b, loc, "layer",
      b.getFunctionType({tensor({16, 64}), tensor({64, 8}),
                         tensor({8, 64, 128}), tensor({8, 128, 64})},
                        {tensor({16, 64})}));
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToEnd(entry);
  auto layer = LayerOp::create(
      b, loc, tensor({16, 64}), entry->getArgument(0), entry->getArgument(1),
      /*router_bias=*/Value(), /*correction_bias=*/Value(),
      /*gate_weight=*/Value(), entry->getArgument(2), entry->getArgument(3),
      Value(), Value(), Value(), Value(), Value(), Value(), Value(),
      /*top_k=*/2, ScoreFunction::softmax, /*normalize=*/true,
      ActivationKind::gelu, /*num_groups=*/1, /*top_k_groups=*/1,
      /*routed_scaling_factor=*/llvm::APFloat(1.0),
      /*capacity_factor=*/FloatAttr());
  func::ReturnOp::create(b, loc, layer.getResult());
  EXPECT_TRUE(succeeded(verify(*module)));
  EXPECT_EQ(layer.getNumExperts(), 8);
  EXPECT_FALSE(layer.hasSharedExperts());

  // Switching to a gated activation without a gate weight must fail.
  layer.setActivation(ActivationKind::swiglu);
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    diagnostics.push_back(diag.str());
    return success();
  });
  EXPECT_TRUE(failed(verify(*module)));
  ASSERT_FALSE(diagnostics.empty());
  EXPECT_NE(diagnostics[0].find("is gated and needs a gate weight"),
            std::string::npos);
}

} // namespace
