//===- Passes.td - moe dialect passes ----------------------*- tablegen -*-===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def DecomposeLayersPass : Pass<"moe-decompose-layers"> {
  let summary = "Rewrites each moe.layer into router, dispatch, expert "
                "compute and combine.";
  let description = [{
    Every `moe.layer` becomes

    ```mlir
    %weights, %experts = moe.router ...
    %rows, %counts, %sources = moe.dispatch %x, %experts ...
    %out = moe.expert_ffn %rows, %counts ...
    %routed = moe.combine %out, %sources, %weights ...
    ```

    plus, for shared experts, `moe.ffn` (scaled by
    `sigmoid(x @ shared_expert_gate)` when the layer has that gate) added to
    the routed result. A capacity factor becomes a static per-expert
    `capacity` on dispatch and expert compute; it needs a static token count.
    These are the pieces the partitioner places on ranks and connects with
    `moe.ragged_all_to_all`.
  }];
  let dependentDialects = ["::moe::MoEDialect"];
}

def RaiseLayersPass : Pass<"moe-raise-layers"> {
  let summary = "Recognises exported Mixture-of-Experts blocks and rewrites "
                "each into one moe.layer.";
  let description = [{
    Finds the "gathered experts" form that Hugging Face transformers'
    batched_mm implementation exports (both torch.onnx exporters): softmax
    router and top-k, per (token, slot) expert weights gathered from 3-D
    weights, batched SiLU-gated FFN, routing-weighted sum over the slots.
    Each match becomes a moe.layer whose weights are transposes and slices
    of the original weights (the runtime folds them when loading); the
    matched ops are erased. A subgraph that differs in any checked detail is
    left as it is.

    ```mlir
    // before: moe.gemm, moe.softmax, moe.top_k, moe.gather (x2),
    //         moe.matmul (x2), moe.split, moe.sigmoid, moe.mul, moe.reduce...
    // after:
    %y = moe.layer %x router(%wr) experts(up %u down %d gate %g)
        top_k = 2 score = softmax normalize activation = swiglu : ...
    ```
  }];
  let dependentDialects = ["::moe::MoEDialect"];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
