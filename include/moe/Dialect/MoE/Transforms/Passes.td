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

def PartitionPass : Pass<"moe-partition", "::mlir::ModuleOp"> {
  let summary = "Applies a parallel plan: pipeline stages, data-parallel "
                "replicas, and every moe.layer split over expert- and "
                "tensor-parallel ranks.";
  let description = [{
    Reads the plan from the `plan` option or, when it is empty, from the
    module's `moe.plan` attribute (which `moe-compile --machine` sets), in
    the plan-string form ("ep=4 tp=1 pp=1 dp=1 ..."). The module becomes one
    SPMD program for a grid of `ep x tp` ranks, `shard.grid @ep(shape = ep)`
    or, with tensor parallelism, `@ep_tp(shape = ep x tp)` (rank =
    e * tp + t); each rank finds its own position at run time.

    Every `moe.layer` with `T` tokens and `E` experts becomes, on each rank:

    ```mlir
    %x_r  = shard.all_slice %x on @ep slice_axis = 0  // T/ep tokens
    %w, %e = moe.router %x_r ...
    %rows, %counts, %src = moe.dispatch %x_r, %e ...
    // send_counts[p]: rows for the experts of rank p (E/ep each, in order)
    %recv, %rc = moe.ragged_all_to_all %rows, %send on @ep
    %grouped = moe.transpose_chunks %recv, %peer_counts // [ep, E/ep] chunks
    %out = moe.expert_ffn %grouped, %local_counts       // E/ep experts
    %back = moe.transpose_chunks %out, %peer_counts^T
    %ret, %_ = moe.ragged_all_to_all %back, %rc on @ep
    %y_r = moe.combine %ret, %src, %w (+ shared experts on %x_r)
    %y = shard.all_gather %y_r on @ep gather_axis = 0
    ```

    Expert weights are `shard.all_slice`d along the expert dimension, so a
    rank holds only its `E/ep` experts: rank `r` owns positions
    `r*E/ep .. (r+1)*E/ep - 1` of the order the layer's `moe.expert_ranks`
    attribute gives (the plan's placement; contiguous blocks without it).
    A placement that is not contiguous renumbers the selected experts by
    their position in that order (`moe.gather` of a constant table) and
    records the order on the dispatch (`expert_order`). A placement that
    replicates hot experts or leaves slots empty (an expert count ep does
    not divide) comes as `moe.expert_slots`: the expert of each of the
    `ep x S` slots, -1 for an empty one; dispatch then counts slots, and
    each source rank sends a replicated expert's tokens to copy
    `rank mod copies` (a per-rank table). Capacity mode needs one slot per
    expert. Everything outside
    MoE layers is computed on every rank. Received rows are held in buffers
    of the worst-case size (every token of the group on one rank); only the
    received rows are computed.

    With `tp > 1` (the plan's `etp` must equal `tp`), every expert's and
    shared expert's intermediate columns are split over grid axis 1 as well
    (gate and up by columns, down by rows, the down bias divided by `tp`),
    and the layer's output is summed with `shard.all_reduce` over axis 1
    before the gather.

    With a capacity factor the exchange is even and every shape is static:
    each rank dispatches its `T/ep` tokens into `E` blocks of
    `C = ceil(factor * (T/ep) * top_k / E)` rows (the capacity of a rank's
    tokens; a token over it on its own rank is dropped, earliest tokens
    kept), sends `E/ep * C` rows to every peer and runs its experts on the
    `ep * C` rows of each, padding included.

    With `pp > 1` the grid is `@pp_ep_tp(shape = pp x ep x tp)` and the MoE
    layers are split into stages of consecutive layers (the plan's
    `stages=` counts, else as even as possible). Walking the function in
    order, an operation belongs to the stage of the first layer whose last
    operation is not yet behind it (attention goes with its MoE block; the
    operations after the last layer go to the last stage) and carries
    `moe.stage`; operations on weights and constants alone carry none (every
    rank evaluates what its stage needs at load). Each value a later stage
    uses is handed there by a `moe.stage_transfer` right after it is
    computed, and the function's results go from their stage to all others,
    so every rank ends with the whole outputs. The function records the grid
    and axis of the stages (`moe.pipeline_grid`, `moe.pipeline_axis`).

    With `dp > 1` the grid is `@pp_dp_ep_tp(shape = pp x dp x ep x tp)`:
    the function, imported for one replica's share of the batch, takes the
    whole batch; every input is `shard.all_slice`d along its first
    dimension over the replicas (grid axis 1) and every output
    `shard.all_gather`ed back, on every rank.

    Micro-batches do not change the partition: moe-compile compiles one
    micro-batch and moe-run runs them in turn. A layer whose token count
    `ep` does not divide is rejected (so is its expert count, without
    `moe.expert_slots`), as are intermediate sizes `tp` does not divide and
    a plan with more stages than MoE layers.
  }];
  let options = [
    Option<"plan", "plan", "std::string", /*default=*/"\"\"",
           "Plan string (for example \"ep=4\" or \"'ep=2 tp=2'\"); "
           "default: the module's moe.plan attribute">,
    Option<"singleDeviceGrid", "single-device-grid", "bool",
           /*default=*/"false",
           "Partition a one-rank plan too: a grid of one device whose "
           "collectives exchange with the rank itself (to run a backend's "
           "collective paths on one device, e.g. NCCL on one GPU)">
  ];
  let dependentDialects = ["::moe::MoEDialect",
                           "::mlir::shard::ShardDialect",
                           "::mlir::arith::ArithDialect"];
}

def RaiseLayersPass : Pass<"moe-raise-layers"> {
  let summary = "Recognises exported Mixture-of-Experts blocks and rewrites "
                "each into one moe.layer.";
  let description = [{
    Finds the "gathered experts" form that Hugging Face transformers'
    batched_mm implementation exports (both torch.onnx exporters): softmax
    router and top-k, per (token, slot) expert weights gathered from 3-D
    weights, batched SiLU-gated FFN, routing-weighted sum over the slots.
    DeepSeek-V3's router is recognised too: sigmoid scores, a correction
    bias on the choice, groups rated by their two best choices with the
    others masked by -inf (a 0.0 fill selects differently and is left
    alone), the plain scores of the chosen experts normalised (an epsilon
    below 1e-12 on the sum is absorbed) and scaled by a constant. A shared
    SwiGLU expert added to the layer's output, also after it is reshaped
    back to [batch, sequence, hidden], joins the layer.
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

def LowerElementwiseToLinalgPass : Pass<"moe-lower-elementwise-to-linalg"> {
  let summary = "Rewrites element-wise, normalisation, routing and data "
                "movement moe ops into linalg on tensors, the entry to the "
                "GPU kernel path.";
  let description = [{
    The first step of the CUDA lowering: from linalg, upstream passes fuse
    neighbouring element-wise generics into one, bufferise, map the loops
    onto blocks and threads, outline the kernels and compile them through
    NVVM to PTX (test/CUDA/generated-kernels.mlir runs the whole path and
    assembles the result with ptxas).

    Rewritten, on statically shaped float tensors: the unary math ops
    (neg, abs, exp, log, sqrt, reciprocal, tanh, erf, cos, sin, sigmoid,
    relu, silu, gelu with erf or tanh), the broadcasting binary ops (add,
    sub, mul, div, pow, max, min; numpy broadcasting becomes the generic's
    indexing maps, with a size-1 dimension read at index 0), rms_norm
    over the last axis (a sum-of-squares reduction generic, then an
    element-wise generic that scales by the rsqrt of the mean plus epsilon
    and by `scale`) and softmax over the last axis (row maxima, sums of the
    shifted exponentials, quotients), top_k over the last axis (k reduction
    generics, pass j keeping the best element ranked after pass j-1's pick
    in the order value then lower index, so ties go to the lower index as
    in ONNX and a thread needs no mask of earlier picks) and moe.router
    without expert groups (a linalg.matmul for the logits in f32, bias,
    softmax or sigmoid scores, top-k on the scores plus the correction bias,
    the plain scores of the picks gathered, normalised and scaled).
    Data movement and typed element-wise ops of any element type become
    generics too: transpose and expand (indexing maps), slice, gather and
    concat (tensor.extract at computed indices; gather clamps indices
    into the axis, since generated code cannot report a bad one), where,
    compare, cast, is_nan, and, or, not, float reduce over any axes
    (kept dimensions iterated first, f32 accumulation), split, and
    scatter_nd with constant indices that form a box of the data, a run of
    rows or a few scattered slots (read as a gather: each element computes
    which update lands on it). Anything else
    (reshape, matmul, the other MoE ops, integer arithmetic), grouped
    routing and dynamic shapes are left as they are: they go to views,
    cuBLAS and the runtime's kernels.

    ```mlir
    // before
    %s = moe.silu %g : tensor<4x8xf32>
    %y = moe.mul %s, %u : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    // after: two linalg.generic ops (one after linalg-fuse-elementwise-ops)
    ```
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
