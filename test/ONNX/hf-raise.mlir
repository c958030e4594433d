// Whole decoder LMs exported by torch.onnx.export (dynamo, transformers'
// batched_mm experts): every MoE block becomes one moe.layer and no expert
// gather is left. Models: test/ONNX/models/hf (examples/onnx/export_hf_moe.py);
// the e2e tests check that the raised programs match onnxruntime.

// RUN: moe-translate --import-onnx %S/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=2,seq=5 | moe-opt -moe-raise-layers | FileCheck %s --check-prefix=MIXTRAL
// MIXTRAL-COUNT-2: moe.layer {{.*}} top_k = 2 score = softmax normalize activation = swiglu
// MIXTRAL-NOT: moe.gather %{{.*}} : (tensor<8x

// RUN: moe-translate --import-onnx %S/models/hf/qwen2_moe-batched_mm-dynamo.onnx --dim-params=batch=2,seq=5 | moe-opt -moe-raise-layers | FileCheck %s --check-prefix=QWEN
// Qwen2-MoE's shared expert and its sigmoid gate join the layer.
// QWEN-COUNT-2: moe.layer {{.*}} shared_gate %{{.*}} shared_up %{{.*}} shared_down %{{.*}} shared_expert_gate %{{.*}} top_k = 2 score = softmax activation = swiglu

// RUN: moe-translate --import-onnx %S/models/hf/olmoe-batched_mm-dynamo.onnx --dim-params=batch=2,seq=5 | moe-opt -moe-raise-layers | FileCheck %s --check-prefix=OLMOE
// OLMOE-COUNT-2: moe.layer {{.*}} top_k = 2 score = softmax activation = swiglu

// RUN: moe-translate --import-onnx %S/models/hf/olmoe_top1-batched_mm-dynamo.onnx --dim-params=batch=2,seq=5 | moe-opt -moe-raise-layers | FileCheck %s --check-prefix=TOP1
// TOP1-COUNT-2: moe.layer {{.*}} top_k = 1 score = softmax activation = swiglu

// moe-opt takes the .onnx file directly.
// RUN: moe-opt %S/models/hf/mixtral-batched_mm-dynamo.onnx --dim-params=batch=1,seq=4 -moe-raise-layers | FileCheck %s --check-prefix=OPT
// OPT: func.func @main_graph(%{{.*}}: tensor<1x4xi64>
// OPT-COUNT-2: moe.layer {{.*}} : (tensor<4x32xf32>

// The TorchScript exporter spells the same blocks differently (pre-transposed
// MatMul router, Gather instead of GatherND, OneHot/Tile token repeat, two
// Slices instead of Split); they raise the same way.
// RUN: moe-opt %S/models/hf/mixtral-batched_mm-torchscript.onnx --dim-params=batch=2,seq=5 -moe-raise-layers | FileCheck %s --check-prefix=TS-MIXTRAL
// TS-MIXTRAL-COUNT-2: moe.layer {{.*}} top_k = 2 score = softmax normalize activation = swiglu
// RUN: moe-opt %S/models/hf/qwen2_moe-batched_mm-torchscript.onnx --dim-params=batch=2,seq=5 -moe-raise-layers | FileCheck %s --check-prefix=TS-QWEN
// TS-QWEN-COUNT-2: moe.layer {{.*}} shared_expert_gate %{{.*}} top_k = 2 score = softmax activation = swiglu
// RUN: moe-opt %S/models/hf/olmoe_top1-batched_mm-torchscript.onnx --dim-params=batch=2,seq=5 -moe-raise-layers | FileCheck %s --check-prefix=TS-TOP1
// TS-TOP1-COUNT-2: moe.layer {{.*}} top_k = 1 score = softmax activation = swiglu

// The dense form (every expert on every token, a scattered top-k mask
// selects): examples/onnx/make_dense_moe_models.py.
// RUN: moe-opt %S/models/dense/dense_swiglu_top2.onnx --dim-params=tokens=7 -moe-raise-layers | FileCheck %s --check-prefix=DENSE
// DENSE: moe.layer {{.*}} experts(up %{{.*}} down %{{.*}} gate %{{.*}}) top_k = 2 score = softmax normalize activation = swiglu
// DENSE-NOT: moe.scatter_elements
// RUN: moe-opt %S/models/dense/dense_relu_top1.onnx --dim-params=tokens=7 -moe-raise-layers | FileCheck %s --check-prefix=DENSE-RELU
// DENSE-RELU: moe.layer {{.*}} top_k = 1 score = softmax activation = relu

