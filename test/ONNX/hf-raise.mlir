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
