//===- Program.h - the executable program format ----------------*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// A program is what moe-compile writes and moe-run executes: the graph of one
// function as a list of values and operations, with weights by reference
// (file, offset, length, and the slice this rank reads). The format is text,
// one record per line, so a person can read it and `diff` two of them:
//
//   moe-program 1
//   weights-dir ../models
//   grid ep 2
//   input 0 x f32 16x64
//   weight 1 layer0.up f32 8x64x128 model.onnx.data 4096 262144
//   weight 2 layer0.up.mine f32 2x64x128 model.onnx.data 4096 262144 slice
//   2x0x0 2x64x128 const 3 i64 2 16,64 op matmul 4:f32:16x128 = 0,5 axis=i:1
//   output 4 y
//
// A `grid NAME SHAPE` record declares a device grid (a shard.grid): the
// program is SPMD over that many ranks, numbered row-major over the shape,
// and collective operations name the grid and the axes of their group. A
// `pipeline GRID AXIS` record makes the coordinates along that axis pipeline
// stages: an operation with the integer attribute `moe.stage` runs only on
// the ranks of that stage (moe.stage_transfer on its sender and receivers);
// operations on weights and constants alone run wherever they are needed.
// A `microbatches M` record says the program computes one of M micro-batches
// of a step: moe-run cuts every input along its first dimension into M
// pieces, runs the program on each in turn (pipeline stages overlap across
// micro-batches) and joins the outputs along their first dimension.
//
// A program compiled with --target cuda also holds `gpu-module NAME PTX
// [CHIP CUBIN]` records: the kernels that `launch` operations run (the
// launch list grammar is in KernelLaunch.h) as portable PTX, percent-encoded
// onto one line, which the driver compiles for any GPU at least as new as
// its target, and as a cubin that ptxas assembled for CHIP (sm_90a), in
// base64, which the executor loads first on such a GPU.
//
// Values are numbered; every value is defined once, before it is used. An
// operation lists its results as `id:dtype:shape` and its operands in the
// operation's declared order, `-` for an absent optional operand. Attribute
// values are typed: `i:` integer, `f:` float, `s:` string, `a:` integer list.
// Names and paths are percent-encoded (bytes outside [A-Za-z0-9._/+-] as
// %XX). Parsing is strict: any malformed line is an error naming the line.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_PROGRAM_H
#define MOE_RUNTIME_PROGRAM_H

#include "moe/Runtime/Kernels.h"
#include "moe/Runtime/Tensor.h"

#include <optional>
#include <string>
#include <vector>

namespace moe::rt {

constexpr int kProgramVersion = 1;

struct ValueType {
  DType dtype = DType::F32;
  Shape shape;
};

struct InputDecl {
  int id;
  std::string name;
  ValueType type;
};

struct WeightDecl {
  int id;
  std::string name;
  ValueType type;  ///< of the value: the slice's shape when sliced
  Shape fullShape; ///< of the stored tensor
  std::string file;
  int64_t offset = 0;
  int64_t length = 0;
  std::optional<Shape> sliceOffsets; ///< present when the rank reads a box
};

struct ConstDecl {
  int id;
  ValueType type;
  std::vector<double> values; ///< row-major, converted to `type.dtype`
};

struct Operation {
  std::string op;
  std::vector<int> results;
  std::vector<ValueType> resultTypes;
  std::vector<int> operands; ///< -1 for an absent optional operand
  Attributes attrs;
  int line = 0; ///< in the program file, for messages
};

struct GridDecl {
  std::string name;
  Shape shape;
};

struct PipelineDecl {
  std::string grid;
  int64_t axis = 0;
};

/// Generated kernels: one PTX module (moe-compile --target cuda).
struct GpuModuleDecl {
  std::string name;
  std::string ptx;
  /// The architecture of `cubin` and its bytes; both empty without one.
  std::string cubinChip;
  std::string cubin;
};

struct OutputDecl {
  int id;
  std::string name;
};

struct Program {
  std::string weightsDir = ".";
  std::vector<GridDecl> grids;
  std::optional<PipelineDecl> pipeline;
  int64_t microbatches = 1;
  std::vector<InputDecl> inputs;
  std::vector<WeightDecl> weights;
  std::vector<ConstDecl> constants;
  std::vector<Operation> operations;
  std::vector<OutputDecl> outputs;
  std::vector<GpuModuleDecl> gpuModules;
  int numValues = 0;
};

/// Parses program text. `source` names it in messages.
Status parseProgram(const std::string &text, const std::string &source,
                    Program &program);

/// Reads and parses a program file.
Status readProgram(const std::string &path, Program &program);

/// Writes `program` in the text format.
std::string printProgram(const Program &program);

/// Percent-encoding of names and paths.
std::string encodeName(const std::string &name);
bool decodeName(const std::string &text, std::string &name);

/// Base64 (RFC 4648, with padding) of binary bytes (cubins); decoding
/// fails on any other character or a bad length.
std::string encodeBase64(const std::string &bytes);
bool decodeBase64(const std::string &text, std::string &bytes);

} // namespace moe::rt

#endif // MOE_RUNTIME_PROGRAM_H