// DeepSeek-V3 (both exporters): sigmoid router with a correction bias,
// group-limited top-k and routed scaling; the shared expert joins after the
// reshape back to [batch, sequence, hidden].
// RUN: moe-opt %S/models/hf/deepseek_v3-batched_mm-dynamo.onnx --dim-params=batch=2,seq=5 -moe-raise-layers | FileCheck %s --check-prefix=DEEPSEEK
// RUN: moe-opt %S/models/hf/deepseek_v3-batched_mm-torchscript.onnx --dim-params=batch=2,seq=5 -moe-raise-layers | FileCheck %s --check-prefix=DEEPSEEK
// DEEPSEEK: moe.layer {{.*}} router(%{{.*}} correction %{{.*}}) experts(up %{{.*}} down %{{.*}} gate %{{.*}}) shared_gate %{{.*}} shared_up %{{.*}} shared_down %{{.*}} top_k = 2 score = sigmoid normalize activation = swiglu {num_groups = 4 : i64, routed_scaling_factor = 2.500000e+00 : f64, top_k_groups = 2 : i64}
// DEEPSEEK-NOT: moe.gather_elements

// transformers' eager experts, unrolled by the TorchScript exporter (a
// NonZero per expert: data-dependent shapes): the loop is recognised on the
// ONNX graph, imported in the gathered-experts form, and raised.
// RUN: moe-opt %S/models/hf/mixtral-eager-torchscript.onnx --dim-params=batch=3,seq=11 -moe-raise-layers | FileCheck %s --check-prefix=EAGER-MIXTRAL
// EAGER-MIXTRAL-COUNT-2: moe.layer {{.*}} top_k = 2 score = softmax normalize activation = swiglu
// EAGER-MIXTRAL-NOT: moe.scatter_elements
// RUN: moe-opt %S/models/hf/qwen2_moe-eager-torchscript.onnx --dim-params=batch=3,seq=11 -moe-raise-layers | FileCheck %s --check-prefix=EAGER-QWEN
// EAGER-QWEN-COUNT-2: moe.layer {{.*}} shared_expert_gate %{{.*}} top_k = 2 score = softmax activation = swiglu
// RUN: moe-opt %S/models/hf/olmoe-eager-torchscript.onnx --dim-params=batch=3,seq=11 -moe-raise-layers | FileCheck %s --check-prefix=EAGER-OLMOE
// EAGER-OLMOE-COUNT-2: moe.layer {{.*}} top_k = 2 score = softmax activation = swiglu
// RUN: moe-opt %S/models/hf/olmoe_top1-eager-torchscript.onnx --dim-params=batch=3,seq=11 -moe-raise-layers | FileCheck %s --check-prefix=EAGER-TOP1
// EAGER-TOP1-COUNT-2: moe.layer {{.*}} top_k = 1 score = softmax activation = swiglu
// RUN: moe-opt %S/models/hf/deepseek_v3-eager-torchscript.onnx --dim-params=batch=3,seq=11 -moe-raise-layers | FileCheck %s --check-prefix=EAGER-DEEPSEEK
// EAGER-DEEPSEEK: moe.layer {{.*}} score = sigmoid normalize activation = swiglu {num_groups = 4


// An export whose tracing never routed to one expert has one loop iteration
// fewer (examples/onnx/drop_traced_expert.py): a warning per block says so,
// and the layer still computes all 8 experts.
// RUN: moe-opt %S/models/hf/mixtral-eager-torchscript-7of8.onnx --dim-params=batch=3,seq=11 -moe-raise-layers 2>&1 | FileCheck %s --check-prefix=DROPPED
// DROPPED-COUNT-2: warning: the exported expert loop ending at node '{{.*}}' holds 7 iterations for 8 experts: tracing dropped the experts its example never routed to
// DROPPED-COUNT-2: moe.layer {{.*}} : (tensor<33x32xf32>, tensor<32x8xf32>, tensor<8x32x32xf32>
