//===- moe-compile.cpp - ONNX model to runnable program -------------------===//
//
// Part of moe-compiler.
//
// The one-command driver, like iree-compile: imports an ONNX model, runs the
// lowering pipeline (moe-lower-to-runtime, which moe-opt also exposes) and
// writes the program moe-run executes. Pass-manager debugging flags such as
// --mlir-print-ir-after-all pass through.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/ModelExtraction.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"
#include "moe/Plan/CostModel.h"
#include "moe/Plan/ExpertLoad.h"
#include "moe/Plan/MachineDescription.h"
#include "moe/Plan/PlanSearch.h"
#include "moe/Target/CUDA/KernelGeneration.h"
#include "moe/Target/ONNX/ONNXImporter.h"
#include "moe/Target/Runtime/ProgramExport.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cmath>

using namespace mlir;

namespace {

enum class Target { CPU, CUDA };
enum class Emit { Program, MLIR };

llvm::cl::OptionCategory category("moe-compile options");

llvm::cl::opt<std::string> inputFile(llvm::cl::Positional,
                                     llvm::cl::desc("<model.onnx>"),
                                     llvm::cl::Required,
                                     llvm::cl::cat(category));
llvm::cl::opt<std::string>
    outputFile("o", llvm::cl::desc("Output program (default: model.moe)"),
               llvm::cl::value_desc("filename"), llvm::cl::cat(category));
llvm::cl::opt<Target> target(
    "target", llvm::cl::desc("Where the program runs"),
    llvm::cl::values(
        clEnumValN(Target::CPU, "cpu", "CPU ranks (default)"),
        clEnumValN(Target::CUDA, "cuda",
                   "GPU ranks: element-wise, normalisation and routing ops "
                   "become generated kernels (PTX in the program)")),
    llvm::cl::init(Target::CPU), llvm::cl::cat(category));
llvm::cl::opt<std::string> cudaChip(
    "cuda-chip",
    llvm::cl::desc("GPU architecture of the kernels' cubin, which ptxas "
                   "assembles here and the runtime loads first (--target "
                   "cuda; 'none': PTX only)"),
    llvm::cl::value_desc("sm_XX"), llvm::cl::init("sm_90a"),
    llvm::cl::cat(category));
llvm::cl::opt<std::string> cudaPtxChip(
    "cuda-ptx-chip",
    llvm::cl::desc("Oldest GPU architecture of the kernels' portable PTX, "
                   "which the driver compiles for GPUs the cubin does not "
                   "fit (--target cuda)"),
    llvm::cl::value_desc("sm_XX"), llvm::cl::init("sm_80"),
    llvm::cl::cat(category));
llvm::cl::opt<std::string> cudaPath(
    "cuda-path",
    llvm::cl::desc("CUDA toolkit whose libdevice supplies math functions "
                   "(default: $CUDA_HOME, else /usr/local/cuda)"),
    llvm::cl::value_desc("dir"), llvm::cl::cat(category));
llvm::cl::opt<Emit>
    emit("emit", llvm::cl::desc("What to write"),
         llvm::cl::values(clEnumValN(Emit::Program, "program",
                                     "the runtime program (default)"),
                          clEnumValN(Emit::MLIR, "mlir", "the lowered moe IR")),
         llvm::cl::init(Emit::Program), llvm::cl::cat(category));
moe::ONNXImportFlags importFlags(category);

llvm::cl::opt<std::string> machine(
    "machine",
    llvm::cl::desc("Plan for this machine: a preset (cpu:N, 8xH200, "
                   "2x8xH100, 4xL40S, NODESxDEVICESx{H200,H100,L40S}) or a "
                   "machine description JSON file"),
    llvm::cl::value_desc("preset|file"), llvm::cl::cat(category));
llvm::cl::opt<std::string> planChoice(
    "plan",
    llvm::cl::desc("auto (the cost model's optimum, the default with "
                   "--machine) or pinned choices, e.g. \"ep=4 tp=2 pp=1\""),
    llvm::cl::value_desc("auto|choices"), llvm::cl::init("auto"),
    llvm::cl::cat(category));
llvm::cl::opt<std::string> expertLoad(
    "expert-load",
    llvm::cl::desc("Expert load the plan assumes: uniform (default), "
                   "zipf:EXPONENT, or a moe-run --expert-load file"),
    llvm::cl::value_desc("uniform|zipf:S|file"), llvm::cl::init("uniform"),
    llvm::cl::cat(category));
llvm::cl::opt<std::string> reportFile(
    "report",
    llvm::cl::desc("Write the plan report to this file (JSON when it ends in "
                   ".json, text otherwise); default: print the text report"),
    llvm::cl::value_desc("filename"), llvm::cl::cat(category));

llvm::cl::opt<double> capacityFactor(
    "capacity-factor",
    llvm::cl::desc("Allow capacity mode: each expert takes at most "
                   "ceil(F * tokens * top_k / experts) (token, slot) pairs, "
                   "the earliest tokens first, and drops the rest (static "
                   "shapes, even all-to-all); default: dropless"),
    llvm::cl::value_desc("F"), llvm::cl::init(0.0), llvm::cl::cat(category));

llvm::cl::opt<bool> singleDeviceGrid(
    "single-device-grid",
    llvm::cl::desc("With --machine and a one-rank plan, partition anyway: "
                   "the program keeps its collectives on a grid of one "
                   "device (runs a backend's collective paths on one "
                   "device, e.g. moe-run --gpu-transport nccl on one GPU)"),
    llvm::cl::init(false), llvm::cl::cat(category));

/// The CUDA toolkit: --cuda-path, else $CUDA_HOME, else /usr/local/cuda.
std::string cudaToolkit() {
  if (!cudaPath.empty())
    return cudaPath;
  if (const char *home = std::getenv("CUDA_HOME"))
    return home;
  return "/usr/local/cuda";
}

/// Whether the program is partitioned by the plan: the CPU target runs
/// partitioned programs on CPU ranks, so it applies plans made for them
/// (the cpu:N preset or a machine file based on it); the CUDA target runs
/// them on GPU ranks (one per device of the machine; cpu:N plans too, for
/// N ranks sharing GPUs). Set by planModule.
bool partitionByPlan = false;
bool partitionsForMachine() { return partitionByPlan; }

/// `module` imported again for one of `pieces` pieces of the batch (the
/// micro-batches of each data-parallel replica): the first input's first
/// dimension, which must be a symbolic dimension bound with --dim-params,
/// divided by the count. Null (after a message) when it cannot be.
OwningOpRef<ModuleOp> importMicrobatch(ModuleOp module, MLIRContext &context,
                                       const moe::ONNXImportOptions &options,
                                       int64_t pieces) {
  auto functions = module.getOps<func::FuncOp>();
  func::FuncOp function = *functions.begin();
  auto names = function.getNumArguments()
                   ? function.getArgAttrOfType<ArrayAttr>(0, "moe.dim_params")
                   : ArrayAttr();
  StringRef batch;
  if (names && !names.empty())
    if (auto name = dyn_cast<StringAttr>(names[0]))
      batch = name.getValue();
  auto bound = options.dimParams.find(batch);
  if (batch.empty() || bound == options.dimParams.end()) {
    llvm::errs() << "moe-compile: the plan splits each step into " << pieces
                 << " pieces (micro-batches x data-parallel replicas) along "
                    "the first input's first dimension, which must be a "
                    "symbolic dimension bound with --dim-params; pin "
                    "microbatches=1 dp=1 in --plan otherwise\n";
    return nullptr;
  }
  if (bound->second % pieces != 0) {
    llvm::errs() << "moe-compile: " << batch << "=" << bound->second
                 << " does not split into " << pieces
                 << " pieces (micro-batches x data-parallel replicas)\n";
    return nullptr;
  }
  moe::ONNXImportOptions micro = options;
  micro.dimParams[batch] = bound->second / pieces;
  return moe::importONNXFile(inputFile, context, micro);
}

/// Chooses a plan for the raised layers of `module`, records it on the
/// module (moe.plan) and writes the report. Planning reads shapes only.
LogicalResult planModule(ModuleOp module) {
  auto functions = module.getOps<func::FuncOp>();
  if (functions.empty())
    return module.emitError() << "has no function to plan";
  FailureOr<moe::ExtractedModel> extracted =
      moe::extractModel(*functions.begin());
  if (failed(extracted))
    return failure();
  auto report = [&](llvm::Error error) {
    llvm::errs() << "moe-compile: " << llvm::toString(std::move(error)) << "\n";
    return failure();
  };
  llvm::Expected<moe::plan::MachineDescription> machineDescription =
      moe::plan::resolveMachine(machine);
  if (!machineDescription)
    return report(machineDescription.takeError());
  partitionByPlan = machineDescription->cpuRanks || target == Target::CUDA;
  llvm::Expected<moe::plan::ExpertLoadModel> load =
      moe::plan::resolveExpertLoad(expertLoad);
  if (!load)
    return report(load.takeError());
  moe::plan::SearchOptions options;
  if (planChoice != "auto") {
    llvm::Expected<moe::plan::PlanConstraints> pinned =
        moe::plan::parsePlanString(planChoice);
    if (!pinned)
      return report(pinned.takeError());
    options.pinned = *pinned;
  }
  if (partitionsForMachine()) {
    // Search only what the partitioner applies (expert and tensor
    // parallelism inside the MoE layers; the token-split layout of the cost
    // model keeps etp = tp); a choice pinned by hand stays, and the
    // partitioner names what it cannot apply.
    moe::plan::PlanConstraints &pinned = options.pinned;
    pinned.extraExpertSlots = pinned.extraExpertSlots.value_or(0);
    llvm::errs() << "moe-compile: searching the plans the partitioner "
                    "applies: pipeline stages and micro-batches"
                 << " x data-parallel replicas x ep x tp inside the MoE "
                    "layers (no replicated experts unless extra_slots is "
                    "pinned)\n";
  }
  moe::plan::CostModelOptions costOptions;
  if (partitionsForMachine())
    costOptions.layout = moe::plan::ExpertParallelLayout::TokenSplitLayers;
  auto costModel = moe::plan::CostModel::create(
      extracted->model, *machineDescription, *load, costOptions);
  if (!costModel)
    return report(costModel.takeError());
  llvm::Expected<moe::plan::PlanReport> plan =
      moe::plan::searchPlan(**costModel, options);
  if (!plan)
    return report(plan.takeError());
  llvm::errs() << "moe-compile: chosen plan " << plan->best.config.str();
  if (partitionsForMachine())
    llvm::errs() << "\n";
  else
    llvm::errs() << "; the program is not partitioned: the CPU target "
                    "partitions plans for CPU ranks only (cpu:N, or a "
                    "machine file based on it); --target cuda partitions "
                    "for GPU ranks\n";
  // The plan string, with the stage split when there are stages.
  std::string planText = plan->best.config.str();
  if (plan->best.config.pp > 1) {
    planText += " stages=";
    for (auto [index, stage] : llvm::enumerate(plan->best.stages))
      planText += (index ? "," : "") + std::to_string(stage.numLayers);
  }
  module->setAttr("moe.plan", StringAttr::get(module.getContext(), planText));
  if (partitionsForMachine()) {
    // The placement the cost model priced is the one the partitioner
    // applies: each layer learns the rank of each expert. Layers appear in
    // the model description in the order the function holds them.
    SmallVector<moe::LayerOp> layers;
    module.walk([&](moe::LayerOp layer) { layers.push_back(layer); });
    if (layers.size() != plan->best.placements.size())
      return module.emitError()
             << "the plan places " << plan->best.placements.size()
             << " MoE layers but the module has " << layers.size();
    for (auto [layer, placed] :
         llvm::zip_equal(layers, plan->best.placements)) {
      const moe::plan::ExpertPlacement &placement = *placed.placement;
      bool simple = true;
      for (const std::vector<int64_t> &ranks : placement.ranksOfExpert)
        simple = simple && ranks.size() == 1;
      for (const std::vector<int64_t> &experts : placement.expertsOnRank)
        simple = simple &&
                 static_cast<int64_t>(experts.size()) == placement.slotsPerRank;
      if (simple) {
        SmallVector<int64_t> ranksOfExpert;
        for (const std::vector<int64_t> &ranks : placement.ranksOfExpert)
          ranksOfExpert.push_back(ranks.front());
        layer->setAttr(
            "moe.expert_ranks",
            DenseI64ArrayAttr::get(module.getContext(), ranksOfExpert));
        continue;
      }
      // Replicated experts or empty slots: the expert of every slot.
      SmallVector<int64_t> expertOfSlot;
      for (const std::vector<int64_t> &experts : placement.expertsOnRank)
        for (int64_t slot = 0; slot < placement.slotsPerRank; ++slot)
          expertOfSlot.push_back(
              slot < static_cast<int64_t>(experts.size()) ? experts[slot] : -1);
      layer->setAttr("moe.expert_slots",
                     DenseI64ArrayAttr::get(module.getContext(), expertOfSlot));
    }
  }
  // In capacity mode, what the assumed expert load would drop: expert e of
  // a layer receives share_e * tokens * top_k pairs and keeps at most the
  // capacity. A partitioned layer applies the capacity on each of its ep
  // ranks to that rank's tokens, so the estimate is per rank, times ep.
  // Each micro-batch is dispatched on its own, too.
  int64_t capacityRanks =
      partitionsForMachine()
          ? plan->best.config.ep * plan->best.config.microbatches
          : 1;
  llvm::json::Array capacityJSON;
  std::string capacityText;
  if (capacityFactor > 0.0) {
    llvm::Expected<std::vector<std::vector<double>>> shares =
        moe::plan::expertShares(*load, extracted->model);
    if (!shares)
      return report(shares.takeError());
    const moe::plan::ModelDescription &model = extracted->model;
    size_t moeLayer = 0;
    for (const moe::plan::LayerDescription &layer : model.layers) {
      if (!layer.isMoE())
        continue;
      int64_t rankTokens = model.tokensPerStep() / capacityRanks;
      double pairs = static_cast<double>(model.tokensPerStep() * layer.topK);
      double rankPairs = static_cast<double>(rankTokens * layer.topK);
      int64_t capacity = moe::expertCapacity(capacityFactor, rankTokens,
                                             layer.topK, layer.numExperts);
      // Each expert at its mean load under the model, at most one pair per
      // token. Routing varies from step to step around that mean, and every
      // step above capacity drops more, so this is a lower bound.
      double dropped = 0;
      for (double share : (*shares)[moeLayer])
        dropped += capacityRanks *
                   std::max(0.0, std::min(share * rankPairs,
                                          static_cast<double>(rankTokens)) -
                                     capacity);
      std::string perRank =
          capacityRanks > 1
              ? llvm::formatv(" on each of {0} expert-parallel ranks",
                              plan->best.config.ep)
                    .str()
              : "";
      if (capacityRanks > 1 && plan->best.config.microbatches > 1)
        perRank += llvm::formatv(" and {0} micro-batches",
                                 plan->best.config.microbatches)
                       .str();
      capacityText += llvm::formatv(
          "capacity mode, MoE layer {0}: capacity {1} pairs per expert{6}; "
          "at mean load under {5}, {2:F1} of {3:F0} pairs ({4:F2} %) are "
          "dropped (a lower bound: step-to-step variation drops more)\n",
          moeLayer, capacity, dropped, pairs, 100.0 * dropped / pairs,
          load->describe(), perRank);
      capacityJSON.push_back(
          llvm::json::Object{{"moe_layer", static_cast<int64_t>(moeLayer)},
                             {"capacity", capacity},
                             {"pairs", pairs},
                             {"mean_load_dropped_pairs", dropped}});
      ++moeLayer;
    }
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  if (StringRef(reportFile).ends_with(".json")) {
    llvm::json::Value json = moe::plan::planReportToJSON(*plan);
    if (capacityFactor > 0.0)
      json.getAsObject()->try_emplace(
          "capacity_mode",
          llvm::json::Object{
              {"capacity_factor", static_cast<double>(capacityFactor)},
              {"layers", std::move(capacityJSON)}});
    os << llvm::formatv("{0:2}", json) << "\n";
  } else {
    for (const std::string &note : extracted->notes)
      os << "note: " << note << "\n";
    os << capacityText;
    os << moe::plan::formatPlanReport(*plan);
  }
  if (reportFile.empty()) {
    llvm::outs() << text;
    return success();
  }
  std::string error;
  auto file = openOutputFile(reportFile, &error);
  if (!file) {
    llvm::errs() << "moe-compile: " << error << "\n";
    return failure();
  }
  file->os() << text;
  file->keep();
  llvm::errs() << "moe-compile: wrote the plan report to " << reportFile
               << "\n";
  return success();
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  // --help lists moe-compile's own options and the MLIR debugging flags
  // worth knowing, not the hundreds of LLVM backend options linked in
  // (they are still accepted).
  llvm::cl::HideUnrelatedOptions(category);
  for (const char *name :
       {"mlir-print-ir-after-all", "mlir-print-ir-before-all",
        "mlir-print-ir-after-failure", "mlir-print-debuginfo",
        "mlir-elide-elementsattrs-if-larger", "mlir-timing",
        "mlir-pass-statistics", "mlir-disable-threading"})
    if (llvm::cl::Option *option =
            llvm::cl::getRegisteredOptions().lookup(name))
      option->setHiddenFlag(llvm::cl::NotHidden);
  llvm::cl::ParseCommandLineOptions(
      argc, argv,
      "moe-compile: compile an ONNX Mixture-of-Experts model for moe-run\n\n"
      "  moe-compile model.onnx -o model.moe\n"
      "  moe-compile model.onnx --dim-params=batch=1,seq=128 -o model.moe\n"
      "  moe-compile model.onnx --emit=mlir --mlir-print-ir-after-all\n"
      "  moe-compile model.onnx --dim-params=tokens=4096 --target=cuda\n"
      "  moe-compile model.onnx --dim-params=tokens=4096 --machine=8xH200\n"
      "      --expert-load=zipf:1.0 --report=plan.json\n\n"
      "The program refers to the model's weight bytes; keep the .onnx file\n"
      "(and its external data) where it is, or recompile after moving it.\n");

  moe::ONNXImportOptions options;
  std::string error = importFlags.apply(options);
  if (!error.empty()) {
    llvm::errs() << "moe-compile: " << error << "\n";
    return 1;
  }
  std::string output = outputFile;
  if (output.empty()) {
    llvm::SmallString<256> path(inputFile);
    llvm::sys::path::replace_extension(path,
                                       emit == Emit::MLIR ? "mlir" : "moe");
    output = path.str().str();
  }

  DialectRegistry registry;
  moe::registerONNXImportDialects(registry);
  if (target == Target::CUDA)
    moe::registerGpuKernelDialects(registry);
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);

  llvm::errs() << "moe-compile: importing " << inputFile << "\n";
  OwningOpRef<ModuleOp> module =
      moe::importONNXFile(inputFile, context, options);
  if (!module)
    return 1;
  if (capacityFactor < 0.0 || !std::isfinite(capacityFactor)) {
    llvm::errs() << "moe-compile: --capacity-factor=" << capacityFactor
                 << " must be a positive finite number (leave it out for "
                    "dropless routing)\n";
    return 1;
  }
  // Plan and set capacities on the raised layers, before the lowering
  // decomposes them.
  auto raiseLayers = [&](ModuleOp raised) {
    PassManager raise(&context);
    raise.addPass(moe::createRaiseLayersPass());
    if (failed(raise.run(raised)))
      return failure();
    if (capacityFactor > 0.0)
      raised->walk([&](moe::LayerOp layer) {
        layer.setCapacityFactorAttr(
            FloatAttr::get(Float64Type::get(&context), capacityFactor));
      });
    return success();
  };
  if ((!machine.empty() || capacityFactor > 0.0) &&
      failed(raiseLayers(*module)))
    return 1;
  int64_t microbatches = 1, replicas = 1;
  if (!machine.empty()) {
    llvm::errs() << "moe-compile: planning for " << machine << "\n";
    if (failed(planModule(*module)))
      return 1;
    if (partitionsForMachine()) {
      auto plan = (*module)->getAttrOfType<StringAttr>("moe.plan");
      llvm::Expected<moe::plan::PlanConstraints> parsed =
          moe::plan::parsePlanString(plan.getValue());
      if (!parsed) {
        llvm::errs() << "moe-compile: " << toString(parsed.takeError()) << "\n";
        return 1;
      }
      microbatches = parsed->microbatches.value_or(1);
      replicas = parsed->dp.value_or(1);
    }
    if (microbatches * replicas > 1) {
      // The program computes one micro-batch of one replica: import again
      // with the first input's first (batch) dimension divided, and carry
      // the plan over (the partitioner takes the replicas' inputs apart).
      OwningOpRef<ModuleOp> micro =
          importMicrobatch(*module, context, options, microbatches * replicas);
      if (!micro || failed(raiseLayers(*micro)))
        return 1;
      (*micro)->setAttr("moe.plan", (*module)->getAttr("moe.plan"));
      SmallVector<moe::LayerOp> planned, fresh;
      module->walk([&](moe::LayerOp layer) { planned.push_back(layer); });
      micro->walk([&](moe::LayerOp layer) { fresh.push_back(layer); });
      if (planned.size() != fresh.size()) {
        llvm::errs() << "moe-compile: the micro-batch import has "
                     << fresh.size() << " MoE layers, the model "
                     << planned.size() << "\n";
        return 1;
      }
      for (auto [from, to] : llvm::zip_equal(planned, fresh))
        if (Attribute ranks = from->getAttr("moe.expert_ranks"))
          to->setAttr("moe.expert_ranks", ranks);
      module = std::move(micro);
      if (microbatches > 1)
        llvm::errs() << "moe-compile: compiling one of " << microbatches
                     << " micro-batches\n";
    }
  } else if (planChoice != "auto" || !reportFile.empty()) {
    llvm::errs() << "moe-compile: --plan and --report need --machine\n";
    return 1;
  }
  PassManager pm(&context);
  if (failed(applyPassManagerCLOptions(pm)))
    return 1;
  if (!machine.empty() && partitionsForMachine())
    pm.addPass(moe::createPartitionPass(
        moe::PartitionPassOptions{/*plan=*/"", singleDeviceGrid}));
  moe::buildLowerToRuntimePipeline(pm);
  llvm::errs() << "moe-compile: lowering for target "
               << (target == Target::CUDA ? "cuda" : "cpu") << "\n";
  if (failed(pm.run(*module)))
    return 1;
  auto functions = module->getOps<func::FuncOp>();
  if (std::distance(functions.begin(), functions.end()) != 1) {
    llvm::errs() << "moe-compile: expected one function after import\n";
    return 1;
  }
  func::FuncOp function = *functions.begin();
  if (target == Target::CUDA) {
    moe::GpuKernelOptions kernelOptions;
    kernelOptions.chip = cudaPtxChip;
    kernelOptions.cudaPath = cudaToolkit();
    llvm::errs() << "moe-compile: generating GPU kernels: PTX for "
                 << cudaPtxChip << " and later"
                 << (cudaChip == "none" ? std::string()
                                        : ", cubin for " + cudaChip)
                 << "\n";
    moe::GpuKernelStats stats;
    if (failed(
            moe::generateGpuKernels(*module, function, kernelOptions, stats)))
      return 1;
    llvm::errs() << "moe-compile: " << stats.opsReplaced << " ops in "
                 << stats.groups << " launches of " << stats.kernels
                 << " kernels (" << stats.compiled
                 << " distinct groups compiled";
    if (stats.leftAlone)
      llvm::errs() << ", " << stats.leftAlone << " left to the runtime";
    llvm::errs() << ")\n";
  }

  std::string text;
  llvm::raw_string_ostream os(text);
  if (emit == Emit::MLIR) {
    module->print(os);
    os << "\n";
  } else {
    llvm::SmallString<256> modelDir(inputFile), outputDir(output);
    llvm::sys::path::remove_filename(modelDir);
    llvm::sys::path::remove_filename(outputDir);
    std::string weightsDir =
        moe::relativeDirectory(outputDir.empty() ? "." : outputDir.str(),
                               modelDir.empty() ? "." : modelDir.str());
    moe::rt::Program program;
    if (failed(moe::exportProgram(function, weightsDir, program)))
      return 1;
    // The generated kernels, which moe.launch ops name by module: their
    // portable PTX and their cubin.
    for (auto binary : module->getOps<gpu::BinaryOp>()) {
      auto object = dyn_cast<gpu::ObjectAttr>(binary.getObjects()[0]);
      if (!object || object.getFormat() != gpu::CompilationTarget::Assembly) {
        binary.emitError() << "holds no PTX";
        return 1;
      }
      moe::rt::GpuModuleDecl decl{binary.getSymName().str(),
                                  object.getObject().getValue().str(), "", ""};
      if (cudaChip != "none") {
        llvm::Expected<std::string> cubin =
            moe::assembleCubin(decl.ptx, cudaChip, cudaToolkit());
        if (!cubin) {
          binary.emitError() << llvm::toString(cubin.takeError());
          return 1;
        }
        decl.cubinChip = cudaChip;
        decl.cubin = std::move(*cubin);
      }
      program.gpuModules.push_back(std::move(decl));
    }
    program.microbatches = microbatches;
    os << moe::rt::printProgram(program);
    llvm::errs() << "moe-compile: " << program.operations.size()
                 << " operations, " << program.weights.size() << " weights\n";
  }
  // The output appears only when everything succeeded.
  auto file = openOutputFile(output, &error);
  if (!file) {
    llvm::errs() << "moe-compile: " << error << "\n";
    return 1;
  }
  file->os() << text;
  file->keep();
  llvm::errs() << "moe-compile: wrote " << output << "\n";
  return 0;
}
