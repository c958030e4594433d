//===- KernelGeneration.cpp - generated GPU kernels for moe ops -----------===//
//
// Part of moe-compiler.
//
// Each group is copied into a module of its own as one function, compiled
// there by the same steps as test/CUDA/generated-kernels.mlir (results
// become out-parameters, so the host side of the compiled function is only
// scratch allocations and kernel launches), and its host side is read back
// into the launch list of a moe.launch. Equal groups (the same ops on the
// same types, as in every layer of a model) are compiled once.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/CUDA/KernelGeneration.h"

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Conversion/AffineToStandard/AffineToStandard.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/SCFToGPU/SCFToGPUPass.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/BufferizableOpInterfaceImpl.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Bufferization/Transforms/FuncBufferizableOpInterfaceImpl.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/Linalg/Transforms/BufferizableOpInterfaceImpl.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/AllocationOpInterfaceImpl.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/Utils/Utils.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/BufferizableOpInterfaceImpl.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"

#include <numeric>

using namespace mlir;

namespace {

/// Ops of one block joined into launch groups.
struct Group {
  SmallVector<Operation *> ops; ///< in block order
  bool merged = false;          ///< moved into another group
};

/// Groups the ops of `block` that lowersToLinalg accepts: an op joins the
/// groups that produce its operands when none of their values is used
/// outside them before it (the launch takes the place of the group's last
/// op, so earlier outside uses would lose their value).
SmallVector<SmallVector<Operation *>> formGroups(Block &block) {
  std::vector<Group> groups;
  DenseMap<Operation *, size_t> groupOf;
  auto canExtend = [&](size_t g, Operation *next) {
    for (Operation *member : groups[g].ops)
      for (Operation *user : member->getUsers()) {
        auto it = groupOf.find(user);
        bool inside = it != groupOf.end() && it->second == g;
        if (!inside && user != next && user->isBeforeInBlock(next))
          return false;
      }
    return true;
  };
  for (Operation &op : block) {
    if (!moe::lowersToLinalg(&op))
      continue;
    llvm::SetVector<size_t> producers;
    for (Value operand : op.getOperands())
      if (Operation *def = operand.getDefiningOp())
        if (auto it = groupOf.find(def); it != groupOf.end())
          producers.insert(it->second);
    std::optional<size_t> target;
    for (size_t g : producers) {
      if (!canExtend(g, &op))
        continue;
      if (!target) {
        target = g;
        continue;
      }
      for (Operation *member : groups[g].ops) {
        groups[*target].ops.push_back(member);
        groupOf[member] = *target;
      }
      groups[g].ops.clear();
      groups[g].merged = true;
    }
    if (!target) {
      target = groups.size();
      groups.emplace_back();
    }
    groups[*target].ops.push_back(&op);
    groupOf[&op] = *target;
  }
  SmallVector<SmallVector<Operation *>> result;
  for (Group &group : groups) {
    if (group.merged)
      continue;
    llvm::sort(group.ops, [](Operation *a, Operation *b) {
      return a->isBeforeInBlock(b);
    });
    result.emplace_back(group.ops.begin(), group.ops.end());
  }
  return result;
}

/// The kernel path's steps up to parallel loops, as in
/// test/CUDA/generated-kernels.mlir, with results turned into
/// out-parameters.
void buildLoopPipeline(PassManager &pm) {
  pm.addPass(moe::createLowerElementwiseToLinalgPass());
  pm.addPass(createLinalgElementwiseOpFusionPass());
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  bufferization::BufferResultsToOutParamsPassOptions outParams;
  outParams.hoistStaticAllocs = true;
  outParams.modifyPublicFunctions = true;
  pm.addPass(bufferization::createBufferResultsToOutParamsPass(outParams));
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToParallelLoopsPass());
}

