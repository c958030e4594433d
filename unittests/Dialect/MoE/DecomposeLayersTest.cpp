//===- DecomposeLayersTest.cpp - moe-decompose-layers through the API -----===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "gtest/gtest.h"

using namespace mlir;
using namespace moe;

namespace {

constexpr const char *kLayerWithSharedExpert = R"mlir(
  func.func @f(%x: tensor<8x32xf32>, %wr: tensor<32x4xf32>,
               %wg: tensor<4x32x64xf32>, %wu: tensor<4x32x64xf32>,
               %wd: tensor<4x64x32xf32>, %su: tensor<32x16xf32>,
               %sd: tensor<16x32xf32>, %sg: tensor<32x16xf32>)
      -> tensor<8x32xf32> {
    %y = moe.layer %x router(%wr) experts(up %wu down %wd gate %wg)
        shared_gate %sg shared_up %su shared_down %sd
        top_k = 2 score = softmax normalize activation = swiglu
        {capacity_factor = 1.0}
        : (tensor<8x32xf32>, tensor<32x4xf32>, tensor<4x32x64xf32>,
           tensor<4x32x64xf32>, tensor<4x64x32xf32>, tensor<32x16xf32>,
           tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
    return %y : tensor<8x32xf32>
  }
)mlir";

TEST(DecomposeLayersTest, ProducesRoutedPartsInOrderWithCapacity) {
  MLIRContext context;
  context.loadDialect<MoEDialect, func::FuncDialect>();
  OwningOpRef<ModuleOp> module =
      parseSourceString<ModuleOp>(kLayerWithSharedExpert, &context);
  ASSERT_TRUE(module);

  PassManager pm(&context);
  pm.addPass(createDecomposeLayersPass());
  ASSERT_TRUE(succeeded(pm.run(*module)));

  SmallVector<StringRef> names;
  module->walk([&](Operation *op) {
    if (isa<MoEDialect>(op->getDialect()))
      names.push_back(op->getName().stripDialect());
  });
  EXPECT_EQ(names, (SmallVector<StringRef>{"router", "dispatch", "expert_ffn",
                                           "combine", "ffn", "add"}));

  // capacity = ceil(1.0 * 8 tokens * 2 / 4 experts) = 4 rows per expert.
  DispatchOp dispatch;
  module->walk([&](DispatchOp op) { dispatch = op; });
  ASSERT_TRUE(dispatch);
  ASSERT_TRUE(dispatch.getCapacity().has_value());
  EXPECT_EQ(*dispatch.getCapacity(), 4u);
  EXPECT_EQ(dispatch.getRows().getType().getShape(),
            ArrayRef<int64_t>({16, 32}));
  EXPECT_TRUE(succeeded(verify(*module)));
}

} // namespace
