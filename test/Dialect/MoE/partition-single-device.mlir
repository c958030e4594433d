// RUN: moe-opt %s --moe-partition='plan="ep=1" single-device-grid=true' | FileCheck %s
// RUN: moe-opt %s --moe-partition='plan="ep=1"' | FileCheck %s --check-prefix=UNPARTITIONED

// A one-rank plan normally leaves the module alone; with
// single-device-grid the layer keeps the exchange of expert parallelism on
// a grid of one device (the rank sends every row to itself), so that a
// backend's collectives run on one device (NCCL on one GPU).
// UNPARTITIONED-NOT: shard.
// UNPARTITIONED-NOT: ragged_all_to_all
// CHECK: shard.grid @ep(shape = 1)
// CHECK-LABEL: func.func @mixtral
// CHECK: %[[ROWS:.*]], %[[COUNTS:.*]], %[[SRC:.*]] = moe.dispatch
// CHECK: moe.ragged_all_to_all %[[COUNTS]], %{{.*}} on @ep grid_axes = [0] : (tensor<8xi64>, tensor<1xi64>) -> (tensor<8xi64>, tensor<1xi64>)
// CHECK: %[[RECV:.*]], %[[RC:.*]] = moe.ragged_all_to_all %[[ROWS]], %{{.*}} on @ep grid_axes = [0] : (tensor<32x64xf32>, tensor<1xi64>) -> (tensor<32x64xf32>, tensor<1xi64>)
// CHECK: moe.transpose_chunks %[[RECV]]
// Every expert stays on the one rank: no weight is sliced.
// CHECK-NOT: shard.all_slice
// CHECK: moe.expert_ffn {{.*}} : (tensor<32x64xf32>, tensor<8xi64>, tensor<8x64x128xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<32x64xf32>
// CHECK: moe.ragged_all_to_all {{.*}}, %[[RC]] on @ep
// CHECK: shard.all_gather {{.*}} on @ep grid_axes = [0] gather_axis = 0 : tensor<16x64xf32> -> tensor<16x64xf32>
func.func @mixtral(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>,
                   %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>,
                   %wd: tensor<8x128x64xf32>) -> tensor<16x64xf32> {
  %y = moe.layer %x router(%wr) experts(up %wu down %wd gate %wg)
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}