/// Shapes each outermost parallel loop for blocks and threads. Dimensions
/// but the last are collapsed into one, rows by columns, whatever the
/// tensors' rank (a third loop dimension would map onto the z axis, whose
/// blocks hold at most 64 threads, and leave the contiguous dimension to
/// the blocks). Then fixed-size tiles with the bounds check inside, so that
/// every loop maps onto the GPU: a row per block and 256 columns to its
/// threads; a loop over rows alone (the rows of a reduction, whose
/// reduced dimension is a sequential loop inside) 256 rows per block, a
/// row per thread.
void tileForBlocksAndThreads(func::FuncOp function) {
  SmallVector<scf::ParallelOp> loops;
  function.walk([&](scf::ParallelOp loop) {
    if (!loop->getParentOfType<scf::ParallelOp>())
      loops.push_back(loop);
  });
  IRRewriter rewriter(function.getContext());
  for (scf::ParallelOp loop : loops) {
    if (loop.getNumLoops() > 2) {
      std::vector<unsigned> rows(loop.getNumLoops() - 1);
      std::iota(rows.begin(), rows.end(), 0u);
      std::vector<unsigned> columns = {loop.getNumLoops() - 1};
      collapseParallelLoops(rewriter, loop, {rows, columns});
    }
  }
  loops.clear();
  function.walk([&](scf::ParallelOp loop) {
    if (!loop->getParentOfType<scf::ParallelOp>())
      loops.push_back(loop);
  });
  for (scf::ParallelOp loop : loops)
    scf::tileParallelLoop(loop,
                          loop.getNumLoops() == 1 ? ArrayRef<int64_t>{256}
                                                  : ArrayRef<int64_t>{1, 256},
                          /*noMinMaxBounds=*/true);
}

