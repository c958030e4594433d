// RUN: moe-opt %s --moe-partition='plan="dp=2 ep=2"' | FileCheck %s

// Two data-parallel replicas of two expert-parallel ranks: a 1x2x2x1 grid
// (rank = d * 2 + e). The function was imported for one replica's share of
// the batch; it now takes the whole batch, each replica slices its share
// (grid axis 1), the layer splits tokens and experts over axis 2, and the
// outputs are gathered over the replicas at the end. The replica slice and
// gather carry no pipeline stage: every rank runs them.
// Weights are moe.weight references, not inputs: only inputs are split.
// CHECK: shard.grid @pp_dp_ep_tp(shape = 1x2x2x1)
// CHECK-LABEL: func.func @replicas
// CHECK-SAME: (%[[X:.*]]: tensor<32x64xf32>) -> tensor<32x64xf32>
// CHECK: %[[MINE:.*]] = shard.all_slice %[[X]] on @pp_dp_ep_tp grid_axes = [1] slice_axis = 0 : tensor<32x64xf32> -> tensor<16x64xf32>
// CHECK: shard.all_slice %[[MINE]] on @pp_dp_ep_tp grid_axes = [2] slice_axis = 0 : tensor<16x64xf32> -> tensor<8x64xf32>
// CHECK: moe.ragged_all_to_all {{.*}} on @pp_dp_ep_tp grid_axes = [2]
// CHECK: %[[LAYER:.*]] = shard.all_gather %{{.*}} on @pp_dp_ep_tp grid_axes = [2] gather_axis = 0 : tensor<8x64xf32> -> tensor<16x64xf32>
// CHECK: %[[SUM:.*]] = moe.add %[[LAYER]], %[[MINE]]
// CHECK: %[[ALL:.*]] = shard.all_gather %[[SUM]] on @pp_dp_ep_tp grid_axes = [1] gather_axis = 0 : tensor<16x64xf32> -> tensor<32x64xf32>
// CHECK: return %[[ALL]]
moe.weight @router : tensor<64x4xf32>
    storage = <"w.bin", offset = 0, length = 1024>
moe.weight @up : tensor<4x64x128xf32>
    storage = <"w.bin", offset = 1024, length = 131072>
moe.weight @down : tensor<4x128x64xf32>
    storage = <"w.bin", offset = 132096, length = 131072>
func.func @replicas(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %wr = moe.weight_ref @router : tensor<64x4xf32>
  %wu = moe.weight_ref @up : tensor<4x64x128xf32>
  %wd = moe.weight_ref @down : tensor<4x128x64xf32>
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  %r = moe.add %y, %x : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  return %r : tensor<16x64xf32>
}
