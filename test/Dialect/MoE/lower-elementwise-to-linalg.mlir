// RUN: moe-opt %s --moe-lower-elementwise-to-linalg --split-input-file | FileCheck %s

// Broadcasting becomes the indexing maps: a missing leading dimension is
// dropped, a stretched size-1 dimension is read at index 0.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[COL:.*]] = affine_map<(d0, d1) -> (d1)>
// CHECK-DAG: #[[ROW0:.*]] = affine_map<(d0, d1) -> (d0, 0)>
// CHECK-LABEL: func.func @broadcast
// CHECK: %[[E1:.*]] = tensor.empty() : tensor<4x8xf32>
// CHECK: %[[ADD:.*]] = linalg.generic {indexing_maps = [#[[ID]], #[[COL]], #[[ID]]], iterator_types = ["parallel", "parallel"]} ins(%arg0, %arg1 : tensor<4x8xf32>, tensor<8xf32>) outs(%[[E1]] : tensor<4x8xf32>)
// CHECK: arith.addf
// CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[ROW0]], #[[ID]]], {{.*}}} ins(%[[ADD]], %arg2 : tensor<4x8xf32>, tensor<4x1xf32>)
// CHECK: arith.subf
// CHECK-NOT: moe.
func.func @broadcast(%a: tensor<4x8xf32>, %b: tensor<8xf32>,
                     %c: tensor<4x1xf32>) -> tensor<4x8xf32> {
  %0 = moe.add %a, %b : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  %1 = moe.sub %0, %c : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}

// -----

// Activations spelled out in f32 arith and math.
// CHECK-LABEL: func.func @activations
// silu: x / (1 + exp(-x)) written as x * (1 / (1 + exp(-x)))
// CHECK: linalg.generic
// CHECK: arith.negf
// CHECK: math.exp
// CHECK: arith.addf
// CHECK: arith.divf
// CHECK: arith.mulf
// gelu (erf): 0.5 x (1 + erf(x / sqrt 2))
// CHECK: linalg.generic
// CHECK: arith.constant 0.707106
// CHECK: math.erf
// gelu (tanh)
// CHECK: linalg.generic
// CHECK: arith.constant 4.471500e-02
// CHECK: math.tanh
// relu
// CHECK: linalg.generic
// CHECK: arith.maximumf
func.func @activations(%x: tensor<16xf32>) -> tensor<16xf32> {
  %0 = moe.silu %x : tensor<16xf32>
  %1 = moe.gelu %0 : tensor<16xf32>
  %2 = moe.gelu %1 tanh : tensor<16xf32>
  %3 = moe.relu %2 : tensor<16xf32>
  return %3 : tensor<16xf32>
}

// -----

// bf16 storage, f32 arithmetic.
// CHECK-LABEL: func.func @bf16
// CHECK: linalg.generic
// CHECK: ^bb0(%[[A:.*]]: bf16, %[[B:.*]]: bf16, %{{.*}}: bf16):
// CHECK: %[[WA:.*]] = arith.extf %[[A]] : bf16 to f32
// CHECK: %[[WB:.*]] = arith.extf %[[B]] : bf16 to f32
// CHECK: %[[P:.*]] = arith.mulf %[[WA]], %[[WB]] : f32
// CHECK: %[[N:.*]] = arith.truncf %[[P]] : f32 to bf16
// CHECK: linalg.yield %[[N]] : bf16
func.func @bf16(%a: tensor<2x8xbf16>, %b: tensor<2x8xbf16>) -> tensor<2x8xbf16> {
  %0 = moe.mul %a, %b : (tensor<2x8xbf16>, tensor<2x8xbf16>) -> tensor<2x8xbf16>
  return %0 : tensor<2x8xbf16>
}

// -----

// rms_norm over the last axis: sums of squares (f32), then one scaling pass.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[ROWS:.*]] = affine_map<(d0, d1) -> (d0)>
// CHECK-DAG: #[[LAST:.*]] = affine_map<(d0, d1) -> (d1)>
// CHECK-LABEL: func.func @rms_norm
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<16xf32>)
// CHECK: %[[SUMS:.*]] = linalg.generic {indexing_maps = [#[[ID]], #[[ROWS]]], iterator_types = ["parallel", "reduction"]} ins(%arg0 : tensor<16x64xf32>) outs(%[[ZERO]] : tensor<16xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[ROWS]], #[[LAST]], #[[ID]]], iterator_types = ["parallel", "parallel"]} ins(%arg0, %[[SUMS]], %arg1 : tensor<16x64xf32>, tensor<16xf32>, tensor<64xf32>)
// CHECK: arith.constant 6.400000e+01 : f32
// CHECK: arith.divf
// CHECK: arith.constant 9.99999997E-7 : f32
// CHECK: math.rsqrt
func.func @rms_norm(%x: tensor<16x64xf32>, %g: tensor<64xf32>) -> tensor<16x64xf32> {
  %0 = moe.rms_norm %x, %g axis = -1 epsilon = 1.0e-06
      : (tensor<16x64xf32>, tensor<64xf32>) -> tensor<16x64xf32>
  return %0 : tensor<16x64xf32>
}