/// From tiled parallel loops to PTX: GPU mapping, outlining and NVVM, with
/// the kernels' parameters passed as bare pointers.
void buildKernelPipeline(PassManager &pm, const moe::GpuKernelOptions &opts) {
  OpPassManager &host = pm.nest<func::FuncOp>();
  host.addPass(createGpuMapParallelLoopsPass());
  host.addPass(createConvertParallelLoopToGpuPass());
  host.addPass(createGpuLaunchSinkIndexComputationsPass());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createCanonicalizerPass());
  GpuNVVMAttachTargetOptions target;
  target.chip = opts.chip;
  target.features = opts.features;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &device = pm.nest<gpu::GPUModuleOp>();
  device.addPass(createLowerAffinePass());
  device.addPass(createSCFToControlFlowPass());
  ConvertGpuOpsToNVVMOpsOptions toNVVM;
  toNVVM.useBarePtrCallConv = true;
  device.addPass(createConvertGpuOpsToNVVMOps(toNVVM));
  device.addPass(createCanonicalizerPass());
  device.addPass(createCSEPass());
  device.addPass(createReconcileUnrealizedCastsPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  binary.toolkitPath = opts.cudaPath;
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

/// What a compiled group launches.
struct CompiledGroup {
  std::string launches;
  SmallVector<int64_t> scratch;
};

/// Reads the host side of the compiled `function` (inputs, then outputs as
/// out-parameters) into a launch list. Fails, saying why, on anything but
/// constants, scratch allocations and launches.
FailureOr<CompiledGroup> readHostSide(func::FuncOp function, size_t numInputs,
                                      std::string &why) {
  CompiledGroup compiled;
  DenseMap<Value, int64_t> scratchOf;
  // Reshaped views of a contiguous buffer are the buffer itself.
  DenseMap<Value, Value> viewOf;
  auto fail = [&](const Twine &message) {
    why = message.str();
    return failure();
  };
  auto constantInt = [](Value value) -> std::optional<int64_t> {
    IntegerAttr attr;
    if (matchPattern(value, m_Constant(&attr)))
      return attr.getValue().getSExtValue();
    return std::nullopt;
  };
  auto describe = [&](Value value, std::string &text) -> LogicalResult {
    while (viewOf.count(value))
      value = viewOf.lookup(value);
    if (auto argument = dyn_cast<BlockArgument>(value)) {
      size_t number = argument.getArgNumber();
      text = number < numInputs
                 ? llvm::formatv("in{0}", number).str()
                 : llvm::formatv("out{0}", number - numInputs).str();
      return success();
    }
    if (auto it = scratchOf.find(value); it != scratchOf.end()) {
      text = llvm::formatv("tmp{0}", it->second).str();
      return success();
    }
    Attribute attr;
    if (!matchPattern(value, m_Constant(&attr)))
      return failure();
    if (auto integer = dyn_cast<IntegerAttr>(attr);
        integer && (integer.getType().isIndex() ||
                    integer.getType().isSignlessInteger(64))) {
      text = llvm::formatv("i64:{0}", integer.getValue().getSExtValue()).str();
      return success();
    }
    if (auto real = dyn_cast<FloatAttr>(attr); real && real.getType().isF32()) {
      text = llvm::formatv("f32:{0:X8}",
                           real.getValue().bitcastToAPInt().getZExtValue())
                 .str();
      // formatv writes 0x with an upper-case X; the grammar spells 0x.
      text.replace(4, 2, "0x");
      return success();
    }
    return failure();
  };
  SmallVector<std::string> launches;
  for (Operation &op : function.getBody().front()) {
    if (isa<arith::ConstantOp, memref::DeallocOp, func::ReturnOp>(op))
      continue;
    if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
      MemRefType type = alloc.getType();
      if (!type.hasStaticShape() || !type.getLayout().isIdentity())
        return fail("a scratch buffer has a dynamic shape or a layout");
      int64_t bytes =
          type.getNumElements() *
          std::max<int64_t>(1, (type.getElementTypeBitWidth() + 7) / 8);
      scratchOf[alloc.getResult()] = compiled.scratch.size();
      compiled.scratch.push_back(bytes);
      continue;
    }
    if (isa<memref::ExpandShapeOp, memref::CollapseShapeOp>(op)) {
      auto result = cast<MemRefType>(op.getResult(0).getType());
      if (!result.getLayout().isIdentity())
        return fail("a reshaped view has a layout");
      viewOf[op.getResult(0)] = op.getOperand(0);
      continue;
    }
    if (auto copy = dyn_cast<memref::CopyOp>(op)) {
      // A result that is one of the group's values unchanged (two
      // transposes that cancel, say) is a copy.
      auto type = cast<MemRefType>(copy.getSource().getType());
      std::string source, target;
      if (!type.hasStaticShape() || !type.getLayout().isIdentity() ||
          !cast<MemRefType>(copy.getTarget().getType())
               .getLayout()
               .isIdentity() ||
          failed(describe(copy.getSource(), source)) ||
          failed(describe(copy.getTarget(), target)) ||
          source.rfind("i64:", 0) == 0 || source.rfind("f32:", 0) == 0)
        return fail("a copy between buffers with layouts");
      int64_t bytes =
          type.getNumElements() *
          std::max<int64_t>(1, (type.getElementTypeBitWidth() + 7) / 8);
      launches.push_back(
          llvm::formatv("copy {0} {1} {2}", source, target, bytes).str());
      continue;
    }
    auto launch = dyn_cast<gpu::LaunchFuncOp>(op);
    if (!launch)
      return fail("the host side holds '" + op.getName().getStringRef().str() +
                  "'");
    if (launch.getDynamicSharedMemorySize() || launch.getAsyncToken() ||
        launch.hasClusterSize())
      return fail("a launch uses shared memory, async tokens or clusters");
    gpu::KernelDim3 grid = launch.getGridSizeOperandValues();
    gpu::KernelDim3 block = launch.getBlockSizeOperandValues();
    SmallVector<std::optional<int64_t>> dims = {
        constantInt(grid.x),  constantInt(grid.y),  constantInt(grid.z),
        constantInt(block.x), constantInt(block.y), constantInt(block.z)};
    if (llvm::any_of(dims, [](auto dim) { return !dim; }))
      return fail("a launch has a grid or block size that is not constant");
    std::string text = llvm::formatv("{0}:{1} {2},{3},{4} {5},{6},{7}",
                                     launch.getKernelModuleName(),
                                     launch.getKernelName(), *dims[0], *dims[1],
                                     *dims[2], *dims[3], *dims[4], *dims[5]);
    for (Value operand : launch.getKernelOperands()) {
      std::string argument;
      if (failed(describe(operand, argument)))
        return fail("a kernel parameter is neither a buffer nor a constant");
      text += " " + argument;
    }
    launches.push_back(std::move(text));
  }
  if (launches.empty())
    return fail("nothing is launched");
  compiled.launches = llvm::join(launches, ";");
  return compiled;
}

} // namespace

void moe::registerGpuKernelDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, bufferization::BufferizationDialect,
                  func::FuncDialect, gpu::GPUDialect, linalg::LinalgDialect,
                  math::MathDialect, memref::MemRefDialect, NVVM::NVVMDialect,
                  scf::SCFDialect, tensor::TensorDialect>();
  arith::registerBufferizableOpInterfaceExternalModels(registry);
  linalg::registerBufferizableOpInterfaceExternalModels(registry);
  tensor::registerBufferizableOpInterfaceExternalModels(registry);
  // buffer-results-to-out-params hoists allocations it recognises by this
  // interface, so that a group writes its results in place.
  memref::registerAllocationOpInterfaceExternalModels(registry);
  bufferization::func_ext::registerBufferizableOpInterfaceExternalModels(
      registry);
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  NVVM::registerConvertGpuToNVVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

