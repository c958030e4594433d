// RUN: moe-opt %s --moe-partition='plan="ep=2 tp=2"' | FileCheck %s
// RUN: moe-opt %s --moe-partition='plan="ep=1 tp=2"' | FileCheck %s --check-prefix=TP-ONLY

// Expert and tensor parallelism on a 2 x 2 grid (rank = e * 2 + t): tokens
// and experts split over grid axis 0 as with ep alone, every expert's
// intermediate columns over axis 1. gate / up and their biases split their
// last dimension, down its middle one; the down bias is halved, since the
// two tensor-parallel partial sums each add it before the all-reduce. The
// shared expert splits the same way. The layer ends with the all-reduce
// over axis 1, then the gather over axis 0.
// CHECK: shard.grid @ep_tp(shape = 2x2)
// CHECK-LABEL: func.func @layer
func.func @layer(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wg: tensor<4x64x128xf32>, %wu: tensor<4x64x128xf32>,
    %wd: tensor<4x128x64xf32>, %bg: tensor<4x128xf32>, %bd: tensor<4x64xf32>,
    %sg: tensor<64x256xf32>, %su: tensor<64x256xf32>, %sd: tensor<256x64xf32>,
    %seg: tensor<64x1xf32>) -> tensor<16x64xf32> {
  // CHECK: %[[XL:.*]] = shard.all_slice %{{.*}} on @ep_tp grid_axes = [0] slice_axis = 0 : tensor<16x64xf32> -> tensor<8x64xf32>
  // CHECK: moe.ragged_all_to_all {{.*}} on @ep_tp grid_axes = [0] : (tensor<16x64xf32>, tensor<2xi64>) -> (tensor<32x64xf32>, tensor<2xi64>)
  // CHECK-DAG: %[[D:.*]] = shard.all_slice %{{.*}} on @ep_tp grid_axes = [1] slice_axis = 1 : tensor<2x128x64xf32> -> tensor<2x64x64xf32>
  // CHECK-DAG: %[[GB:.*]] = shard.all_slice %{{.*}} on @ep_tp grid_axes = [1] slice_axis = 1 : tensor<2x128xf32> -> tensor<2x64xf32>
  // CHECK-DAG: %[[HALF:.*]] = arith.constant dense<5.000000e-01> : tensor<f32>
  // CHECK-DAG: %[[DB:.*]] = moe.mul %{{.*}}, %[[HALF]] : (tensor<2x64xf32>, tensor<f32>) -> tensor<2x64xf32>
  // CHECK-COUNT-2: shard.all_slice %{{.*}} on @ep_tp grid_axes = [1] slice_axis = 2 : tensor<2x64x128xf32> -> tensor<2x64x64xf32>
  // CHECK: moe.expert_ffn %{{.*}}, %{{.*}} gate %{{.*}} up %{{.*}} down %[[D]] gate_bias %[[GB]] down_bias %[[DB]] activation = swiglu : (tensor<32x64xf32>, tensor<2xi64>, tensor<2x64x64xf32>, tensor<2x64x64xf32>, tensor<2x64x64xf32>, tensor<2x64xf32>, tensor<2x64xf32>) -> tensor<32x64xf32>
  // CHECK: moe.ragged_all_to_all {{.*}} on @ep_tp grid_axes = [0] : (tensor<32x64xf32>, tensor<2xi64>) -> (tensor<16x64xf32>, tensor<2xi64>)
  // CHECK: %[[ROUTED:.*]] = moe.combine
  // CHECK-DAG: %[[SG:.*]] = shard.all_slice %{{.*}} on @ep_tp grid_axes = [1] slice_axis = 1 : tensor<64x256xf32> -> tensor<64x128xf32>
  // CHECK-DAG: %[[SU:.*]] = shard.all_slice %{{.*}} on @ep_tp grid_axes = [1] slice_axis = 1 : tensor<64x256xf32> -> tensor<64x128xf32>
  // CHECK-DAG: %[[SD:.*]] = shard.all_slice %{{.*}} on @ep_tp grid_axes = [1] slice_axis = 0 : tensor<256x64xf32> -> tensor<128x64xf32>
  // CHECK: %[[SHARED:.*]] = moe.ffn %[[XL]] gate %[[SG]] up %[[SU]] down %[[SD]] activation = swiglu
  // CHECK: %[[PARTIAL:.*]] = moe.add %[[ROUTED]], %{{.*}}
  // CHECK-NEXT: %[[SUMMED:.*]] = shard.all_reduce %[[PARTIAL]] on @ep_tp grid_axes = [1] : tensor<8x64xf32> -> tensor<8x64xf32>
  // CHECK-NEXT: shard.all_gather %[[SUMMED]] on @ep_tp grid_axes = [0] gather_axis = 0 : tensor<8x64xf32> -> tensor<16x64xf32>
  //
  // Tensor parallelism alone: no exchange of tokens, every rank routes all
  // of them to all experts' column slices, and one all-reduce.
  // TP-ONLY: shard.grid @ep_tp(shape = 1x2)
  // TP-ONLY-NOT: shard.all_slice {{.*}} grid_axes = [0]
  // TP-ONLY-NOT: moe.ragged_all_to_all
  // TP-ONLY: moe.dispatch %{{.*}}, %{{.*}} num_experts = 4 : (tensor<16x64xf32>
  // TP-ONLY: moe.expert_ffn {{.*}} : (tensor<32x64xf32>, tensor<4xi64>, tensor<4x64x64xf32>
  // TP-ONLY: shard.all_reduce %{{.*}} on @ep_tp grid_axes = [1] : tensor<16x64xf32> -> tensor<16x64xf32>
  // TP-ONLY-NOT: shard.all_gather
  %y = moe.layer %x router(%wr)
      experts(up %wu down %wd gate %wg gate_bias %bg down_bias %bd)
      shared_gate %sg shared_up %su shared_down %sd shared_expert_gate %seg
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x64x128xf32>, tensor<4x128x64xf32>, tensor<4x128xf32>,
         tensor<4x64xf32>, tensor<64x256xf32>, tensor<64x256xf32>,
         tensor<256x64xf32>, tensor<64x1xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}
