//===- ModelExtraction.cpp - the planner's view of moe IR -----------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/Transforms/ModelExtraction.h"

#include "moe/Dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace moe;

namespace {

/// Attention as the scores show it: Softmax over [batch, heads, query, key]
/// computed by a MatMul of [batch, heads, query, head_dim] queries.
struct Attention {
  int64_t heads = 0, headDim = 0;
};

std::optional<Attention> findAttention(func::FuncOp function) {
  std::optional<Attention> found;
  function.walk([&](SoftmaxOp softmax) {
    ArrayRef<int64_t> scores = softmax.getInput().getType().getShape();
    if (found || scores.size() != 4)
      return;
    // The scores come from queries @ keys^T, possibly scaled or masked.
    Value value = softmax.getInput();
    while (Operation *op = value.getDefiningOp()) {
      if (auto matmul = dyn_cast<MatMulOp>(op)) {
        ArrayRef<int64_t> queries = matmul.getLhs().getType().getShape();
        if (queries.size() == 4 && queries[1] == scores[1])
          found = Attention{scores[1], queries[3]};
        return;
      }
      if (op->getNumOperands() == 0 || !isa<AddOp, MulOp, DivOp, WhereOp>(op))
        return;
      // Follow the operand with the scores' shape.
      Value next;
      for (Value operand : op->getOperands())
        if (cast<RankedTensorType>(operand.getType()).getShape() == scores)
          next = operand;
      if (!next)
        return;
      value = next;
    }
  });
  return found;
}

} // namespace

FailureOr<ExtractedModel> moe::extractModel(func::FuncOp function) {
  ExtractedModel extracted;
  plan::ModelDescription &model = extracted.model;
  model.name = function.getName().str();
  std::optional<Attention> attention = findAttention(function);
  bool anyF32 = false;
  WalkResult result = function.walk([&](LayerOp layer) -> WalkResult {
    RankedTensorType input = layer.getInput().getType();
    RankedTensorType up = layer.getUpWeight().getType();
    if (!input.hasStaticShape() || !up.hasStaticShape())
      return layer.emitOpError()
             << "needs static shapes to be planned; compile with "
                "--dim-params or --shape";
    anyF32 |= input.getElementType().isF32();
    plan::LayerDescription description;
    description.kind = plan::LayerKind::MoE;
    description.hidden = input.getDimSize(1);
    description.numExperts = layer.getNumExperts();
    description.topK = layer.getTopK();
    description.expertInter = up.getDimSize(2);
    description.gatedMLP = isGatedActivation(layer.getActivation());
    if (layer.hasSharedExperts()) {
      description.numSharedExperts = 1;
      description.sharedExpertInter =
          layer.getSharedUpWeight().getType().getDimSize(1);
    }
    if (attention) {
      description.numHeads = attention->heads;
      description.numKVHeads = attention->heads;
      description.headDim = attention->headDim;
    } else {
      // No attention in the graph: heads of width 0, which cost nothing
      // (as many as any tensor-parallel degree dividing hidden can split).
      description.numHeads = description.numKVHeads = description.hidden;
      description.headDim = 0;
    }
    if (model.layers.empty())
      model.sequence = input.getDimSize(0);
    model.layers.push_back(description);
    return WalkResult::advance();
  });
  if (result.wasInterrupted())
    return failure();
  if (model.layers.empty())
    return function.emitOpError()
           << "has no moe.layer to plan; the planner prices Mixture-of-"
              "Experts layers (see docs/user-guide.md for what is "
              "recognised)";
  if (!attention)
    extracted.notes.push_back("no attention found in the graph: none priced");
  else
    extracted.notes.push_back("attention: " + std::to_string(attention->heads) +
                              " heads of width " +
                              std::to_string(attention->headDim) +
                              " (key/value heads assumed equal)");
  // The vocabulary from the embedding lookup: a gather of rows of a weight.
  model.vocab = 1;
  function.walk([&](GatherOp gather) {
    if (gather.getData().getDefiningOp<WeightRefOp>() &&
        gather.getAxis() == 0 && gather.getData().getType().getRank() == 2)
      model.vocab =
          std::max(model.vocab, gather.getData().getType().getDimSize(0));
  });
  if (model.vocab == 1)
    extracted.notes.push_back("no embedding found: vocabulary priced as 1");
  // Token ids [batch, sequence] give the step's shape; otherwise the first
  // layer's tokens are one sequence.
  model.batch = 1;
  for (BlockArgument argument : function.getArguments()) {
    auto type = dyn_cast<RankedTensorType>(argument.getType());
    if (type && type.getRank() == 2 && type.hasStaticShape() &&
        isa<IntegerType>(type.getElementType()) &&
        type.getNumElements() == model.sequence) {
      model.batch = type.getDimSize(0);
      model.sequence = type.getDimSize(1);
    }
  }
  model.dtype = anyF32 ? plan::DataType::FP32 : plan::DataType::BF16;
  return extracted;
}
