// RUN: moe-opt %s --moe-partition='plan="pp=2 ep=2"' | FileCheck %s
// RUN: not moe-opt %s --moe-partition='plan="pp=2 stages=1,2"' 2>&1 | FileCheck %s --check-prefix=STAGES

// Two pipeline stages of one layer each, with expert parallelism inside
// each stage: a 2 x 2 x 1 grid, rank = (stage * 2 + e). Layer 0's block
// (and the norm before it) runs on stage 0; the residual add after it
// opens stage 1, so both of its operands travel there, right after they are
// computed. The output, computed on stage 1, travels back to stage 0 so
// that every rank ends with it. Constants (and weights, moe.weight_ref, and
// what is computed from them alone) carry no stage: each rank evaluates
// what its stage needs when it loads. Here the weights are arguments, so
// their slices belong to a stage.
// CHECK: shard.grid @pp_ep_tp(shape = 2x2x1)
// CHECK-LABEL: func.func @two_layers
// CHECK-SAME: attributes {moe.pipeline_axis = 0 : i64, moe.pipeline_grid = @pp_ep_tp}
func.func @two_layers(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<16x64xf32> {
  // CHECK: %[[N0:.*]] = moe.relu %{{.*}} {moe.stage = 0 : i64}
  // CHECK: shard.all_slice %[[N0]] on @pp_ep_tp grid_axes = [1] slice_axis = 0 {moe.stage = 0 : i64}
  // CHECK: arith.constant dense<2> : tensor<2xi64>
  // CHECK-NEXT: moe.ragged_all_to_all {{.*}} on @pp_ep_tp grid_axes = [1] {moe.stage = 0 : i64}
  // CHECK: shard.all_slice %{{.*}} on @pp_ep_tp grid_axes = [1] slice_axis = 0 {moe.stage = 0 : i64} : tensor<4x128x64xf32> -> tensor<2x128x64xf32>
  // CHECK: %[[Y0:.*]] = shard.all_gather {{.*}} on @pp_ep_tp grid_axes = [1] gather_axis = 0 {moe.stage = 0 : i64}
  // CHECK-NEXT: %[[Y0T:.*]] = moe.stage_transfer %[[Y0]] on @pp_ep_tp grid_axes = [0] from = 0 to = [1]
  // The function argument %x is on every rank: it never travels.
  // CHECK: %[[H1:.*]] = moe.add %[[Y0T]], %arg0 {moe.stage = 1 : i64}
  // CHECK: %[[Y1:.*]] = shard.all_gather {{.*}} {moe.stage = 1 : i64}
  // CHECK: %[[OUT:.*]] = moe.add %[[Y1]], %[[H1]] {moe.stage = 1 : i64}
  // CHECK-NEXT: %[[BACK:.*]] = moe.stage_transfer %[[OUT]] on @pp_ep_tp grid_axes = [0] from = 1 to = [0]
  // CHECK-NEXT: return %[[BACK]]
  %n0 = moe.relu %x : tensor<16x64xf32>
  %y0 = moe.layer %n0 router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  %h1 = moe.add %y0, %x : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  %y1 = moe.layer %h1 router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  %out = moe.add %y1, %h1 : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  return %out : tensor<16x64xf32>
}

// STAGES: error: plan "pp=2 stages=1,2" puts 3 MoE layers in 2 stages, but the module has 2 MoE layers
// RUN: not moe-opt %s --moe-partition='plan="pp=4"' 2>&1 | FileCheck %s --check-prefix=TOO-MANY
// TOO-MANY: error: plan "pp=4" has 4 pipeline stages but the module has 2 MoE layers; every stage needs one
