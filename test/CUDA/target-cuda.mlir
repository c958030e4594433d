// moe-compile --target cuda on a Hugging Face Mixtral export (two decoder
// layers): element-wise, normalisation, softmax and routing ops become
// moe.launch ops of generated kernels; GEMMs, attention's reshapes and the
// MoE dispatch / experts / combine stay for the runtime's libraries. Equal
// groups (the same ops on the same types in both layers) share one
// compiled set of kernels. Every launch must name a kernel of the
// program's PTX with as many parameters as it declares, and every module
// must assemble for sm_90a.

// REQUIRES: nvptx, ptxas
// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx \
// RUN:   --dim-params=batch=2,seq=8 --target=cuda --cuda-path=%cuda_home \
// RUN:   --emit=mlir -o %t.mlir 2>&1 | FileCheck %s --check-prefix=LOG
// RUN: FileCheck %s --input-file=%t.mlir
// RUN: moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx \
// RUN:   --dim-params=batch=2,seq=8 --target=cuda --cuda-path=%cuda_home \
// RUN:   -o %t.moe
// RUN: python3 %moe_src_root/test/CUDA/assemble_program_ptx.py %t.moe %ptxas sm_90a \
// RUN:   | FileCheck %s --check-prefix=PTX

// LOG: moe-compile: generating GPU kernels for sm_90a
// LOG: moe-compile: 63 ops in 27 launches of 36 kernels (13 distinct groups compiled)

// The first layer's RMSNorm as exported: x^2 is one launch, the mean a
// moe.reduce for the runtime, then epsilon, sqrt, reciprocal and both
// scales fuse into one kernel.
// CHECK-LABEL: func.func @main_graph
// CHECK: moe.launch "k0_kernel:k0_kernel 16,1,1 1,256,1 i64:1 i64:256 i64:16 i64:32 in0 in1 out0" scratch = [] ins(%{{.*}}, %{{.*}}) : (tensor<2x8x32xf32>, tensor<f32>) -> tensor<2x8x32xf32>
// CHECK: moe.reduce
// CHECK: moe.launch "k1_kernel:k1_kernel 16,1,1 1,256,1 i64:1 i64:256 i64:16 i64:32 in3 in2 in0 in1 out0" scratch = [] ins({{.*}}) : (tensor<2x8x1xf32>, tensor<f32>, tensor<2x8x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
// Attention's masked softmax over the keys: the masked scores, the row
// maxima and the sums in scratch buffers.
// CHECK: moe.launch "k10_kernel:k10_kernel {{.*}}tmp0;k10_kernel_0:k10_kernel {{.*}}" scratch = [2048, 256, 256]
// The router: logits, softmax, top-2 and normalised weights in one launch
// that returns the weights and the expert indices.
// CHECK: %[[ROUTED:.*]]:2 = moe.launch "k13_kernel:k13_kernel {{.*}}" scratch = [{{.*}}] ins(%{{.*}}, %{{.*}}) : (tensor<16x32xf32>, tensor<32x8xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
// CHECK: moe.dispatch %{{.*}}, %[[ROUTED]]#1 num_experts = 8
// CHECK: moe.expert_ffn
// CHECK: moe.combine
// The second layer reuses the first layer's kernels.
// CHECK: moe.launch "k1_kernel:k1_kernel
// CHECK: moe.launch "k13_kernel:k13_kernel
// CHECK-NOT: moe.router
// CHECK-NOT: moe.softmax
// CHECK: gpu.binary @k0_kernel [#gpu.object<#nvvm.target<chip = "sm_90a", features = "+ptx80">, {{.*}}assembly = "

// PTX: 36 modules assembled; 75 launches in 27 launch operations match their kernels