llvm::Expected<std::string> moe::assembleCubin(llvm::StringRef ptx,
                                               llvm::StringRef chip,
                                               llvm::StringRef cudaPath) {
  llvm::SmallString<256> ptxas(cudaPath);
  llvm::sys::path::append(ptxas, "bin", "ptxas");
  if (!llvm::sys::fs::can_execute(ptxas))
    return llvm::createStringError(
        "no ptxas at '" + ptxas +
        "' to assemble the kernels' cubin; give the CUDA toolkit with "
        "--cuda-path or $CUDA_HOME");
  // ptxas reads and writes files: the PTX, the cubin and its messages.
  llvm::SmallString<128> input, output, messages;
  for (auto [path, suffix] :
       {std::pair{&input, "ptx"}, std::pair{&output, "cubin"},
        std::pair{&messages, "log"}})
    if (std::error_code error =
            llvm::sys::fs::createTemporaryFile("moe-kernels", suffix, *path))
      return llvm::createStringError("cannot create a temporary file: " +
                                     error.message());
  llvm::scope_exit removeFiles([&] {
    for (const auto &path : {input, output, messages})
      llvm::sys::fs::remove(path);
  });
  {
    std::error_code error;
    llvm::raw_fd_ostream file(input, error);
    if (error)
      return llvm::createStringError("cannot write '" + input +
                                     "': " + error.message());
    file << ptx;
  }
  std::string arch = ("-arch=" + chip).str();
  llvm::SmallVector<llvm::StringRef> arguments = {ptxas, arch, "-o", output,
                                                  input};
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, messages.str(),
                                                messages.str()};
  std::string failure;
  int code =
      llvm::sys::ExecuteAndWait(ptxas, arguments, std::nullopt, redirects,
                                /*SecondsToWait=*/300, 0, &failure);
  if (code != 0) {
    std::string log;
    if (auto buffer = llvm::MemoryBuffer::getFile(messages))
      log = (*buffer)->getBuffer().trim().str();
    return llvm::createStringError(
        "ptxas -arch=" + chip.str() + " failed" +
        (failure.empty() ? "" : " (" + failure + ")") +
        (log.empty() ? "" : ": " + log));
  }
  auto cubin = llvm::MemoryBuffer::getFile(output);
  if (!cubin)
    return llvm::createStringError("ptxas wrote no cubin: " +
                                   cubin.getError().message());
  return (*cubin)->getBuffer().str();
}

