// com.microsoft.MoE nodes import as moe.layer; the test models come from
// examples/onnx/make_ort_moe_models.py (semantics: docs/design/onnxruntime-moe.md).

// RUN: moe-translate --import-onnx %S/models/ort/moe_relu_bias_top1.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=RELU
// onnxruntime's [E, out, in] weights become [in, out] by a transpose; the
// router MatMul and its bias move into the layer.
// RELU: moe.weight @router_w : tensor<16x4xf32> storage = <"moe_relu_bias_top1.onnx", offset = {{[0-9]+}}, length = 256>
// RELU: func.func @moe_relu_bias_top1(%[[X:.*]]: tensor<5x16xf32> {moe.dim_params = ["tokens", ""], moe.name = "x"})
// RELU-DAG: %[[FC1:.*]] = moe.weight_ref @fc1_w : tensor<4x32x16xf32>
// RELU-DAG: %[[FC2:.*]] = moe.weight_ref @fc2_w : tensor<4x16x32xf32>
// RELU-DAG: %[[UP:.*]] = moe.transpose %[[FC1]] permutation = [0, 2, 1] : tensor<4x32x16xf32> -> tensor<4x16x32xf32>
// RELU-DAG: %[[DOWN:.*]] = moe.transpose %[[FC2]] permutation = [0, 2, 1] : tensor<4x16x32xf32> -> tensor<4x32x16xf32>
// RELU-NOT: moe.matmul
// RELU: moe.layer %[[X]] router(%{{.*}} bias %{{.*}}) experts(up %[[UP]] down %[[DOWN]] up_bias %{{.*}} down_bias %{{.*}}) top_k = 1 score = softmax activation = relu

// RUN: moe-translate --import-onnx %S/models/ort/moe_gelu_top2.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=GELU
// onnxruntime's MoE gelu is the tanh approximation.
// GELU: moe.layer {{.*}} top_k = 2 score = softmax normalize activation = gelu_tanh

// RUN: moe-translate --import-onnx %S/models/ort/moe_silu_top2.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=SILU
// SILU: moe.layer {{.*}} top_k = 2 score = softmax activation = silu

// RUN: moe-translate --import-onnx %S/models/ort/moe_identity_top3.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=IDENTITY
// IDENTITY: moe.layer {{.*}} top_k = 3 score = softmax normalize activation = identity : (tensor<5x16xf32>, tensor<16x6xf32>

// RUN: moe-translate --import-onnx %S/models/ort/moe_swiglu_interleaved.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=SWIGLU
// swiglu_fusion = 1: fc1 rows alternate gate, up.
// SWIGLU: %[[FC1T:.*]] = moe.transpose %{{.*}} permutation = [0, 2, 1] : tensor<4x64x16xf32> -> tensor<4x16x64xf32>
// SWIGLU-DAG: %[[GATE:.*]] = moe.slice %[[FC1T]] starts = [0] ends = [64] axes = [2] steps = [2] : tensor<4x16x64xf32> -> tensor<4x16x32xf32>
// SWIGLU-DAG: %[[UP:.*]] = moe.slice %[[FC1T]] starts = [1] ends = [64] axes = [2] steps = [2] : tensor<4x16x64xf32> -> tensor<4x16x32xf32>
// SWIGLU-DAG: %[[GB:.*]] = moe.slice %{{.*}} starts = [0] ends = [64] axes = [1] steps = [2] : tensor<4x64xf32> -> tensor<4x32xf32>
// SWIGLU-DAG: %[[UB:.*]] = moe.slice %{{.*}} starts = [1] ends = [64] axes = [1] steps = [2] : tensor<4x64xf32> -> tensor<4x32xf32>
// SWIGLU: moe.layer {{.*}} experts(up %[[UP]] down %{{.*}} gate %[[GATE]] gate_bias %[[GB]] up_bias %[[UB]] down_bias %{{.*}}) top_k = 2 score = softmax normalize activation = swiglu