// -----

// softmax over the last axis (router scores): row maxima, sums of the
// shifted exponentials, then the quotient.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[ROWS:.*]] = affine_map<(d0, d1) -> (d0)>
// CHECK-LABEL: func.func @softmax
// CHECK: %[[NEG:.*]] = arith.constant 0xFF800000 : f32
// CHECK: %[[MAXINIT:.*]] = linalg.fill ins(%[[NEG]] : f32)
// CHECK: %[[MAX:.*]] = linalg.generic {indexing_maps = [#[[ID]], #[[ROWS]]], iterator_types = ["parallel", "reduction"]} ins(%arg0 : tensor<16x8xf32>) outs(%[[MAXINIT]] : tensor<16xf32>)
// CHECK: arith.maximumf
// CHECK: %[[SUM:.*]] = linalg.generic {indexing_maps = [#[[ID]], #[[ROWS]], #[[ROWS]]], iterator_types = ["parallel", "reduction"]} ins(%arg0, %[[MAX]] : tensor<16x8xf32>, tensor<16xf32>)
// CHECK: arith.subf
// CHECK: math.exp
// CHECK: arith.addf
// CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[ROWS]], #[[ROWS]], #[[ID]]], iterator_types = ["parallel", "parallel"]} ins(%arg0, %[[MAX]], %[[SUM]] : tensor<16x8xf32>, tensor<16xf32>, tensor<16xf32>)
// CHECK: arith.subf
// CHECK: math.exp
// CHECK: arith.divf
func.func @softmax(%x: tensor<16x8xf32>) -> tensor<16x8xf32> {
  %0 = moe.softmax %x axis = -1 : tensor<16x8xf32>
  return %0 : tensor<16x8xf32>
}

// -----

// top_k: one reduction per pass. Pass 0 keeps the best element (a higher
// value, or an equal one at a lower index); pass 1 also requires it to rank
// after pass 0's pick; then values and indices are stacked and narrowed.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[ROWS:.*]] = affine_map<(d0, d1) -> (d0)>
// CHECK-LABEL: func.func @top_k
// CHECK: %[[WORST:.*]] = arith.constant 0xFF800000 : f32
// CHECK: linalg.fill ins(%[[WORST]] : f32)
// CHECK: %[[PAST:.*]] = arith.constant 8 : i64
// CHECK: linalg.fill ins(%[[PAST]] : i64)
// CHECK: %[[P0:.*]]:2 = linalg.generic {indexing_maps = [#[[ID]], #[[ROWS]], #[[ROWS]]], iterator_types = ["parallel", "reduction"]} ins(%arg0 : tensor<16x8xf32>)
// CHECK: linalg.index 1
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpf oeq
// CHECK: arith.cmpi slt
// CHECK: %[[P1:.*]]:2 = linalg.generic {{.*}} ins(%arg0, %[[P0]]#0, %[[P0]]#1 : tensor<16x8xf32>, tensor<16xf32>, tensor<16xi64>)
// CHECK: linalg.generic {{.*}} ins(%[[P0]]#0, %[[P1]]#0 : tensor<16xf32>, tensor<16xf32>) outs(%{{.*}} : tensor<16x2xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[P0]]#1, %[[P1]]#1 : tensor<16xi64>, tensor<16xi64>) outs(%{{.*}} : tensor<16x2xi32>)
// CHECK: arith.trunci {{.*}} : i64 to i32
// CHECK-NOT: moe.
func.func @top_k(%x: tensor<16x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi32>) {
  %v, %i = moe.top_k %x k = 2 axis = -1
      : tensor<16x8xf32> -> tensor<16x2xf32>, tensor<16x2xi32>
  return %v, %i : tensor<16x2xf32>, tensor<16x2xi32>
}

// -----