LogicalResult moe::generateGpuKernels(ModuleOp module, func::FuncOp function,
                                      const GpuKernelOptions &options,
                                      GpuKernelStats &stats) {
  // The kernels' math functions link libdevice: without it the PTX would
  // call functions nothing defines, which only ptxas or the driver would
  // notice.
  llvm::SmallString<256> libdevice(options.cudaPath);
  llvm::sys::path::append(libdevice, "nvvm", "libdevice", "libdevice.10.bc");
  if (!llvm::sys::fs::exists(libdevice))
    return module.emitError()
           << "no CUDA toolkit at '" << options.cudaPath << "': '" << libdevice
           << "' does not exist (the generated kernels link its math "
              "functions); give the toolkit with --cuda-path or $CUDA_HOME";
  MLIRContext *context = module.getContext();
  Block &block = function.getBody().front();
  llvm::StringMap<CompiledGroup> compiledByBody;
  OpBuilder moduleEnd = OpBuilder::atBlockEnd(module.getBody());
  for (SmallVector<Operation *> &ops : formGroups(block)) {
    llvm::SmallPtrSet<Operation *, 16> members(ops.begin(), ops.end());
    llvm::SetVector<Value> inputs;
    // A scatter's constant indices are copied into the group: the lowering
    // reads them while compiling, and the kernels do not.
    llvm::SetVector<Operation *> constants;
    SmallVector<Value> outputs;
    for (Operation *op : ops) {
      for (OpOperand &use : op->getOpOperands()) {
        Operation *def = use.get().getDefiningOp();
        if (def && members.contains(def))
          continue;
        auto scatter = dyn_cast<moe::ScatterNDOp>(op);
        if (scatter && &use == &scatter.getIndicesMutable() &&
            isa_and_nonnull<arith::ConstantOp>(def)) {
          constants.insert(def);
          continue;
        }
        inputs.insert(use.get());
      }
      for (Value result : op->getResults())
        if (llvm::any_of(result.getUsers(), [&](Operation *user) {
              return !members.contains(user);
            }))
          outputs.push_back(result);
    }
    if (outputs.empty())
      continue;

    // The group as a function of its own module.
    std::string name = llvm::formatv("k{0}", stats.groups + stats.leftAlone);
    OwningOpRef<ModuleOp> scratch = ModuleOp::create(function.getLoc());
    OpBuilder builder = OpBuilder::atBlockEnd(scratch->getBody());
    auto type = builder.getFunctionType(
        llvm::to_vector(llvm::map_range(
            inputs, [](Value value) { return value.getType(); })),
        llvm::to_vector(llvm::map_range(
            outputs, [](Value value) { return value.getType(); })));
    auto kernelFunction =
        func::FuncOp::create(builder, ops.front()->getLoc(), name, type);
    // The group's operands are other operations' values: bufferisation
    // must not write into them.
    for (unsigned i = 0; i < kernelFunction.getNumArguments(); ++i)
      kernelFunction.setArgAttr(i, "bufferization.writable",
                                builder.getBoolAttr(false));
    builder.setInsertionPointToStart(kernelFunction.addEntryBlock());
    IRMapping mapping;
    for (auto [input, argument] :
         llvm::zip_equal(inputs, kernelFunction.getArguments()))
      mapping.map(input, argument);
    for (Operation *constant : constants)
      builder.clone(*constant, mapping);
    for (Operation *op : ops)
      builder.clone(*op, mapping);
    func::ReturnOp::create(
        builder, ops.back()->getLoc(),
        llvm::to_vector(llvm::map_range(
            outputs, [&](Value value) { return mapping.lookup(value); })));

    // Equal groups share what the first compiled: the key is the function
    // printed under a name common to all.
    std::string body;
    {
      llvm::raw_string_ostream os(body);
      kernelFunction.setSymName("group");
      kernelFunction.print(os);
      kernelFunction.setSymName(name);
    }
    auto known = compiledByBody.find(body);
    CompiledGroup compiled;
    if (known != compiledByBody.end()) {
      compiled = known->second;
    } else {
      std::string diagnostics;
      PassManager loops(context), kernels(context);
      buildLoopPipeline(loops);
      buildKernelPipeline(kernels, options);
      LogicalResult ran = success();
      {
        ScopedDiagnosticHandler capture(context, [&](Diagnostic &diag) {
          if (diag.getSeverity() == DiagnosticSeverity::Error)
            diagnostics += diag.str() + "; ";
          return success();
        });
        ran = loops.run(*scratch);
        if (succeeded(ran)) {
          scratch->walk(tileForBlocksAndThreads);
          ran = kernels.run(*scratch);
        }
      }
      std::string why = diagnostics;
      FailureOr<CompiledGroup> read = failure();
      if (succeeded(ran)) {
        auto host = scratch->lookupSymbol<func::FuncOp>(name);
        read = readHostSide(host, inputs.size(), why);
      }
      if (failed(ran) || failed(read)) {
        ops.front()->emitWarning()
            << "could not generate GPU kernels for this group of " << ops.size()
            << " ops (left to the runtime): " << why;
        ++stats.leftAlone;
        continue;
      }
      compiled = *read;
      for (auto binary :
           llvm::make_early_inc_range(scratch->getOps<gpu::BinaryOp>())) {
        binary->moveBefore(moduleEnd.getBlock(), moduleEnd.getBlock()->end());
        ++stats.kernels;
      }
      compiledByBody[body] = compiled;
      ++stats.compiled;
    }

    // One launch in place of the group, after its last op.
    builder.setInsertionPointAfter(ops.back());
    auto launch = moe::LaunchOp::create(
        builder, ops.back()->getLoc(),
        llvm::to_vector(llvm::map_range(
            outputs, [](Value value) { return value.getType(); })),
        inputs.getArrayRef(), compiled.launches, compiled.scratch);
    for (auto [output, result] : llvm::zip_equal(outputs, launch.getResults()))
      output.replaceUsesWithIf(result, [&](OpOperand &use) {
        return !members.contains(use.getOwner());
      });
    for (Operation *op : llvm::reverse(ops))
      op->erase();
    ++stats.groups;
    stats.opsReplaced += ops.size();
  }
  return success();
}