// RUN: moe-translate --import-onnx %S/models/ort/moe_relu_legacy_layout.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=LEGACY
// A legacy-shaped [E, H, I] fc1 holds [E, I, H] bytes: reshape, then transpose.
// LEGACY: %[[R:.*]] = moe.reshape %{{.*}} : (tensor<4x16x32xf32>) -> tensor<4x32x16xf32>
// LEGACY: moe.transpose %[[R]] permutation = [0, 2, 1] : tensor<4x32x16xf32> -> tensor<4x16x32xf32>

// RUN: moe-translate --import-onnx %S/models/ort/moe_silu_3d_input.onnx --dim-params=batch=2,seq=3 | FileCheck %s --check-prefix=THREED
// [batch, seq, hidden] flattens into tokens and back.
// THREED: func.func @moe_silu_3d_input(%[[X:.*]]: tensor<2x3x16xf32>
// THREED: %[[FLAT:.*]] = moe.reshape %[[X]] : (tensor<2x3x16xf32>) -> tensor<6x16xf32>
// THREED: %[[Y:.*]] = moe.layer %[[FLAT]]
// THREED: moe.reshape %[[Y]] : (tensor<6x16xf32>) -> tensor<2x3x16xf32>

// RUN: moe-translate --import-onnx %S/models/ort/qmoe_int4_block32_zp_swiglu.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=QMOE
// QMoE codes are dequantized (by reference, at load) before the same layout
// changes as float weights; QMoE always renormalises.
// QMOE: %[[FC1:.*]] = moe.dequantize %{{.*}}, %{{.*}}, %{{.*}} bits = 4 block_size = 32 : (tensor<4x128x16xui8>, tensor<4x128x1xf32>, tensor<4x128x1xui8>) -> tensor<4x128x32xf32>
// QMOE: moe.transpose %[[FC1]] permutation = [0, 2, 1]
// QMOE: moe.layer {{.*}} top_k = 2 score = softmax normalize activation = swiglu

// RUN: moe-translate --import-onnx %S/models/ort/qmoe_int4_sigmoid_correction.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=SIGMOID
// router_probs = sigmoid(l) + c with router_weights = sigmoid(l).
// SIGMOID: moe.layer {{.*}} router(%{{.*}} correction %{{.*}}) {{.*}} score = sigmoid

// RUN: moe-translate --import-onnx %S/models/ort/moe_group_router.onnx --dim-params=tokens=5 | FileCheck %s --check-prefix=GROUP
// MoEGroupRouter feeding MoE: DeepSeek-V3 group-limited sigmoid routing.
// GROUP: moe.layer {{.*}} router(%{{.*}} correction %{{.*}}) {{.*}} score = sigmoid normalize activation = {{[a-z_]+}} {num_groups = {{[0-9]+}} : i64, top_k_groups = {{[0-9]+}} : i64}

// com.microsoft.ShardedMoE holding every expert whole is MoE (the CPU
// onnxruntime has no ShardedMoE; e2e compares it with the MoE model it was
// made from). One rank's shard of the experts is refused with the reason.
// RUN: moe-opt %S/models/ort/sharded_moe_silu_top2.onnx --dim-params=tokens=7 -moe-raise-layers | FileCheck %s --check-prefix=SHARDED
// SHARDED: moe.layer %{{.*}} router(%{{.*}}) experts(up %{{.*}} down %{{.*}} up_bias %{{.*}} down_bias %{{.*}}) top_k = 2 score = softmax activation = silu
// RUN: not moe-opt %S/models/ort/sharded_moe_silu_top2_shard1.onnx --dim-params=tokens=7 2>&1 | FileCheck %s --check-prefix=SHARD
// SHARD: error: ShardedMoE node producing 'y': holds experts 2 to 3 of 4 in 1 tensor shard(s): one rank's part of a model sharded for NCCL