// The smallest k: the worst start is +inf and the comparisons flip.
// CHECK-LABEL: func.func @top_k_smallest
// CHECK: arith.constant 0x7F800000 : f32
// CHECK: arith.cmpf olt
func.func @top_k_smallest(%x: tensor<16x8xf32>) -> (tensor<16x1xf32>, tensor<16x1xi64>) {
  %v, %i = moe.top_k %x k = 1 axis = -1 smallest
      : tensor<16x8xf32> -> tensor<16x1xf32>, tensor<16x1xi64>
  return %v, %i : tensor<16x1xf32>, tensor<16x1xi64>
}

// -----

// The router: logits by linalg.matmul, sigmoid scores, selection on the
// scores plus the correction bias, the plain scores gathered by index,
// normalised.
// CHECK-LABEL: func.func @router
// CHECK: %[[LOGITS:.*]] = linalg.matmul ins(%arg0, %arg1 : tensor<16x64xf32>, tensor<64x8xf32>)
// CHECK: %[[SCORES:.*]] = linalg.generic {{.*}} ins(%[[LOGITS]] : tensor<16x8xf32>)
// CHECK: math.exp
// CHECK: %[[CHOICE:.*]] = linalg.generic {{.*}} ins(%[[SCORES]], %arg2 : tensor<16x8xf32>, tensor<8xf32>)
// CHECK: %[[P0:.*]]:2 = linalg.generic {{.*}} ins(%[[CHOICE]] : tensor<16x8xf32>)
// CHECK: %[[P1:.*]]:2 = linalg.generic {{.*}} ins(%[[CHOICE]], %[[P0]]#0, %[[P0]]#1 :
// CHECK: %[[EXPERTS:.*]] = linalg.generic {{.*}} ins(%[[P0]]#1, %[[P1]]#1 : tensor<16xi64>, tensor<16xi64>) outs(%{{.*}} : tensor<16x2xi64>)
// CHECK: %[[PICKED:.*]] = linalg.generic {{.*}} ins(%[[EXPERTS]] : tensor<16x2xi64>) outs(%{{.*}} : tensor<16x2xf32>)
// CHECK: tensor.extract %[[SCORES]]
// CHECK: %[[SUMS:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]} ins(%[[PICKED]] : tensor<16x2xf32>)
// CHECK: %[[WEIGHTS:.*]] = linalg.generic {{.*}} ins(%[[PICKED]], %[[SUMS]] :
// CHECK: arith.divf
// CHECK: return %[[WEIGHTS]], %[[EXPERTS]]
func.func @router(%x: tensor<16x64xf32>, %w: tensor<64x8xf32>,
                  %c: tensor<8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>) {
  %weights, %experts = moe.router %x, %w correction %c top_k = 2
      score = sigmoid normalize
      : (tensor<16x64xf32>, tensor<64x8xf32>, tensor<8xf32>)
        -> (tensor<16x2xf32>, tensor<16x2xi64>)
  return %weights, %experts : tensor<16x2xf32>, tensor<16x2xi64>
}

// -----

