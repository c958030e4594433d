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

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
