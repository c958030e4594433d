//===- KernelGeneration.h - generated GPU kernels for moe ops ---*- C++ -*-===//
//
// Part of moe-compiler.
//
// The code-generation half of moe-compile --target cuda: groups of
// element-wise, normalisation and routing ops become moe.launch ops whose
// kernels MLIR generated (moe-lower-elementwise-to-linalg, then upstream
// fusion, bufferisation, GPU mapping, outlining and NVVM to PTX). The PTX
// lives in gpu.binary ops of the module, one per kernel.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_CUDA_KERNELGENERATION_H
#define MOE_TARGET_CUDA_KERNELGENERATION_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"

#include "llvm/Support/Error.h"

#include <string>

namespace moe {

struct GpuKernelOptions {
  /// The GPU architecture the PTX targets: the oldest it runs on, since
  /// the driver compiles PTX for newer GPUs (the portable fallback next to
  /// the cubin, assembleCubin).
  std::string chip = "sm_80";
  /// PTX ISA features ("+ptx80": PTX 8.0, CUDA 12 and later).
  std::string features = "+ptx80";
  /// The CUDA toolkit whose libdevice supplies the math functions.
  std::string cudaPath = "/usr/local/cuda";
};

struct GpuKernelStats {
  int groups = 0;      ///< moe.launch ops made
  int opsReplaced = 0; ///< ops they replaced
  int compiled = 0;    ///< distinct groups compiled (equal ones share PTX)
  int kernels = 0;     ///< gpu.binary ops added
  int leftAlone = 0;   ///< groups the path could not compile (warned)
};

/// Registers the dialects and interfaces the kernel path needs (its
/// bufferisation models, LLVM conversions and the NVVM target).
void registerGpuKernelDialects(mlir::DialectRegistry &registry);

/// Assembles `ptx` with the toolkit's ptxas (`cudaPath`/bin/ptxas -arch
/// `chip`) into a cubin's bytes; an error names ptxas and quotes its
/// messages.
llvm::Expected<std::string> assembleCubin(llvm::StringRef ptx,
                                          llvm::StringRef chip,
                                          llvm::StringRef cudaPath);

/// Replaces each group of ops of `function` (in `module`) that the GPU
/// kernel path handles by a moe.launch and adds the groups' kernels to
/// `module` as gpu.binary ops holding PTX. A group is a set of such ops
/// linked by their values whose outside uses all come after its last op,
/// so one launch at that place computes it. A group the path cannot
/// compile is left as it is, with a warning saying why.
mlir::LogicalResult generateGpuKernels(mlir::ModuleOp module,
                                       mlir::func::FuncOp function,
                                       const GpuKernelOptions &options,
                                       GpuKernelStats &stats);

} // namespace moe

#endif // MOE_TARGET_CUDA_KERNELGENERATION_H
