//===- ProgramExport.h - moe IR to runtime programs -------------*- C++ -*-===//
//
// Part of moe-compiler.
//
// Translates a lowered function (moe ops, arith.constant, weight references)
// into the runtime's program (runtime/include/moe/Runtime/Program.h). Every
// value must have a static shape; ops without a runtime kernel are errors
// that name the op.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_RUNTIME_PROGRAMEXPORT_H
#define MOE_TARGET_RUNTIME_PROGRAMEXPORT_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "moe/Runtime/Program.h"

namespace moe {

/// Fills `program` from `function`. `weightsDir` is where the program's
/// weight files are, relative to the program file.
llvm::LogicalResult exportProgram(mlir::func::FuncOp function,
                                  llvm::StringRef weightsDir,
                                  rt::Program &program);

/// The path that leads from directory `from` to directory `to` (both are
/// made absolute first), e.g. "../models" or ".".
std::string relativeDirectory(llvm::StringRef from, llvm::StringRef to);

} // namespace moe

#endif // MOE_TARGET_RUNTIME_PROGRAMEXPORT_H
