// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s

// Every moe operation and attribute, printed and parsed back.

// CHECK: moe.weight @router : tensor<64x8xf32> storage = <"model.onnx.data", offset = 0, length = 2048>
moe.weight @router : tensor<64x8xf32>
    storage = <"model.onnx.data", offset = 0, length = 2048>
// CHECK: moe.weight @packed : tensor<8x3xi4> storage = <"weights/q.bin", offset = 16, length = 12>
moe.weight @packed : tensor<8x3xi4>
    storage = <"weights/q.bin", offset = 16, length = 12>
moe.weight @up : tensor<8x64x128xbf16>
    storage = <"model.onnx", offset = 4096, length = 131072>

// CHECK-LABEL: func.func @weights
func.func @weights() -> (tensor<64x8xf32>, tensor<2x64x128xbf16>) {
  // CHECK: moe.weight_ref @router : tensor<64x8xf32>
  %w = moe.weight_ref @router : tensor<64x8xf32>
  // CHECK: moe.weight_ref @up slice = <offsets = [2, 0, 0], sizes = [2, 64, 128]> : tensor<2x64x128xbf16>
  %s = moe.weight_ref @up slice = <offsets = [2, 0, 0], sizes = [2, 64, 128]>
      : tensor<2x64x128xbf16>
  return %w, %s : tensor<64x8xf32>, tensor<2x64x128xbf16>
}

// CHECK-LABEL: func.func @dequantize
func.func @dequantize(%q4: tensor<8x16x32xui8>, %s4: tensor<8x16x2xf32>,
                      %z4: tensor<8x16x1xui8>, %q8: tensor<8x16x64xui8>,
                      %s8: tensor<8x16xf32>, %z8: tensor<8x16xui8>) {
  // CHECK: moe.dequantize %{{.*}}, %{{.*}}, %{{.*}} bits = 4 block_size = 32 : (tensor<8x16x32xui8>, tensor<8x16x2xf32>, tensor<8x16x1xui8>) -> tensor<8x16x64xf32>
  %0 = moe.dequantize %q4, %s4, %z4 bits = 4 block_size = 32
      : (tensor<8x16x32xui8>, tensor<8x16x2xf32>, tensor<8x16x1xui8>) -> tensor<8x16x64xf32>
  // CHECK: moe.dequantize %{{.*}}, %{{.*}} bits = 8 : (tensor<8x16x64xui8>, tensor<8x16xf32>) -> tensor<8x16x64xf32>
  %1 = moe.dequantize %q8, %s8 bits = 8
      : (tensor<8x16x64xui8>, tensor<8x16xf32>) -> tensor<8x16x64xf32>
  // CHECK: moe.dequantize %{{.*}}, %{{.*}}, %{{.*}} bits = 8 :
  %2 = moe.dequantize %q8, %s8, %z8 bits = 8
      : (tensor<8x16x64xui8>, tensor<8x16xf32>, tensor<8x16xui8>) -> tensor<8x16x64xf32>
  return
}

