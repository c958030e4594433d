// RUN: moe-opt %s -moe-decompose-layers -split-input-file -verify-diagnostics | FileCheck %s

// Mixtral-style: softmax top-2 with renormalisation and SwiGLU experts.
// CHECK-LABEL: func.func @mixtral
// CHECK-SAME: (%[[X:.*]]: tensor<16x64xf32>, %[[WR:.*]]: tensor<64x8xf32>, %[[WG:.*]]: tensor<8x64x128xf32>, %[[WU:.*]]: tensor<8x64x128xf32>, %[[WD:.*]]: tensor<8x128x64xf32>)
func.func @mixtral(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>,
                   %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>,
                   %wd: tensor<8x128x64xf32>) -> tensor<16x64xf32> {
  // CHECK-NOT: moe.layer
  // CHECK: %[[W:.*]], %[[E:.*]] = moe.router %[[X]], %[[WR]] top_k = 2 score = softmax normalize : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  // CHECK: %[[ROWS:.*]], %[[COUNTS:.*]], %[[SRC:.*]] = moe.dispatch %[[X]], %[[E]] num_experts = 8 : (tensor<16x64xf32>, tensor<16x2xi64>) -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
  // CHECK: %[[OUT:.*]] = moe.expert_ffn %[[ROWS]], %[[COUNTS]] gate %[[WG]] up %[[WU]] down %[[WD]] activation = swiglu
  // CHECK: %[[Y:.*]] = moe.combine %[[OUT]], %[[SRC]], %[[W]] : (tensor<32x64xf32>, tensor<32xi64>, tensor<16x2xf32>) -> tensor<16x64xf32>
  // CHECK-NOT: moe.ffn
  // CHECK: return %[[Y]]
  %y = moe.layer %x router(%wr) experts(up %wu down %wd gate %wg)
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

// Switch-style: top-1 ReLU experts with biases and a capacity factor.
// capacity = ceil(1.25 * 16 tokens * 1 / 8 experts) = 3.
// CHECK-LABEL: func.func @switch_capacity
func.func @switch_capacity(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>,
                           %be: tensor<8xf32>, %wu: tensor<8x64x128xf32>,
                           %wd: tensor<8x128x64xf32>, %bi: tensor<8x128xf32>,
                           %bh: tensor<8x64xf32>) -> tensor<16x64xf32> {
  // CHECK: moe.router %{{.*}}, %{{.*}} bias %{{.*}} top_k = 1 score = softmax :
  // CHECK: moe.dispatch %{{.*}}, %{{.*}} num_experts = 8 capacity = 3 : (tensor<16x64xf32>, tensor<16x1xi64>) -> (tensor<24x64xf32>, tensor<8xi64>, tensor<24xi64>)
  // CHECK: moe.expert_ffn %{{.*}}, %{{.*}} up %{{.*}} down %{{.*}} up_bias %{{.*}} down_bias %{{.*}} activation = relu capacity = 3
  // CHECK: moe.combine {{.*}} : (tensor<24x64xf32>, tensor<24xi64>, tensor<16x1xf32>) -> tensor<16x64xf32>
  %y = moe.layer %x router(%wr bias %be)
      experts(up %wu down %wd up_bias %bi down_bias %bh)
      top_k = 1 score = softmax activation = relu {capacity_factor = 1.25}
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>, tensor<8x64x128xf32>,
         tensor<8x128x64xf32>, tensor<8x128xf32>, tensor<8x64xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

// DeepSeek-style: sigmoid router with correction bias, group-limited top-k,
// routed scaling, and a shared expert behind a sigmoid gate (Qwen2-MoE).
// CHECK-LABEL: func.func @deepseek_shared
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xf32>
func.func @deepseek_shared(%x: tensor<?x64xf32>, %wr: tensor<64x8xf32>,
                           %be: tensor<8xf32>, %wg: tensor<8x64x128xf32>,
                           %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>,
                           %sg: tensor<64x256xf32>, %su: tensor<64x256xf32>,
                           %sd: tensor<256x64xf32>, %seg: tensor<64x1xf32>)
    -> tensor<?x64xf32> {
  // CHECK: %[[W:.*]], %[[E:.*]] = moe.router %[[X]], %{{.*}} correction %{{.*}} top_k = 4 score = sigmoid normalize {num_groups = 4 : i64, routed_scaling_factor = 2.500000e+00 : f64, top_k_groups = 2 : i64} : (tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>) -> (tensor<?x4xf32>, tensor<?x4xi64>)
  // CHECK: moe.dispatch %[[X]], %[[E]] num_experts = 8 : (tensor<?x64xf32>, tensor<?x4xi64>) -> (tensor<?x64xf32>, tensor<8xi64>, tensor<?xi64>)
  // CHECK: moe.expert_ffn
  // CHECK: %[[ROUTED:.*]] = moe.combine
  // CHECK: %[[SHARED:.*]] = moe.ffn %[[X]] gate %{{.*}} up %{{.*}} down %{{.*}} activation = swiglu
  // CHECK: %[[LOGIT:.*]] = moe.matmul %[[X]], %{{.*}} : (tensor<?x64xf32>, tensor<64x1xf32>) -> tensor<?x1xf32>
  // CHECK: %[[GATE:.*]] = moe.sigmoid %[[LOGIT]] : tensor<?x1xf32>
  // CHECK: %[[SCALED:.*]] = moe.mul %[[SHARED]], %[[GATE]] : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
  // CHECK: %[[SUM:.*]] = moe.add %[[ROUTED]], %[[SCALED]]
  // CHECK: return %[[SUM]]
  %y = moe.layer %x router(%wr correction %be)
      experts(up %wu down %wd gate %wg)
      shared_gate %sg shared_up %su shared_down %sd shared_expert_gate %seg
      top_k = 4 score = sigmoid normalize activation = swiglu
      {num_groups = 4 : i64, top_k_groups = 2 : i64, routed_scaling_factor = 2.5}
      : (tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<64x256xf32>,
         tensor<64x256xf32>, tensor<256x64xf32>, tensor<64x1xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A shared expert without a gate is added as is.
// CHECK-LABEL: func.func @shared_ungated
func.func @shared_ungated(%x: tensor<4x64xf32>, %wr: tensor<64x8xf32>,
                          %wu: tensor<8x64x128xf32>, %wd: tensor<8x128x64xf32>,
                          %su: tensor<64x256xf32>, %sd: tensor<256x64xf32>)
    -> tensor<4x64xf32> {
  // CHECK: %[[ROUTED:.*]] = moe.combine
  // CHECK: %[[SHARED:.*]] = moe.ffn %{{.*}} up %{{.*}} down %{{.*}} activation = gelu
  // CHECK-NOT: moe.sigmoid
  // CHECK: moe.add %[[ROUTED]], %[[SHARED]]
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      shared_up %su shared_down %sd
      top_k = 2 score = softmax activation = gelu
      : (tensor<4x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x128x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>) -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

func.func @capacity_needs_static_tokens(%x: tensor<?x64xf32>, %wr: tensor<64x8xf32>,
                                        %wu: tensor<8x64x128xf32>,
                                        %wd: tensor<8x128x64xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{capacity_factor needs a static token count to size the expert buffers; give the input a static shape or drop the capacity factor}}
  %y = moe.layer %x router(%wr) experts(up %wu down %wd)
      top_k = 2 score = softmax activation = relu {capacity_factor = 2.0}
      : (tensor<?x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x128x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
