// moe-compile --target cuda on a Hugging Face Mixtral export (two decoder
// layers): element-wise, normalisation, softmax and routing ops become
// moe.launch ops of generated kernels, and so do data movement (transposes,
// slices, gathers, concatenations, broadcasts), reductions, comparisons and
// casts; GEMMs, reshapes and the MoE dispatch / experts / combine stay for
// the runtime's libraries. Equal groups (the same ops on the same types in
// both layers) share one compiled set of kernels. Every launch must name a kernel of the
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
// A toolkit path without libdevice is an error, and no program is written.
// RUN: rm -f %t.none.moe
// RUN: not moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx \
// RUN:   --dim-params=batch=2,seq=8 --target=cuda --cuda-path=%t.nowhere \
// RUN:   -o %t.none.moe 2>&1 | FileCheck %s --check-prefix=NOCUDA
// RUN: not test -e %t.none.moe
// A toolkit with libdevice but without ptxas cannot assemble the cubin:
// an error naming ptxas, and no program.
// RUN: rm -rf %t.noptxas %t.noptxas.moe && mkdir -p %t.noptxas/nvvm/libdevice
// RUN: cp %cuda_home/nvvm/libdevice/libdevice.10.bc %t.noptxas/nvvm/libdevice/
// RUN: not moe-compile %moe_src_root/test/ONNX/models/hf/mixtral-batched_mm-dynamo.onnx \
// RUN:   --dim-params=batch=2,seq=8 --target=cuda --cuda-path=%t.noptxas \
// RUN:   -o %t.noptxas.moe 2>&1 | FileCheck %s --check-prefix=NOPTXAS
// RUN: not test -e %t.noptxas.moe
// NOPTXAS: error: no ptxas at '{{.*}}noptxas/bin/ptxas' to assemble the kernels' cubin; give the CUDA toolkit with --cuda-path or $CUDA_HOME

// LOG: moe-compile: generating GPU kernels: PTX for sm_80 and later, cubin for sm_90a
// LOG: moe-compile: 112 ops in 32 launches of 57 kernels (16 distinct groups compiled)

// The embedding gather and the first RMSNorm fuse into one launch (its
// row sums in scratch buffers) that returns the embeddings for the
// residual and the normalised rows for the Q, K and V projections.
// CHECK-LABEL: func.func @main_graph
// CHECK: %[[NORMED:.*]]:2 = moe.launch "k0_kernel:k0_kernel {{.*}}" scratch = [{{.*}}] ins({{.*}}) : ({{.*}}) -> (tensor<2x8x32xf32>, tensor<2x8x32xf32>)
// CHECK: moe.matmul %[[NORMED]]#1
// Rotary embeddings (slices, negation, concatenation, products) and the
// key / value head repetition are launches between reshapes.
// CHECK: moe.launch "k3_kernel:k3_kernel
// CHECK: moe.launch "k2_kernel:k2_kernel
// The masked softmax over the keys between the two attention products:
// the scores, the row maxima and the sums in scratch buffers.
// CHECK: moe.matmul
// CHECK-NEXT: moe.launch "k9_kernel:k9_kernel {{.*}}" scratch = [2048, 256, 256]
// CHECK-NEXT: moe.matmul
// The router: the exported transpose of its weight, logits, softmax, top-2
// and normalised weights in one launch that returns the weights and the
// expert indices.
// CHECK: %[[ROUTED:.*]]:2 = moe.launch "k12_kernel:k12_kernel {{.*}}" scratch = [{{.*}}] ins({{.*}}) : (tensor<8x32xf32>, tensor<16x32xf32>) -> (tensor<16x2xf32>, tensor<16x2xi64>)
// CHECK: moe.dispatch %{{.*}}, %[[ROUTED]]#1 num_experts = 8
// CHECK: moe.expert_ffn
// CHECK: moe.combine %{{.*}}, %{{.*}}, %[[ROUTED]]#0
// The second layer reuses the first layer's kernels.
// CHECK: moe.launch "k11_kernel:k11_kernel
// CHECK: moe.launch "k4_kernel:k4_kernel
// CHECK: moe.launch "k12_kernel:k12_kernel
// CHECK: gpu.binary @k0_kernel [#gpu.object<#nvvm.target<chip = "sm_80", features = "+ptx80">, {{.*}}assembly = "

// What is left for the runtime's libraries: reshapes (views), GEMMs
// (cuBLAS) and the MoE dispatch, experts and combine.
// PTX: operations: combine 2, dispatch 2, expert_ffn 2, launch 32, matmul 13, reshape 26
// NOCUDA: error: no CUDA toolkit at '{{.*}}.nowhere': '{{.*}}.nowhere/nvvm/libdevice/libdevice.10.bc' does not exist (the generated kernels link its math functions); give the toolkit with --cuda-path or $CUDA_HOME

// PTX: 57 modules assembled, 57 carry a cubin; 108 launches in 32 launch operations match their kernels