// Data movement reads through indexing maps: transpose through the
// inverse permutation; reduce iterates the kept dimensions first and the
// reduced ones last (so the kept ones become parallel GPU loops), then
// restores the kept size-1 dimensions; where broadcasts its condition.
// CHECK-DAG: #[[PERM:.*]] = affine_map<(d0, d1, d2) -> (d1, d2, d0)>
// CHECK-DAG: #[[ID3:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-DAG: #[[KEPT_FIRST:.*]] = affine_map<(d0, d1, d2) -> (d1, d0, d2)>
// CHECK-DAG: #[[FIRST:.*]] = affine_map<(d0, d1, d2) -> (d0)>
// CHECK-DAG: #[[MIDDLE:.*]] = affine_map<(d0, d1, d2) -> (d1)>
// CHECK-DAG: #[[LAST:.*]] = affine_map<(d0, d1, d2) -> (d2)>
// CHECK-LABEL: func.func @data_movement
// CHECK: linalg.generic {indexing_maps = [#[[PERM]], #[[ID3]]], {{.*}}} ins(%arg0 : tensor<2x3x4xf32>) outs(%{{.*}} : tensor<4x2x3xf32>)
// CHECK: %[[SUMS:.*]] = linalg.generic {indexing_maps = [#[[KEPT_FIRST]], #[[FIRST]]], iterator_types = ["parallel", "reduction", "reduction"]} ins(%arg0 : tensor<2x3x4xf32>) outs(%{{.*}} : tensor<3xf32>)
// CHECK: arith.addf
// CHECK: linalg.generic {indexing_maps = [#[[MIDDLE]], #[[ID3]]], {{.*}}} ins(%[[SUMS]] : tensor<3xf32>) outs(%{{.*}} : tensor<1x3x1xf32>)
// CHECK: linalg.generic {indexing_maps = [#[[LAST]], #[[ID3]], #[[ID3]], #[[ID3]]], {{.*}}} ins(%arg1, %arg0, %arg0 : tensor<4xi1>, tensor<2x3x4xf32>, tensor<2x3x4xf32>)
// CHECK: arith.select
// CHECK-NOT: moe.
func.func @data_movement(%x: tensor<2x3x4xf32>, %m: tensor<4xi1>)
    -> (tensor<4x2x3xf32>, tensor<1x3x1xf32>, tensor<2x3x4xf32>) {
  %t = moe.transpose %x permutation = [2, 0, 1]
      : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
  %r = moe.reduce sum %x axes = [0, 2] keep_dims
      : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
  %z = moe.where %m, %x, %x
      : (tensor<4xi1>, tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  return %t, %r, %z : tensor<4x2x3xf32>, tensor<1x3x1xf32>, tensor<2x3x4xf32>
}

// -----

// Group-limited routing: the choices viewed as [tokens, groups, size],
// each group's two best summed, the best two groups kept, the others'
// choices -inf before the top-k passes.
// CHECK-LABEL: func.func @grouped_router
// CHECK: %[[GROUPED:.*]] = tensor.expand_shape %{{.*}} {{\[}}[0], [1, 2]] output_shape [16, 4, 2] : tensor<16x8xf32> into tensor<16x4x2xf32>
// CHECK: %[[BEST:.*]]:2 = linalg.generic {{.*}} ins(%[[GROUPED]] : tensor<16x4x2xf32>)
// CHECK: %[[SECOND:.*]]:2 = linalg.generic {{.*}} ins(%[[GROUPED]], %[[BEST]]#0, %[[BEST]]#1 :
// CHECK: %[[RATINGS:.*]] = linalg.generic {{.*}} ins(%[[BEST]]#0, %[[SECOND]]#0 : tensor<16x4xf32>, tensor<16x4xf32>)
// CHECK: %[[G0:.*]]:2 = linalg.generic {{.*}} ins(%[[RATINGS]] : tensor<16x4xf32>)
// CHECK: %[[G1:.*]]:2 = linalg.generic {{.*}} ins(%[[RATINGS]], %[[G0]]#0, %[[G0]]#1 :
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[G0]]#1, %[[G1]]#1 : tensor<16x8xf32>, tensor<16xi64>, tensor<16xi64>)
// CHECK: arith.divsi
// CHECK: arith.constant 0xFF800000 : f32
// CHECK: arith.select
func.func @grouped_router(%x: tensor<16x64xf32>, %w: tensor<64x8xf32>)
    -> (tensor<16x2xf32>, tensor<16x2xi64>) {
  %weights, %experts = moe.router %x, %w top_k = 2 score = sigmoid normalize
      {num_groups = 4 : i64, top_k_groups = 2 : i64}
      : (tensor<16x64xf32>, tensor<64x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
  return %weights, %experts : tensor<16x2xf32>, tensor<16x2xi64>
}

// -----

// Left alone: dynamic shapes, integer arithmetic, rms_norm over more than
// the last axis, softmax and top_k over another axis.
// CHECK-LABEL: func.func @unchanged
// CHECK: moe.add %arg0, %arg0 : (tensor<?x8xf32>, tensor<?x8xf32>)
// CHECK: moe.add %arg1, %arg1 : (tensor<4xi64>, tensor<4xi64>)
// CHECK: moe.rms_norm %arg2, %arg3 axis = 0
// CHECK: moe.softmax %arg2 axis = 0
// CHECK: moe.top_k %arg2 k = 1 axis = 0
// CHECK-NOT: linalg
func.func @unchanged(%d: tensor<?x8xf32>, %i: tensor<4xi64>,
                     %x: tensor<4x8xf32>, %s: tensor<4x8xf32>)
    -> (tensor<?x8xf32>, tensor<4xi64>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %0 = moe.add %d, %d : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %1 = moe.add %i, %i : (tensor<4xi64>, tensor<4xi64>) -> tensor<4xi64>
  %2 = moe.rms_norm %x, %s axis = 0 epsilon = 1.0e-06
      : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %3 = moe.softmax %x axis = 0 : tensor<4x8xf32>
  %v, %k = moe.top_k %x k = 1 axis = 0
      : tensor<4x8xf32> -> tensor<1x8xf32>, tensor<1x8xi64>
  return %0, %1, %2, %3 : tensor<?x8xf32>, tensor<4xi64>, tensor<4x8xf32>, tensor<4x8xf32>
}
