// The CUDA lowering's generated kernels, from moe ops to assembled cubins on
// a machine without a GPU, in three steps: moe-lower-elementwise-to-linalg, then upstream
// MLIR fuses the element-wise generics, bufferises, maps the loops onto
// blocks of 256 threads, outlines one kernel per fused loop nest and
// compiles it through NVVM to sm_90a PTX, which ptxas assembles.

// REQUIRES: nvptx, ptxas
// RUN: moe-opt %s --moe-lower-elementwise-to-linalg -o %t.linalg.mlir
// RUN: mlir-opt %t.linalg.mlir --linalg-fuse-elementwise-ops \
// RUN:   --one-shot-bufferize=bufferize-function-boundaries \
// RUN:   --convert-linalg-to-parallel-loops \
// RUN:   --scf-parallel-loop-tiling="parallel-loop-tile-sizes=1,256 no-min-max-bounds=true" \
// RUN:   --gpu-map-parallel-loops --convert-parallel-loops-to-gpu \
// RUN:   --gpu-kernel-outlining --canonicalize -o %t.gpu.mlir
// RUN: FileCheck %s --check-prefix=LAUNCH --implicit-check-not=scf.parallel < %t.gpu.mlir
// RUN: mlir-opt %t.gpu.mlir \
// RUN:   --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" \
// RUN:   -o %t.ptx.mlir
// RUN: python3 %moe_src_root/test/CUDA/assemble_ptx.py %t.ptx.mlir %ptxas sm_90a \
// RUN:   | FileCheck %s --check-prefix=PTX

// The expert activation of a SwiGLU FFN with an up bias: add, silu and mul
// fuse into one kernel, 256 rows x 11 blocks of 256 threads.
// LAUNCH-LABEL: func.func @swiglu_with_bias
// LAUNCH: gpu.launch_func @swiglu_with_bias_kernel::@swiglu_with_bias_kernel blocks in (%c256, %c11, %c1) threads in (%c1, %c256, %c1)
// LAUNCH-NOT: gpu.launch_func
// LAUNCH: return
func.func @swiglu_with_bias(%gate: tensor<256x2816xf32>,
                            %up: tensor<256x2816xf32>,
                            %bias: tensor<2816xf32>) -> tensor<256x2816xf32> {
  %biased = moe.add %up, %bias
      : (tensor<256x2816xf32>, tensor<2816xf32>) -> tensor<256x2816xf32>
  %act = moe.silu %gate : tensor<256x2816xf32>
  %out = moe.mul %act, %biased
      : (tensor<256x2816xf32>, tensor<256x2816xf32>) -> tensor<256x2816xf32>
  return %out : tensor<256x2816xf32>
}

// RMSNorm on bf16 activations: zero the sums, reduce each row (one thread
// per row for now: upstream maps a reduction loop to a sequential loop;
// a block-wide tree reduction is the next step), scale 256 columns a block.
// LAUNCH-LABEL: func.func @rms_norm_bf16
// LAUNCH: gpu.launch_func @rms_norm_bf16_kernel::@rms_norm_bf16_kernel blocks in (%c128, %c1, %c1) threads in (%c1, %c1, %c1)
// LAUNCH: gpu.launch_func @rms_norm_bf16_kernel_0::@rms_norm_bf16_kernel blocks in (%c128, %c1, %c1) threads in (%c1, %c1, %c1)
// LAUNCH: gpu.launch_func @rms_norm_bf16_kernel_1::@rms_norm_bf16_kernel blocks in (%c128, %c4, %c1) threads in (%c1, %c256, %c1)
// LAUNCH-NOT: gpu.launch_func
// LAUNCH: return
func.func @rms_norm_bf16(%x: tensor<128x1024xbf16>,
                         %scale: tensor<1024xbf16>) -> tensor<128x1024xbf16> {
  %y = moe.rms_norm %x, %scale axis = -1 epsilon = 1.0e-06
      : (tensor<128x1024xbf16>, tensor<1024xbf16>) -> tensor<128x1024xbf16>
  return %y : tensor<128x1024xbf16>
}

// Router scores: softmax over 8 experts for 4096 tokens. Fill and reduce
// the maxima, then the sums of the shifted exponentials (one thread per
// token), then the quotients (a block per token: tiles of 256 columns are
// fixed-size with a bounds check inside, so that every loop maps onto the
// GPU; a host loop left behind would fail --implicit-check-not).
// LAUNCH-LABEL: func.func @router_softmax
// LAUNCH-COUNT-4: gpu.launch_func @router_softmax_kernel{{.*}} threads in (%c1, %c1, %c1)
// LAUNCH: gpu.launch_func @router_softmax_kernel_5::@router_softmax_kernel blocks in (%c4096, %c1, %c1) threads in (%c1, %c256, %c1)
// LAUNCH-NOT: gpu.launch_func
// LAUNCH: return
func.func @router_softmax(%logits: tensor<4096x8xf32>) -> tensor<4096x8xf32> {
  %scores = moe.softmax %logits axis = -1 : tensor<4096x8xf32>
  return %scores : tensor<4096x8xf32>
}

// Routing in 18 kernels: the logits (zeroed, then a 256-long dot product a
// thread), softmax (5 as above), two top-k passes (each a fill of the best
// values, a fill of the best indices and the reduction, one thread per
// token), the expert indices, the picks' plain scores gathered by them,
// their sums (fill, reduce) and the normalised weights.
// LAUNCH-LABEL: func.func @router_top2
// LAUNCH: gpu.launch_func @router_top2_kernel::@router_top2_kernel blocks in (%c512, %c1, %c1) threads in (%c1, %c256, %c1)
// LAUNCH-COUNT-17: gpu.launch_func @router_top2_kernel_{{[0-9]+}}::@router_top2_kernel
// LAUNCH-NOT: gpu.launch_func
// LAUNCH: return
func.func @router_top2(%x: tensor<512x256xf32>, %w: tensor<256x8xf32>)
    -> (tensor<512x2xf32>, tensor<512x2xi64>) {
  %weights, %experts = moe.router %x, %w top_k = 2 score = softmax normalize
      : (tensor<512x256xf32>, tensor<256x8xf32>)
        -> (tensor<512x2xf32>, tensor<512x2xi64>)
  return %weights, %experts : tensor<512x2xf32>, tensor<512x2xi64>
}

// Every kernel assembles for sm_90a.
// PTX: kernel swiglu_with_bias_kernel swiglu_with_bias_kernel: {{[1-9][0-9]*}} bytes of cubin
// PTX: kernel rms_norm_bf16_kernel rms_norm_bf16_kernel: {{[1-9][0-9]*}} bytes of cubin
// PTX: kernel rms_norm_bf16_kernel_0 rms_norm_bf16_kernel: {{[1-9][0-9]*}} bytes of cubin
// PTX: kernel rms_norm_bf16_kernel_1 rms_norm_bf16_kernel: {{[1-9][0-9]*}} bytes of cubin
// PTX-COUNT-5: kernel router_softmax_kernel{{.*}} router_softmax_kernel: {{[1-9][0-9]*}} bytes of cubin
// PTX-COUNT-18: kernel router_top2_kernel{{.*}} router_top2_kernel: {{[1-9][0-9]*}} bytes of cubin
