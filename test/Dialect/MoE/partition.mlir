// RUN: moe-opt %s -moe-partition="plan=ep=2" -split-input-file -verify-diagnostics | FileCheck %s
// RUN: not moe-opt %s --moe-partition='plan="ep=2 tp=2 etp=1"' -split-input-file 2>&1 | FileCheck %s --check-prefix=ETP
// RUN: not moe-opt %s --moe-partition -split-input-file 2>&1 | FileCheck %s --check-prefix=NO-PLAN
// ETP: error: plan "ep=2 tp=2 etp=1" needs etp=1, which the partitioner does not apply yet
// NO-PLAN: error: moe-partition needs a plan: pass plan="ep=N" or plan the module first (moe-compile --machine)

// Dropless expert parallelism over 2 ranks: the collectives land around the
// experts only. Tokens are sliced before the router, the counts and then the
// rows go to the experts' owners, the rows come back by the received counts,
// and the combined tokens are gathered; nothing else communicates.
// CHECK: shard.grid @ep(shape = 2)
// CHECK-LABEL: func.func @mixtral
// CHECK-SAME: (%[[X:.*]]: tensor<16x64xf32>, %[[WR:.*]]: tensor<64x8xf32>, %[[WG:.*]]: tensor<8x64x128xf32>, %[[WU:.*]]: tensor<8x64x128xf32>, %[[WD:.*]]: tensor<8x128x64xf32>)
func.func @mixtral(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>,
                   %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>,
                   %wd: tensor<8x128x64xf32>) -> tensor<16x64xf32> {
  // CHECK: %[[N:.*]] = moe.relu %[[X]]
  // CHECK-NEXT: %[[XL:.*]] = shard.all_slice %[[N]] on @ep grid_axes = [0] slice_axis = 0 : tensor<16x64xf32> -> tensor<8x64xf32>
  // CHECK-NEXT: %[[W:.*]], %[[E:.*]] = moe.router %[[XL]], %[[WR]] top_k = 2 score = softmax normalize : (tensor<8x64xf32>, tensor<64x8xf32>) -> (tensor<8x2xf32>, tensor<8x2xi64>)
  // CHECK-NEXT: %[[ROWS:.*]], %[[COUNTS:.*]], %[[SRC:.*]] = moe.dispatch %[[XL]], %[[E]] num_experts = 8 : (tensor<8x64xf32>, tensor<8x2xi64>) -> (tensor<16x64xf32>, tensor<8xi64>, tensor<16xi64>)
  // Rows for each peer: the counts of its 4 experts added up.
  // CHECK-NEXT: %[[BYPEER:.*]] = moe.reshape %[[COUNTS]] : (tensor<8xi64>) -> tensor<2x4xi64>
  // CHECK-NEXT: %[[SEND:.*]] = moe.reduce sum %[[BYPEER]] axes = [1] : tensor<2x4xi64> -> tensor<2xi64>
  // CHECK-NEXT: %[[FOUR:.*]] = arith.constant dense<4> : tensor<2xi64>
  // CHECK-NEXT: %[[THEIRS:.*]], %{{.*}} = moe.ragged_all_to_all %[[COUNTS]], %[[FOUR]] on @ep grid_axes = [0] : (tensor<8xi64>, tensor<2xi64>) -> (tensor<8xi64>, tensor<2xi64>)
  // CHECK-NEXT: %[[PEERS:.*]] = moe.reshape %[[THEIRS]] : (tensor<8xi64>) -> tensor<2x4xi64>
  // CHECK-NEXT: %[[LOCAL:.*]] = moe.reduce sum %[[PEERS]] axes = [0] : tensor<2x4xi64> -> tensor<4xi64>
  // At most all 16 tokens x 2 slots of the group arrive.
  // CHECK-NEXT: %[[RECV:.*]], %[[RC:.*]] = moe.ragged_all_to_all %[[ROWS]], %[[SEND]] on @ep grid_axes = [0] : (tensor<16x64xf32>, tensor<2xi64>) -> (tensor<32x64xf32>, tensor<2xi64>)
  // CHECK-NEXT: %[[GROUPED:.*]] = moe.transpose_chunks %[[RECV]], %[[PEERS]] : (tensor<32x64xf32>, tensor<2x4xi64>) -> tensor<32x64xf32>
  // CHECK-DAG: %[[MYD:.*]] = shard.all_slice %[[WD]] on @ep grid_axes = [0] slice_axis = 0 : tensor<8x128x64xf32> -> tensor<4x128x64xf32>
  // CHECK-DAG: %[[MYU:.*]] = shard.all_slice %[[WU]] on @ep grid_axes = [0] slice_axis = 0 : tensor<8x64x128xf32> -> tensor<4x64x128xf32>
  // CHECK-DAG: %[[MYG:.*]] = shard.all_slice %[[WG]] on @ep grid_axes = [0] slice_axis = 0 : tensor<8x64x128xf32> -> tensor<4x64x128xf32>
  // CHECK: %[[OUT:.*]] = moe.expert_ffn %[[GROUPED]], %[[LOCAL]] gate %[[MYG]] up %[[MYU]] down %[[MYD]] activation = swiglu : (tensor<32x64xf32>, tensor<4xi64>, tensor<4x64x128xf32>, tensor<4x64x128xf32>, tensor<4x128x64xf32>) -> tensor<32x64xf32>
  // CHECK-NEXT: %[[BYEXPERT:.*]] = moe.transpose %[[PEERS]] permutation = [1, 0] : tensor<2x4xi64> -> tensor<4x2xi64>
  // CHECK-NEXT: %[[BACK:.*]] = moe.transpose_chunks %[[OUT]], %[[BYEXPERT]] : (tensor<32x64xf32>, tensor<4x2xi64>) -> tensor<32x64xf32>
  // CHECK-NEXT: %[[RET:.*]], %{{.*}} = moe.ragged_all_to_all %[[BACK]], %[[RC]] on @ep grid_axes = [0] : (tensor<32x64xf32>, tensor<2xi64>) -> (tensor<16x64xf32>, tensor<2xi64>)
  // CHECK-NEXT: %[[YL:.*]] = moe.combine %[[RET]], %[[SRC]], %[[W]] : (tensor<16x64xf32>, tensor<16xi64>, tensor<8x2xf32>) -> tensor<8x64xf32>
  // CHECK-NEXT: %[[Y:.*]] = shard.all_gather %[[YL]] on @ep grid_axes = [0] gather_axis = 0 : tensor<8x64xf32> -> tensor<16x64xf32>
  // CHECK-NEXT: %[[R:.*]] = moe.add %[[Y]], %[[X]]
  // CHECK-NEXT: return %[[R]]
  %n = moe.relu %x : tensor<16x64xf32>
  %y = moe.layer %n router(%wr) experts(up %wu down %wd gate %wg)
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  %r = moe.add %y, %x : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  return %r : tensor<16x64xf32>
}