// CHECK-LABEL: func.func @unary
func.func @unary(%x: tensor<4x8xf32>, %i: tensor<4x8xi64>) {
  // CHECK: moe.neg %{{.*}} : tensor<4x8xi64>
  %0 = moe.neg %i : tensor<4x8xi64>
  // CHECK: moe.abs %{{.*}} : tensor<4x8xf32>
  %1 = moe.abs %x : tensor<4x8xf32>
  // CHECK: moe.exp
  %2 = moe.exp %x : tensor<4x8xf32>
  // CHECK: moe.log
  %3 = moe.log %x : tensor<4x8xf32>
  // CHECK: moe.sqrt
  %4 = moe.sqrt %x : tensor<4x8xf32>
  // CHECK: moe.reciprocal
  %5 = moe.reciprocal %x : tensor<4x8xf32>
  // CHECK: moe.tanh
  %6 = moe.tanh %x : tensor<4x8xf32>
  // CHECK: moe.erf
  %7 = moe.erf %x : tensor<4x8xf32>
  // CHECK: moe.cos
  %c = moe.cos %x : tensor<4x8xf32>
  // CHECK: moe.sin
  %s = moe.sin %x : tensor<4x8xf32>
  // CHECK: moe.is_nan %{{.*}} : tensor<4x8xf32> -> tensor<4x8xi1>
  %n = moe.is_nan %x : tensor<4x8xf32> -> tensor<4x8xi1>
  // CHECK: moe.not %{{.*}} : tensor<4x8xi1>
  %nn = moe.not %n : tensor<4x8xi1>
  // CHECK: moe.sigmoid
  %8 = moe.sigmoid %x : tensor<4x8xf32>
  // CHECK: moe.relu
  %9 = moe.relu %x : tensor<4x8xf32>
  // CHECK: moe.silu
  %10 = moe.silu %x : tensor<4x8xf32>
  // CHECK: moe.gelu %{{.*}} : tensor<4x8xf32>
  %11 = moe.gelu %x : tensor<4x8xf32>
  // CHECK: moe.gelu %{{.*}} tanh : tensor<4x8xf32>
  %12 = moe.gelu %x tanh : tensor<4x8xf32>
  // CHECK: moe.cast %{{.*}} : tensor<4x8xf32> to tensor<4x8xbf16>
  %13 = moe.cast %x : tensor<4x8xf32> to tensor<4x8xbf16>
  return
}

