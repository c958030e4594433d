// The toolchain the CUDA lowering targets, checked end to end on a machine
// without a GPU: MLIR's gpu -> NVVM -> PTX pipeline (LLVM's NVPTX backend,
// libdevice for math.exp) emits sm_90a PTX and CUDA's ptxas assembles it.
// The kernel is the SwiGLU activation of an expert FFN, written by hand
// here; generating such kernels from moe ops is the next step of issue 6.

// REQUIRES: nvptx, ptxas
// RUN: mlir-opt %s --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" -o %t.mlir
// RUN: python3 %moe_src_root/test/CUDA/extract_ptx.py %t.mlir %t.ptx
// RUN: FileCheck %s --implicit-check-not=__nv_expf < %t.ptx
// RUN: %ptxas -arch=sm_90a %t.ptx -o %t.cubin
// RUN: test -s %t.cubin

// libdevice was linked: exp is inlined, and no line anywhere names the
// unresolved __nv_expf (--implicit-check-not).
// CHECK: .target sm_90a
// CHECK: .visible .entry swiglu(
// CHECK: ex2.approx
// CHECK: div.rn.f32
// CHECK: st.global.b32

module attributes {gpu.container_module} {
  gpu.module @kernels {
    // out[i] = silu(gate[i]) * up[i], one thread per element.
    gpu.func @swiglu(%gate: memref<?xf32>, %up: memref<?xf32>,
                     %out: memref<?xf32>, %n: index) kernel {
      %block = gpu.block_id x
      %width = gpu.block_dim x
      %thread = gpu.thread_id x
      %base = arith.muli %block, %width : index
      %i = arith.addi %base, %thread : index
      %inside = arith.cmpi ult, %i, %n : index
      scf.if %inside {
        %g = memref.load %gate[%i] : memref<?xf32>
        %u = memref.load %up[%i] : memref<?xf32>
        %zero = arith.constant 0.0 : f32
        %one = arith.constant 1.0 : f32
        %minus = arith.subf %zero, %g : f32
        %exp = math.exp %minus : f32
        %denominator = arith.addf %one, %exp : f32
        %silu = arith.divf %g, %denominator : f32
        %result = arith.mulf %silu, %u : f32
        memref.store %result, %out[%i] : memref<?xf32>
      }
      gpu.return
    }
  }
}