// -----

// Capacity mode: every count is a constant and every exchange even. Each
// rank dispatches its 8 tokens with capacity ceil(1.25 * 8 * 1 / 4) = 3,
// sends 2 experts x 3 rows to each peer, and runs each local expert on
// 2 peers x 3 rows, padding included. Biases are sliced like the weights;
// the shared expert runs on the rank's tokens before the gather.
// CHECK-LABEL: func.func @switch_capacity_shared
func.func @switch_capacity_shared(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>,
    %bi: tensor<4x128xf32>, %bh: tensor<4x64xf32>, %su: tensor<64x256xf32>,
    %sd: tensor<256x64xf32>) -> tensor<16x64xf32> {
  // CHECK: %[[XL:.*]] = shard.all_slice %{{.*}} on @ep grid_axes = [0] slice_axis = 0 : tensor<16x64xf32> -> tensor<8x64xf32>
  // CHECK: %[[ROWS:.*]], %{{.*}}, %[[SRC:.*]] = moe.dispatch %[[XL]], %{{.*}} num_experts = 4 capacity = 3 : (tensor<8x64xf32>, tensor<8x1xi64>) -> (tensor<12x64xf32>, tensor<4xi64>, tensor<12xi64>)
  // CHECK-DAG: %[[SEND:.*]] = arith.constant dense<6> : tensor<2xi64>
  // CHECK-DAG: %[[BLOCKS:.*]] = arith.constant dense<3> : tensor<2x2xi64>
  // CHECK-DAG: %[[LOCAL:.*]] = arith.constant dense<6> : tensor<2xi64>
  // CHECK-NOT: moe.reduce
  // CHECK: %[[RECV:.*]], %[[RC:.*]] = moe.ragged_all_to_all %[[ROWS]], %[[SEND]] on @ep grid_axes = [0] : (tensor<12x64xf32>, tensor<2xi64>) -> (tensor<12x64xf32>, tensor<2xi64>)
  // CHECK: moe.transpose_chunks %[[RECV]], %[[BLOCKS]]
  // CHECK-DAG: shard.all_slice %{{.*}} on @ep grid_axes = [0] slice_axis = 0 : tensor<4x128xf32> -> tensor<2x128xf32>
  // CHECK-DAG: shard.all_slice %{{.*}} on @ep grid_axes = [0] slice_axis = 0 : tensor<4x64xf32> -> tensor<2x64xf32>
  // CHECK: moe.expert_ffn %{{.*}}, %[[LOCAL]] up %{{.*}} down %{{.*}} up_bias %{{.*}} down_bias %{{.*}} activation = relu capacity = 6 : (tensor<12x64xf32>, tensor<2xi64>
  // CHECK: %[[RET:.*]], %{{.*}} = moe.ragged_all_to_all %{{.*}}, %[[RC]] on @ep grid_axes = [0] : (tensor<12x64xf32>, tensor<2xi64>) -> (tensor<12x64xf32>, tensor<2xi64>)
  // CHECK: %[[ROUTED:.*]] = moe.combine %[[RET]], %[[SRC]], %{{.*}} : (tensor<12x64xf32>, tensor<12xi64>, tensor<8x1xf32>) -> tensor<8x64xf32>
  // CHECK: %[[SHARED:.*]] = moe.ffn %[[XL]] up %{{.*}} down %{{.*}} activation = relu : (tensor<8x64xf32>
  // CHECK: %[[SUM:.*]] = moe.add %[[ROUTED]], %[[SHARED]]
  // CHECK: shard.all_gather %[[SUM]] on @ep grid_axes = [0] gather_axis = 0 : tensor<8x64xf32> -> tensor<16x64xf32>
  %y = moe.layer %x router(%wr)
      experts(up %wu down %wd up_bias %bi down_bias %bh)
      shared_up %su shared_down %sd
      top_k = 1 score = softmax activation = relu {capacity_factor = 1.25}
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>, tensor<4x128xf32>, tensor<4x64xf32>,
         tensor<64x256xf32>, tensor<256x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

// 3 experts cannot be shared by 2 ranks.
func.func @indivisible_experts(%x: tensor<16x64xf32>, %wr: tensor<64x3xf32>,
    %wu: tensor<3x64x128xf32>, %wd: tensor<3x128x64xf32>) -> tensor<16x64xf32> {
  // expected-error @+1 {{has 3 experts, which 2 expert-parallel ranks cannot hold evenly; choose an ep that divides the expert count}}
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      : (tensor<16x64xf32>, tensor<64x3xf32>, tensor<3x64x128xf32>,
         tensor<3x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

// Tokens are split over the ranks: 15 of them cannot be.
func.func @indivisible_tokens(%x: tensor<15x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<15x64xf32> {
  // expected-error @+1 {{has 15 tokens, which 2 expert-parallel ranks cannot share evenly; choose an ep that divides the token count}}
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      : (tensor<15x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<15x64xf32>
  return %y : tensor<15x64xf32>
}

// -----

func.func @dynamic_tokens(%x: tensor<?x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{has a dynamic token count; expert parallelism splits the tokens over the ranks and needs it static}}
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      : (tensor<?x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A placement from the plan (moe.expert_ranks: rank 0 holds experts 0 and
// 3, rank 1 experts 1 and 2): the selected experts are renumbered by their
// position in the order [0, 3, 1, 2], dispatch records that order, and each
// rank gathers its experts' weights by its slice of it.
// CHECK-LABEL: func.func @placed
func.func @placed(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<16x64xf32> {
  // CHECK: %[[W:.*]], %[[E:.*]] = moe.router
  // CHECK-NEXT: %[[POSITION:.*]] = arith.constant dense<[0, 2, 3, 1]> : tensor<4xi64>
  // CHECK-NEXT: %[[RENUMBERED:.*]] = moe.gather %[[POSITION]][%[[E]]] axis = 0 : (tensor<4xi64>, tensor<8x1xi64>) -> tensor<8x1xi64>
  // CHECK-NEXT: moe.dispatch %{{.*}}, %[[RENUMBERED]] num_experts = 4 {expert_order = array<i64: 0, 3, 1, 2>}
  // CHECK: %[[ORDER:.*]] = arith.constant dense<[0, 3, 1, 2]> : tensor<4xi64>
  // CHECK-NEXT: %[[MINE:.*]] = shard.all_slice %[[ORDER]] on @ep grid_axes = [0] slice_axis = 0 : tensor<4xi64> -> tensor<2xi64>
  // CHECK-DAG: moe.gather %{{.*}}[%[[MINE]]] axis = 0 : (tensor<4x128x64xf32>, tensor<2xi64>) -> tensor<2x128x64xf32>
  // CHECK-DAG: moe.gather %{{.*}}[%[[MINE]]] axis = 0 : (tensor<4x64x128xf32>, tensor<2xi64>) -> tensor<2x64x128xf32>
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      {moe.expert_ranks = array<i64: 0, 1, 1, 0>}
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

func.func @unbalanced_placement(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<16x64xf32> {
  // expected-error @+1 {{moe.expert_ranks gives rank 0 3 experts; every rank must hold 2}}
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      {moe.expert_ranks = array<i64: 0, 0, 1, 0>}
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

// Replicated experts (moe.expert_slots, from a plan with extra slots):
// 2 ranks of 3 slots for 4 experts, expert 0 on both ranks, slot 5 empty.
// Each source rank sends expert 0's tokens to its own copy (rank r to copy
// r mod 2), so the renumbering table is per rank: a [2, 4] constant sliced
// by rank. Dispatch counts slots; each rank gathers its slots' weights (the
// empty slot borrows expert 0's, and gets no rows).
// CHECK-LABEL: func.func @replicated
func.func @replicated(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<16x64xf32> {
  // CHECK: %[[TABLE:.*]] = arith.constant dense<{{\[\[}}0, 1, 2, 4], [3, 1, 2, 4]]> : tensor<2x4xi64>
  // CHECK-NEXT: %[[MINE:.*]] = shard.all_slice %[[TABLE]] on @ep grid_axes = [0] slice_axis = 0 : tensor<2x4xi64> -> tensor<1x4xi64>
  // CHECK-NEXT: %[[ROW:.*]] = moe.reshape %[[MINE]] : (tensor<1x4xi64>) -> tensor<4xi64>
  // CHECK-NEXT: %[[SLOT:.*]] = moe.gather %[[ROW]][%{{.*}}] axis = 0
  // CHECK-NEXT: moe.dispatch %{{.*}}, %[[SLOT]] num_experts = 6 {expert_order = array<i64: 0, 1, 2, 0, 3, -1>}
  // CHECK: arith.constant dense<[0, 1, 2, 0, 3, 0]> : tensor<6xi64>
  // CHECK: moe.expert_ffn %{{.*}}, %{{.*}} up %{{.*}} down %{{.*}} activation = relu : (tensor<16x64xf32>, tensor<3xi64>, tensor<3x64x128xf32>, tensor<3x128x64xf32>)
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      {moe.expert_slots = array<i64: 0, 1, 2, 0, 3, -1>}
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

func.func @slot_missing_expert(%x: tensor<16x64xf32>, %wr: tensor<64x4xf32>,
    %wu: tensor<4x64x128xf32>, %wd: tensor<4x128x64xf32>) -> tensor<16x64xf32> {
  // expected-error @+1 {{moe.expert_slots holds no copy of expert 3}}
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 1 score = softmax activation = relu
      {moe.expert_slots = array<i64: 0, 1, 2, 0>}
      : (tensor<16x64xf32>, tensor<64x4xf32>, tensor<4x64x128xf32>,
         tensor<4x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}