// CHECK-LABEL: func.func @binary
func.func @binary(%a: tensor<4x8xf32>, %b: tensor<8xf32>, %c: tensor<?x1xf32>,
                  %m: tensor<1x8xi1>) {
  // CHECK: moe.add %{{.*}}, %{{.*}} : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  %0 = moe.add %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // CHECK: moe.sub
  %1 = moe.sub %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // CHECK: moe.mul {{.*}} : (tensor<?x1xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %2 = moe.mul %c, %b : (tensor<?x1xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  // CHECK: moe.div
  %3 = moe.div %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // CHECK: moe.pow
  %4 = moe.pow %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // CHECK: moe.max
  %5 = moe.max %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // CHECK: moe.min
  %6 = moe.min %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // CHECK: moe.compare lt, %{{.*}}, %{{.*}} : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xi1>
  %7 = moe.compare lt, %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xi1>
  // CHECK: moe.and %{{.*}}, %{{.*}} : (tensor<4x8xi1>, tensor<1x8xi1>) -> tensor<4x8xi1>
  %and = moe.and %7, %m : (tensor<4x8xi1>, tensor<1x8xi1>) -> tensor<4x8xi1>
  // CHECK: moe.or %{{.*}}, %{{.*}} : (tensor<1x8xi1>, tensor<4x8xi1>) -> tensor<4x8xi1>
  %or = moe.or %m, %and : (tensor<1x8xi1>, tensor<4x8xi1>) -> tensor<4x8xi1>
  // CHECK: moe.where %{{.*}}, %{{.*}}, %{{.*}} : (tensor<1x8xi1>, tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  %8 = moe.where %m, %a, %b
      : (tensor<1x8xi1>, tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// CHECK-LABEL: func.func @linear_algebra
func.func @linear_algebra(%x: tensor<2x16x64xf32>, %w: tensor<64x128xf32>,
                          %v: tensor<64xf32>, %a: tensor<16x64xf32>,
                          %b: tensor<128x64xf32>, %bias: tensor<128xf32>) {
  // CHECK: moe.matmul %{{.*}}, %{{.*}} : (tensor<2x16x64xf32>, tensor<64x128xf32>) -> tensor<2x16x128xf32>
  %0 = moe.matmul %x, %w
      : (tensor<2x16x64xf32>, tensor<64x128xf32>) -> tensor<2x16x128xf32>
  // CHECK: moe.matmul {{.*}} -> tensor<2x16xf32>
  %1 = moe.matmul %x, %v : (tensor<2x16x64xf32>, tensor<64xf32>) -> tensor<2x16xf32>
  // CHECK: moe.gemm %{{.*}}, %{{.*}}, %{{.*}} trans_b {alpha = 5.000000e-01 : f32}
  %2 = moe.gemm %a, %b, %bias trans_b {alpha = 0.5 : f32}
      : (tensor<16x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> tensor<16x128xf32>
  // CHECK: moe.gemm %{{.*}}, %{{.*}} trans_a :
  %3 = moe.gemm %a, %a trans_a
      : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<64x64xf32>
  // CHECK: moe.reduce mean %{{.*}} axes = [-1] keep_dims : tensor<16x64xf32> -> tensor<16x1xf32>
  %4 = moe.reduce mean %a axes = [-1] keep_dims : tensor<16x64xf32> -> tensor<16x1xf32>
  // CHECK: moe.reduce sum %{{.*}} axes = [0, 2] : tensor<2x16x64xf32> -> tensor<16xf32>
  %5 = moe.reduce sum %x axes = [0, 2] : tensor<2x16x64xf32> -> tensor<16xf32>
  // CHECK: moe.softmax %{{.*}} axis = -1 : tensor<16x64xf32>
  %6 = moe.softmax %a axis = -1 : tensor<16x64xf32>
  // CHECK: moe.top_k %{{.*}} k = 2 axis = 1 : tensor<16x64xf32> -> tensor<16x2xf32>, tensor<16x2xi64>
  %7:2 = moe.top_k %a k = 2 axis = 1
      : tensor<16x64xf32> -> tensor<16x2xf32>, tensor<16x2xi64>
  // CHECK: moe.top_k %{{.*}} k = 3 axis = -1 smallest
  %8:2 = moe.top_k %a k = 3 axis = -1 smallest
      : tensor<16x64xf32> -> tensor<16x3xf32>, tensor<16x3xi32>
  // CHECK: moe.layer_norm %{{.*}}, %{{.*}}, %{{.*}} axis = -1 epsilon = 9.99999974E-6
  %9 = moe.layer_norm %a, %v, %v axis = -1 epsilon = 1.0e-05
      : (tensor<16x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  // CHECK: moe.layer_norm %{{.*}}, %{{.*}} axis = 1
  %10 = moe.layer_norm %a, %v axis = 1 epsilon = 1.0e-05
      : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  // CHECK: moe.rms_norm %{{.*}}, %{{.*}} axis = -1 epsilon = 9.99999997E-7
  %11 = moe.rms_norm %a, %v axis = -1 epsilon = 1.0e-06
      : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  return
}

// CHECK-LABEL: func.func @indexing
func.func @indexing(%table: tensor<1000x64xf32>, %ids: tensor<2x16xi64>,
                    %probs: tensor<16x8xf32>, %top: tensor<16x2xi64>,
                    %vals: tensor<16x2xf32>, %out: tensor<16x64xf32>,
                    %rows: tensor<5x1xi64>, %upd: tensor<5x64xf32>) {
  // CHECK: moe.gather %{{.*}}[%{{.*}}] axis = 0 : (tensor<1000x64xf32>, tensor<2x16xi64>) -> tensor<2x16x64xf32>
  %0 = moe.gather %table[%ids] axis = 0
      : (tensor<1000x64xf32>, tensor<2x16xi64>) -> tensor<2x16x64xf32>
  // CHECK: moe.gather_elements %{{.*}}[%{{.*}}] axis = 1
  %1 = moe.gather_elements %probs[%top] axis = 1
      : (tensor<16x8xf32>, tensor<16x2xi64>) -> tensor<16x2xf32>
  // CHECK: moe.scatter_elements %{{.*}}[%{{.*}}], %{{.*}} axis = 1 reduction = add
  %2 = moe.scatter_elements %probs[%top], %vals axis = 1 reduction = add
      : (tensor<16x8xf32>, tensor<16x2xi64>, tensor<16x2xf32>) -> tensor<16x8xf32>
  // CHECK: moe.scatter_elements %{{.*}}[%{{.*}}], %{{.*}} axis = 1 :
  %3 = moe.scatter_elements %probs[%top], %vals axis = 1
      : (tensor<16x8xf32>, tensor<16x2xi64>, tensor<16x2xf32>) -> tensor<16x8xf32>
  // CHECK: moe.scatter_nd %{{.*}}[%{{.*}}], %{{.*}} reduction = add
  %4 = moe.scatter_nd %out[%rows], %upd reduction = add
      : (tensor<16x64xf32>, tensor<5x1xi64>, tensor<5x64xf32>) -> tensor<16x64xf32>
  return
}

// CHECK-LABEL: func.func @shapes
func.func @shapes(%x: tensor<2x16x64xf32>, %d: tensor<?x16x64xf32>,
                  %shape: tensor<2xi64>, %row: tensor<1x64xf32>,
                  %a: tensor<16x32xf32>, %sq: tensor<16x16xf32>) {
  // CHECK: moe.reshape %{{.*}} : (tensor<2x16x64xf32>) -> tensor<32x64xf32>
  %0 = moe.reshape %x : (tensor<2x16x64xf32>) -> tensor<32x64xf32>
  // CHECK: moe.reshape %{{.*}}, %{{.*}} : (tensor<?x16x64xf32>, tensor<2xi64>) -> tensor<?x64xf32>
  %1 = moe.reshape %d, %shape : (tensor<?x16x64xf32>, tensor<2xi64>) -> tensor<?x64xf32>
  // CHECK: moe.transpose %{{.*}} permutation = [0, 2, 1] : tensor<2x16x64xf32> -> tensor<2x64x16xf32>
  %2 = moe.transpose %x permutation = [0, 2, 1] : tensor<2x16x64xf32> -> tensor<2x64x16xf32>
  // CHECK: moe.expand %{{.*}} : tensor<1x64xf32> -> tensor<16x64xf32>
  %3 = moe.expand %row : tensor<1x64xf32> -> tensor<16x64xf32>
  // CHECK: moe.slice %{{.*}} starts = [0] ends = [32] axes = [-1] steps = [1] : tensor<2x16x64xf32> -> tensor<2x16x32xf32>
  %4 = moe.slice %x starts = [0] ends = [32] axes = [-1] steps = [1]
      : tensor<2x16x64xf32> -> tensor<2x16x32xf32>
  // CHECK: moe.slice {{.*}} -> tensor<2x8x64xf32>
  %5 = moe.slice %x starts = [-1] ends = [-9223372036854775807] axes = [1] steps = [-2]
      : tensor<2x16x64xf32> -> tensor<2x8x64xf32>
  // CHECK: moe.concat %{{.*}}, %{{.*}} axis = 1 : (tensor<16x32xf32>, tensor<16x32xf32>) -> tensor<16x64xf32>
  %6 = moe.concat %a, %a axis = 1
      : (tensor<16x32xf32>, tensor<16x32xf32>) -> tensor<16x64xf32>
  // CHECK: moe.split %{{.*}} axis = -1 : tensor<16x32xf32> -> tensor<16x16xf32>, tensor<16x16xf32>
  %7:2 = moe.split %a axis = -1 : tensor<16x32xf32> -> tensor<16x16xf32>, tensor<16x16xf32>
  // CHECK: moe.trilu %{{.*}} upper k = 1 : tensor<16x16xf32>
  %8 = moe.trilu %sq upper k = 1 : tensor<16x16xf32>
  // CHECK: moe.trilu %{{.*}} k = 0 : tensor<16x16xf32>
  %9 = moe.trilu %sq k = 0 : tensor<16x16xf32>
  return
}

// CHECK-LABEL: func.func @layers
func.func @layers(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>,
                  %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>,
                  %wd: tensor<8x128x64xf32>, %bi: tensor<8x128xf32>,
                  %bh: tensor<8x64xf32>, %be: tensor<8xf32>,
                  %sg: tensor<64x256xf32>, %sd: tensor<256x64xf32>,
                  %seg: tensor<64x1xf32>) {
  // CHECK: moe.layer %{{.*}} router(%{{.*}}) experts(up %{{.*}} down %{{.*}} gate %{{.*}}) top_k = 2 score = softmax normalize activation = swiglu :
  %0 = moe.layer %x router(%wr) experts(up %wu down %wd gate %wg)
      top_k = 2 score = softmax normalize activation = swiglu
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<16x64xf32>
  // Switch-style: top-1, ReLU experts with biases, no renormalisation.
  // CHECK: moe.layer %{{.*}} router(%{{.*}} bias %{{.*}}) experts(up %{{.*}} down %{{.*}} up_bias %{{.*}} down_bias %{{.*}}) top_k = 1 score = softmax activation = relu {capacity_factor = 1.250000e+00 : f64}
  %1 = moe.layer %x router(%wr bias %be) experts(up %wu down %wd up_bias %bi down_bias %bh)
      top_k = 1 score = softmax activation = relu {capacity_factor = 1.25}
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>, tensor<8x64x128xf32>,
         tensor<8x128x64xf32>, tensor<8x128xf32>, tensor<8x64xf32>) -> tensor<16x64xf32>
  // DeepSeek-style: sigmoid scores, correction bias, group-limited top-k,
  // routed scaling and a shared expert.
  // CHECK: moe.layer %{{.*}} router(%{{.*}} correction %{{.*}}) experts(up %{{.*}} down %{{.*}} gate %{{.*}} gate_bias %{{.*}}) shared_gate %{{.*}} shared_up %{{.*}} shared_down %{{.*}} shared_expert_gate %{{.*}} top_k = 2 score = sigmoid normalize activation = swiglu {num_groups = 4 : i64, routed_scaling_factor = 2.500000e+00 : f64, top_k_groups = 2 : i64}
  %2 = moe.layer %x router(%wr correction %be)
      experts(up %wu down %wd gate %wg gate_bias %bi)
      shared_gate %sg shared_up %sg shared_down %sd shared_expert_gate %seg
      top_k = 2 score = sigmoid normalize activation = swiglu
      {num_groups = 4 : i64, top_k_groups = 2 : i64, routed_scaling_factor = 2.5}
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<8x128xf32>,
         tensor<64x256xf32>, tensor<64x256xf32>, tensor<256x64xf32>,
         tensor<64x1xf32>) -> tensor<16x64xf32>
  return
}

// CHECK-LABEL: func.func @layer_parts
func.func @layer_parts(%x: tensor<16x64xf32>, %wr: tensor<64x8xf32>,
                       %be: tensor<8xf32>,
                       %wg: tensor<8x64x128xf32>, %wu: tensor<8x64x128xf32>,
                       %wd: tensor<8x128x64xf32>, %sg: tensor<64x256xf32>,
                       %sd: tensor<256x64xf32>) {
  // CHECK: moe.router %{{.*}}, %{{.*}} bias %{{.*}} top_k = 2 score = softmax normalize : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  %weights, %experts = moe.router %x, %wr bias %be top_k = 2 score = softmax normalize
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>)
      -> (tensor<16x2xf32>, tensor<16x2xi64>)
  // CHECK: moe.router %{{.*}}, %{{.*}} correction %{{.*}} top_k = 2 score = sigmoid
  %w2, %e2 = moe.router %x, %wr correction %be top_k = 2 score = sigmoid
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>)
      -> (tensor<16x2xf32>, tensor<16x2xi64>)
  // CHECK: moe.dispatch %{{.*}}, %{{.*}} num_experts = 8 : (tensor<16x64xf32>, tensor<16x2xi64>) -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
  %rows, %counts, %sources = moe.dispatch %x, %experts num_experts = 8
      : (tensor<16x64xf32>, tensor<16x2xi64>)
      -> (tensor<32x64xf32>, tensor<8xi64>, tensor<32xi64>)
  // CHECK: moe.dispatch %{{.*}}, %{{.*}} num_experts = 8 capacity = 5
  %crows, %ccounts, %csources = moe.dispatch %x, %experts num_experts = 8 capacity = 5
      : (tensor<16x64xf32>, tensor<16x2xi64>)
      -> (tensor<40x64xf32>, tensor<8xi64>, tensor<40xi64>)
  // CHECK: moe.expert_ffn %{{.*}}, %{{.*}} gate %{{.*}} up %{{.*}} down %{{.*}} activation = swiglu :
  %out = moe.expert_ffn %rows, %counts gate %wg up %wu down %wd activation = swiglu
      : (tensor<32x64xf32>, tensor<8xi64>, tensor<8x64x128xf32>,
         tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> tensor<32x64xf32>
  // CHECK: moe.expert_ffn %{{.*}}, %{{.*}} up %{{.*}} down %{{.*}} activation = gelu capacity = 5 :
  %cout = moe.expert_ffn %crows, %ccounts up %wu down %wd activation = gelu capacity = 5
      : (tensor<40x64xf32>, tensor<8xi64>, tensor<8x64x128xf32>,
         tensor<8x128x64xf32>) -> tensor<40x64xf32>
  // CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}} : (tensor<32x64xf32>, tensor<32xi64>, tensor<16x2xf32>) -> tensor<16x64xf32>
  %y = moe.combine %out, %sources, %weights
      : (tensor<32x64xf32>, tensor<32xi64>, tensor<16x2xf32>) -> tensor<16x64xf32>
  // CHECK: moe.ffn %{{.*}} gate %{{.*}} up %{{.*}} down %{{.*}} activation = geglu :
  %s = moe.ffn %x gate %sg up %sg down %sd activation = geglu
      : (tensor<16x64xf32>, tensor<64x256xf32>, tensor<64x256xf32>,
         tensor<256x64xf32>) -> tensor<16x64xf32>
  return
}

shard.grid @ep(shape = 2x4)

// CHECK-LABEL: func.func @collectives
func.func @collectives(%rows: tensor<?x64xf32>, %counts: tensor<4xi64>,
                       %all: tensor<8xi64>) {
  // CHECK: moe.ragged_all_to_all %{{.*}}, %{{.*}} on @ep grid_axes = [1] : (tensor<?x64xf32>, tensor<4xi64>) -> (tensor<?x64xf32>, tensor<4xi64>)
  %recv, %recv_counts = moe.ragged_all_to_all %rows, %counts on @ep grid_axes = [1]
      : (tensor<?x64xf32>, tensor<4xi64>) -> (tensor<?x64xf32>, tensor<4xi64>)
  // Both grid axes: one group of all 8 devices.
  // CHECK: moe.ragged_all_to_all %{{.*}}, %{{.*}} on @ep grid_axes = [0, 1] :
  %r2, %c2 = moe.ragged_all_to_all %rows, %all on @ep grid_axes = [0, 1]
      : (tensor<?x64xf32>, tensor<8xi64>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// CHECK-LABEL: func.func @stage_transfer
func.func @stage_transfer(%h: tensor<16x64xf32>) -> tensor<16x64xf32> {
  // CHECK: moe.stage_transfer %{{.*}} on @ep grid_axes = [0] from = 0 to = [1] : tensor<16x64xf32> -> tensor<16x64xf32>
  %0 = moe.stage_transfer %h on @ep grid_axes = [0] from = 0 to = [1]
      : tensor<16x64xf32> -> tensor<16x64xf32>
  return %0 : tensor<16x64xf32>
}

// CHECK-LABEL: func.func @transpose_chunks
func.func @transpose_chunks(%rows: tensor<64x32xf32>, %counts: tensor<2x4xi64>)
    -> tensor<64x32xf32> {
  // CHECK: moe.transpose_chunks %{{.*}}, %{{.*}} : (tensor<64x32xf32>, tensor<2x4xi64>) -> tensor<64x32xf32>
  %0 = moe.transpose_chunks %rows, %counts
      : (tensor<64x32xf32>, tensor<2x4xi64>) -> tensor<64x32xf32>
  return %0 : tensor<64x32xf32>
}

// CHECK-LABEL: func.func @launch
func.func @launch(%x: tensor<9x520xf32>, %s: tensor<520xf32>)
    -> tensor<9x520xf32> {
  // CHECK: moe.launch "k0_kernel:k0_kernel 9,1,1 1,1,1 i64:1 in0 tmp0;k0_kernel_0:k0_kernel 9,3,1 1,256,1 i64:1 i64:256 in0 tmp0 in1 f32:0x358637BD out0" scratch = [36] ins(%{{.*}}, %{{.*}}) : (tensor<9x520xf32>, tensor<520xf32>) -> tensor<9x520xf32>
  %0 = moe.launch "k0_kernel:k0_kernel 9,1,1 1,1,1 i64:1 in0 tmp0;k0_kernel_0:k0_kernel 9,3,1 1,256,1 i64:1 i64:256 in0 tmp0 in1 f32:0x358637BD out0"
      scratch = [36] ins(%x, %s) : (tensor<9x520xf32>, tensor<520xf32>) -> tensor<9x520xf32>
  return %0 : tensor<9x520xf32>
}
