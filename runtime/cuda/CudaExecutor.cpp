//===- CudaExecutor.cpp - running a program on one GPU --------------------===//
//
// Part of moe-compiler's runtime (CUDA backend).
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaExecutor.h"

#include "moe/Runtime/CudaExpertGemm.h"
#include "moe/Runtime/CudaPermute.h"
#include "moe/Runtime/Executor.h"
#include "moe/Runtime/KernelLaunch.h"
#include "moe/Runtime/MemoryPlan.h"
#include "moe/Runtime/StagedCommunicator.h"

#include "../lib/KernelSupport.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <optional>

namespace moe::rt::cuda {

namespace {

std::string cudaText(cudaError_t error) { return cudaGetErrorString(error); }

/// An error about operation `op`, named by its program line.
Status operationError(const Operation &op, const std::string &message) {
  return Status::error("line " + std::to_string(op.line) + " (" + op.op +
                       "): " + message);
}

/// The collectives, which move device memory through the rank's
/// communicator (NCCL or staged).
bool isCollective(const std::string &op) {
  return op == "all_slice" || op == "all_gather" || op == "all_reduce" ||
         op == "ragged_all_to_all" || op == "transpose_chunks" ||
         op == "stage_transfer";
}

/// Collectives that talk to other ranks (all_slice and transpose_chunks
/// only reorder local memory).
bool communicates(const std::string &op) {
  return isCollective(op) && op != "all_slice" && op != "transpose_chunks";
}

bool isIndexType(DType dtype) {
  return dtype == DType::I64 || dtype == DType::I32;
}

/// Operations that compute small integer tensors (the counts of expert
/// parallelism: sums, reshapes and slices of the dispatch's counts) run on
/// the host through the CPU kernels, next to the code that reads them to
/// size copies and GEMMs.
bool runsOnHost(const Operation &op) {
  if (op.results.empty() || isCollective(op.op) || op.op == "dispatch" ||
      op.op == "reshape" || !findKernel(op.op))
    return false;
  for (const ValueType &type : op.resultTypes)
    if (!isIndexType(type.dtype))
      return false;
  return true;
}

/// The workspace given to each cuBLAS handle of the executor.
constexpr size_t blasWorkspaceBytes = 32 << 20;

/// Host-to-device and device-to-host copies, for the staged communicator.
StagingCopies cudaStagingCopies() {
  StagingCopies copies;
  copies.toHost = [](void *host, const void *buffer, size_t bytes) {
    if (cudaError_t error =
            cudaMemcpy(host, buffer, bytes, cudaMemcpyDeviceToHost);
        error != cudaSuccess)
      return Status::error(cudaText(error));
    return Status::success();
  };
  copies.fromHost = [](void *buffer, const void *host, size_t bytes) {
    if (cudaError_t error =
            cudaMemcpy(buffer, host, bytes, cudaMemcpyHostToDevice);
        error != cudaSuccess)
      return Status::error(cudaText(error));
    return Status::success();
  };
  return copies;
}

} // namespace

int deviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess)
    return 0;
  return count;
}

std::unique_ptr<Communicator> stagedDeviceCommunicator(Communicator &host) {
  return createStagedCommunicator(host, cudaStagingCopies());
}

struct CudaExecutor::State {
  Program program;
  int deviceIndex = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  std::unique_ptr<ExpertGemm> expertGemm = std::make_unique<ExpertGemm>();
  /// Device pointer of each value; static values and inputs own theirs,
  /// intermediate values point into the arena.
  std::vector<void *> device;
  /// Each value's type (inputs, weights, constants and results alike).
  std::vector<ValueType> types;
  std::vector<bool> isStatic;
  std::vector<void *> owned;
  void *arena = nullptr;
  int64_t arenaBytes = 0, weightBytes = 0;
  /// The PTX modules, through the runtime's library API (CUDA 12 and
  /// later) rather than the driver API, so that moe-run needs no driver
  /// library on machines without a GPU.
  std::map<std::string, cudaLibrary_t> modules;
  /// How many of them came from their cubin (the rest from PTX).
  int modulesFromCubin = 0;
  /// Per operation: its launches with their functions (launch ops), its
  /// scratch buffers' arena offsets, and expert_ffn buffers.
  std::vector<std::vector<std::pair<KernelLaunch, cudaKernel_t>>> launches;
  std::vector<std::vector<void *>> scratch;
  /// The device groups of the collectives (KernelContext::groups, for the
  /// CPU kernels of all_slice at load too), split from the world
  /// communicator; a one-device grid run without one gets a staged
  /// one-rank group.
  KernelContext context;
  std::vector<std::unique_ptr<Communicator>> groups;
  std::unique_ptr<Communicator> ownedWorld;
  /// Per operation: whether this rank runs it (its pipeline stage's).
  std::vector<bool> runsHere;
  /// Host copies of integer values during a run: the dispatch order,
  /// counts computed on the host, received counts, and values downloaded
  /// because the host needed them. Cleared when a run starts.
  std::map<int, Tensor> hostValues;
  /// Host copies of the static integer values, kept from the load.
  std::map<int, Tensor> staticHostValues;
  CudaOptions options;
  /// Per operation: an FFN whose GEMMs run in bf16 or fp16 (CudaOptions),
  /// and the 16-bit copies of its weights, by value.
  std::vector<bool> lowPrecision;
  std::map<int, void *> lowPrecisionWeights;
  /// Per combine op: the device array of each pair's row.
  std::map<size_t, int64_t *> rowOfPair;
  /// Per expert_ffn op: its experts' row offsets, on the host and the
  /// device (the bias kernel's).
  std::map<size_t, std::vector<int64_t>> hostOffsets;
  std::map<size_t, int64_t *> expertOffsets;
  /// Host copies of the static values, while they are computed at load.
  std::vector<Tensor> host;
  /// cuBLAS's workspace, given to it so that it allocates nothing while a
  /// CUDA graph is captured.
  void *blasWorkspace = nullptr;

  ~State();
  Status allocate(size_t bytes, void *&pointer) {
    if (cudaError_t error = cudaMalloc(&pointer, std::max<size_t>(bytes, 1));
        error != cudaSuccess)
      return Status::error("cudaMalloc of " + std::to_string(bytes) +
                           " bytes: " + cudaText(error));
    owned.push_back(pointer);
    return Status::success();
  }
  Status prepare(size_t index);
  Status runOperation(size_t index);
  Status runLaunch(size_t index);
  Status runMatmul(const Operation &op);
  Status runDispatch(const Operation &op);
  Status runFeedForward(size_t index);
  Status runStaticOnHost(size_t index);
  Status runCombine(size_t index);
  Status runOnHost(size_t index);
  /// Operations [first, last] that need no host while they run (launches,
  /// copies, f32 GEMMs and dense FFNs), replayed as one CUDA graph
  /// (CudaOptions::graphs). Captured on the first run; a capture that
  /// fails leaves the stretch to run op by op from then on.
  struct Segment {
    size_t first, last;
    cudaGraphExec_t graph = nullptr;
    bool failed = false;
  };
  std::vector<Segment> segments;
  void planSegments();
  /// Per operation: static, or another pipeline stage's (not run by
  /// CudaExecutor::run).
  std::vector<bool> skippedOperations() const;
  /// CudaOptions::overlap: per operation, the collective it moves to
  /// (overlapPlan) or -1, and per such collective what moves to it, in
  /// order. The second stream has a cuBLAS handle and grouped GEMM of its
  /// own: a workspace or pointer array cannot serve two streams at once.
  /// Events fork it from the first stream at each collective and join
  /// each moved operation back where it stood.
  std::vector<int> movedTo;
  std::map<size_t, std::vector<size_t>> movedAt;
  struct Lane {
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    std::unique_ptr<ExpertGemm> expertGemm;
  };
  Lane side;
  std::map<size_t, cudaEvent_t> forks, joins;
  Status createSideLane();
  /// Makes the second stream's lane the one operations enqueue on, or
  /// back.
  void swapLanes() {
    std::swap(stream, side.stream);
    std::swap(blas, side.blas);
    std::swap(expertGemm, side.expertGemm);
  }
  /// Enqueues what moves to collective `index` on the second stream,
  /// after what the first stream holds.
  Status runMoved(size_t index);
  Status runSegment(Segment &segment, const std::function<bool(size_t)> &runs);
  Status runCollective(size_t index);
  Status findGroup(const Operation &op, Communicator *&group);
  /// The host copy of value `id` (downloaded when the host does not have
  /// it, which waits for the stream).
  Status hostValue(int id, const Tensor *&tensor);
  Status hostIndices(int id, std::vector<int64_t> &indices);
  /// Makes `tensor` the host copy of result `id` and uploads it.
  Status setHostResult(int id, Tensor tensor);
};

namespace {

/// Each value's type: inputs, weights, constants and results alike.
std::vector<ValueType> valueTypes(const Program &program) {
  std::vector<ValueType> types(program.numValues);
  for (const InputDecl &input : program.inputs)
    types[input.id] = input.type;
  for (const WeightDecl &weight : program.weights)
    types[weight.id] = weight.type;
  for (const ConstDecl &constant : program.constants)
    types[constant.id] = constant.type;
  for (const Operation &op : program.operations)
    for (size_t r = 0; r < op.results.size(); ++r)
      types[op.results[r]] = op.resultTypes[r];
  return types;
}

/// Which values depend on constants and weights alone.
std::vector<bool> staticValues(const Program &program) {
  std::vector<bool> isStatic(program.numValues, false);
  for (const ConstDecl &constant : program.constants)
    isStatic[constant.id] = true;
  for (const WeightDecl &weight : program.weights)
    isStatic[weight.id] = true;
  for (const Operation &op : program.operations) {
    bool allStatic = !op.operands.empty();
    for (int operand : op.operands)
      allStatic = allStatic && (operand < 0 || isStatic[operand]);
    for (int result : op.results)
      isStatic[result] = allStatic;
  }
  return isStatic;
}

} // namespace

Status checkCudaSupport(const Program &program) {
  std::vector<ValueType> types = valueTypes(program);
  std::vector<bool> isStatic = staticValues(program);
  for (const Operation &op : program.operations) {
    // What depends on weights alone runs once at load, through the CPU
    // kernels where it is not a launch (weight dequantisation, layout
    // changes).
    if (!op.results.empty() && isStatic[op.results.front()] &&
        (op.op == "launch" || findKernel(op.op)))
      continue;
    auto refuse = [&](const std::string &why) {
      return operationError(op, why);
    };
    auto dtypeOf = [&](size_t operand) {
      return types[op.operands[operand]].dtype;
    };
    if (op.op == "launch" || op.op == "reshape" || op.op == "combine" ||
        runsOnHost(op))
      continue;
    if (isCollective(op.op)) {
      if (op.op == "all_reduce") {
        DType dtype = dtypeOf(0);
        if (dtype != DType::F32 && dtype != DType::I64)
          return refuse("all_reduce of " + std::string(dtypeName(dtype)) +
                        " is not supported (f32 and i64 are)");
        std::string reduction = op.attrs.getString("reduction", "sum");
        if (reduction != "sum" && reduction != "max" && reduction != "min")
          return refuse("reduction '" + reduction +
                        "' is not supported (sum, max, min are)");
      }
      continue;
    }
    if (op.op == "matmul") {
      const Shape &lhs = types[op.operands[0]].shape;
      const Shape &rhs = types[op.operands[1]].shape;
      if (dtypeOf(0) != DType::F32 || dtypeOf(1) != DType::F32)
        return refuse("only f32 matmul runs on the CUDA backend yet");
      if (lhs.size() < 2 || rhs.size() < 2)
        return refuse("operands of rank 1 are not supported by the CUDA "
                      "backend yet");
      if (rhs.size() > 2 && Shape(lhs.begin(), lhs.end() - 2) !=
                                Shape(rhs.begin(), rhs.end() - 2))
        return refuse("batched matmul with broadcast leading dimensions is "
                      "not supported by the CUDA backend yet");
      continue;
    }
    if (op.op == "dispatch") {
      if (dtypeOf(0) != DType::F32)
        return refuse("only f32 tokens are dispatched on the CUDA backend "
                      "yet");
      if (dtypeOf(1) != DType::I64 && dtypeOf(1) != DType::I32)
        return refuse("the selected experts must be i64 or i32");
      if (op.resultTypes[1].dtype != DType::I64 ||
          op.resultTypes[2].dtype != DType::I64)
        return refuse("only i64 counts and sources are supported by the "
                      "CUDA backend yet");
      continue;
    }
    if (op.op == "expert_ffn" || op.op == "ffn") {
      // expert_ffn: rows, counts, gate, ...; ffn: input, gate, ...
      bool expert = op.op == "expert_ffn";
      for (size_t i = 0; i < op.operands.size(); ++i)
        if (!(expert && i == 1) && op.operands[i] >= 0 &&
            dtypeOf(i) != DType::F32)
          return refuse("only f32 feed-forward weights and activations run "
                        "on the CUDA backend yet");
      bool gated = op.operands[expert ? 2 : 1] >= 0;
      std::string activation = op.attrs.getString("activation");
      if (gated != (activation == "swiglu"))
        return refuse("activation '" + activation +
                      (gated ? "' with" : "' without") +
                      " a gate weight is not supported by the CUDA backend "
                      "yet");
      continue;
    }
    return refuse("has no CUDA implementation: the CUDA backend runs "
                  "generated kernels (launch), reshape, matmul, dispatch, "
                  "expert_ffn, ffn, combine, the collectives and integer "
                  "index arithmetic (on the host); the compiler leaves this "
                  "op when it cannot generate its kernel");
  }
  return Status::success();
}

CudaExecutor::State::~State() {
  if (stream)
    cudaStreamSynchronize(stream);
  if (side.stream)
    cudaStreamSynchronize(side.stream);
  for (auto *events : {&forks, &joins})
    for (auto &[index, event] : *events)
      cudaEventDestroy(event);
  side.expertGemm.reset();
  if (side.blas)
    cublasDestroy(side.blas);
  if (side.stream)
    cudaStreamDestroy(side.stream);
  for (Segment &segment : segments)
    if (segment.graph)
      cudaGraphExecDestroy(segment.graph);
  // The cuBLAS handles go before the stream they are bound to and the
  // workspace they were given.
  expertGemm.reset();
  if (blas)
    cublasDestroy(blas);
  blas = nullptr;
  for (void *pointer : owned)
    cudaFree(pointer);
  if (arena)
    cudaFree(arena);
  for (auto &[name, module] : modules)
    cudaLibraryUnload(module);
  if (stream)
    cudaStreamDestroy(stream);
}

CudaExecutor::~CudaExecutor() = default;

const Program &CudaExecutor::program() const { return state_->program; }
int64_t CudaExecutor::weightBytes() const { return state_->weightBytes; }
int64_t CudaExecutor::arenaBytes() const { return state_->arenaBytes; }
int CudaExecutor::modulesFromCubin() const { return state_->modulesFromCubin; }

int CudaExecutor::graphs() const {
  int count = 0;
  for (const State::Segment &segment : state_->segments)
    count += segment.graph != nullptr;
  return count;
}

int CudaExecutor::overlapped() const {
  int count = 0;
  for (const auto &[collective, moved] : state_->movedAt)
    count += static_cast<int>(moved.size());
  return count;
}

std::string CudaExecutor::deviceName() const {
  cudaDeviceProp properties;
  if (cudaGetDeviceProperties(&properties, state_->deviceIndex) != cudaSuccess)
    return "CUDA device " + std::to_string(state_->deviceIndex);
  return properties.name;
}

Status CudaExecutor::create(Program program,
                            const std::string &programDirectory, int device,
                            std::unique_ptr<CudaExecutor> &executor,
                            Communicator *world, const CudaOptions &options) {
  executor.reset(new CudaExecutor());
  executor->state_ = std::make_unique<State>();
  State &s = *executor->state_;
  s.program = std::move(program);
  s.deviceIndex = device;
  s.options = options;
  if (options.feedForwardType != DType::F32 &&
      options.feedForwardType != DType::BF16 &&
      options.feedForwardType != DType::F16)
    return Status::error(std::string("feed-forward GEMMs in ") +
                         dtypeName(options.feedForwardType) +
                         " are not supported (f32, bf16 and f16 are)");
  const Program &p = s.program;
  // What the backend cannot run is named first: that needs no GPU.
  if (Status status = checkCudaSupport(p); !status)
    return status;
  if (std::string why; !deviceAvailable(why))
    return Status::error("the program was compiled with --target cuda and "
                         "needs a GPU: " +
                         why);
  if (cudaError_t error = cudaSetDevice(device); error != cudaSuccess)
    return Status::error("cannot use CUDA device " + std::to_string(device) +
                         ": " + cudaText(error));
  if (cudaError_t error = cudaStreamCreate(&s.stream); error != cudaSuccess)
    return Status::error("cudaStreamCreate: " + cudaText(error));
  if (cublasCreate(&s.blas) != CUBLAS_STATUS_SUCCESS ||
      cublasSetStream(s.blas, s.stream) != CUBLAS_STATUS_SUCCESS)
    return Status::error("cannot create a cuBLAS handle");
  if (Status status = s.allocate(blasWorkspaceBytes, s.blasWorkspace); !status)
    return status;
  if (cublasSetWorkspace(s.blas, s.blasWorkspace, blasWorkspaceBytes) !=
      CUBLAS_STATUS_SUCCESS)
    return Status::error("cannot give cuBLAS its workspace");
  if (Status status = s.expertGemm->init(s.stream); !status)
    return status;

  // The collectives' device groups (collective over `world`), and the
  // operations of this rank's pipeline stage.
  if (!p.grids.empty() && !world) {
    std::vector<std::unique_ptr<Communicator>> one;
    if (Status status = createThreadGroup(1, CommunicatorOptions(), one);
        !status)
      return status;
    s.groups.push_back(std::move(one[0]));
    s.ownedWorld = stagedDeviceCommunicator(*s.groups.back());
    world = s.ownedWorld.get();
  }
  if (Status status = createDeviceGroups(p, world, s.context.groups, s.groups);
      !status)
    return status;
  s.isStatic = staticValues(p);
  if (Status status = selectStageOperations(
          p, s.isStatic, world ? world->rank() : 0, s.runsHere);
      !status)
    return status;
  s.movedTo.assign(p.operations.size(), -1);
  if (options.overlap) {
    s.movedTo = overlapPlan(p, s.skippedOperations());
    for (size_t i = 0; i < s.movedTo.size(); ++i)
      if (s.movedTo[i] >= 0)
        s.movedAt[s.movedTo[i]].push_back(i);
    if (!s.movedAt.empty())
      if (Status status = s.createSideLane(); !status)
        return status;
  }

  // The kernels: the cubin where it was assembled for this GPU, else the
  // portable PTX, which the driver compiles for it.
  for (const GpuModuleDecl &module : p.gpuModules) {
    cudaLibrary_t loaded;
    if (!module.cubin.empty() &&
        cudaLibraryLoadData(&loaded, module.cubin.data(), nullptr, nullptr, 0,
                            nullptr, nullptr, 0) == cudaSuccess) {
      s.modules[module.name] = loaded;
      ++s.modulesFromCubin;
      continue;
    }
    cudaGetLastError(); // A cubin for another GPU is not an error.
    if (cudaError_t error =
            cudaLibraryLoadData(&loaded, module.ptx.c_str(), nullptr, nullptr,
                                0, nullptr, nullptr, 0);
        error != cudaSuccess)
      return Status::error("gpu-module '" + module.name +
                           "': CUDA cannot load its PTX: " + cudaText(error));
    s.modules[module.name] = loaded;
  }

  // Constants and weights, uploaded once.
  std::vector<Tensor> &host = s.host;
  host.resize(p.numValues);
  if (Status status = loadStaticValues(p, programDirectory, host); !status)
    return status;
  s.device.assign(p.numValues, nullptr);
  s.types = valueTypes(p);
  auto upload = [&](int id) -> Status {
    const Tensor &tensor = host[id];
    if (Status status = s.allocate(tensor.sizeInBytes(), s.device[id]); !status)
      return status;
    if (cudaError_t error =
            cudaMemcpy(s.device[id], tensor.data(), tensor.sizeInBytes(),
                       cudaMemcpyHostToDevice);
        error != cudaSuccess)
      return Status::error("uploading value " + std::to_string(id) + ": " +
                           cudaText(error));
    return Status::success();
  };
  // Only what the operations of this rank read goes to the device: static
  // values read at run time stay, those read only by the static
  // operations (a weight before its slice) go once the load is done.
  // FFNs on weights alone run their GEMMs in bf16 or fp16 when asked: they
  // read 16-bit copies of those weights, made at the end of the load.
  s.lowPrecision.assign(p.operations.size(), false);
  auto weightOperands = [](const Operation &op) {
    int shift = op.op == "expert_ffn" ? 1 : 0;
    return std::vector<int>{op.operands[1 + shift], op.operands[2 + shift],
                            op.operands[3 + shift]};
  };
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    if (s.options.feedForwardType == DType::F32 || !s.runsHere[i] ||
        (op.op != "expert_ffn" && op.op != "ffn") ||
        s.isStatic[op.results.front()])
      continue;
    bool staticWeights = true;
    for (int id : weightOperands(op))
      staticWeights = staticWeights && (id < 0 || s.isStatic[id]);
    s.lowPrecision[i] = staticWeights;
  }
  std::vector<bool> readAtLoad(p.numValues, false),
      readAtRun(p.numValues, false);
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    if (!s.runsHere[i])
      continue;
    bool atLoad = !op.results.empty() && s.isStatic[op.results.front()];
    std::vector<int> converted =
        s.lowPrecision[i] ? weightOperands(op) : std::vector<int>();
    // The weights of a 16-bit FFN are converted from their host copies.
    for (int operand : op.operands)
      if (operand >= 0 && std::find(converted.begin(), converted.end(),
                                    operand) == converted.end())
        (atLoad ? readAtLoad : readAtRun)[operand] = true;
  }
  for (const OutputDecl &output : p.outputs)
    readAtRun[output.id] = true;
  for (const ConstDecl &constant : p.constants)
    if (readAtLoad[constant.id] || readAtRun[constant.id])
      if (Status status = upload(constant.id); !status)
        return status;
  for (const WeightDecl &weight : p.weights)
    if (readAtLoad[weight.id] || readAtRun[weight.id])
      if (Status status = upload(weight.id); !status)
        return status;
  for (const InputDecl &input : p.inputs)
    if (Status status = s.allocate(numElements(input.type.shape) *
                                       dtypeSize(input.type.dtype),
                                   s.device[input.id]);
        !status)
      return status;

  // Static operations (on weights and constants alone) get buffers of
  // their own and run once below; the others share the arena.
  size_t count = p.operations.size();
  s.launches.resize(count);
  s.scratch.resize(count);
  std::vector<bool> isOutput(p.numValues, false);
  for (const OutputDecl &output : p.outputs)
    isOutput[output.id] = true;
  std::vector<BufferLifetime> buffers;
  std::vector<std::pair<int, int>> owners; // value id, or -1 - scratch slot
  std::vector<int64_t> first(p.numValues, -1), last(p.numValues, -1);
  // An operation that overlap moves runs from its collective on, while the
  // first stream goes on to its old position, where it is joined: its
  // results and scratch live from the collective, its operands until then.
  auto startOf = [&](size_t i) {
    return static_cast<int64_t>(s.movedTo[i] >= 0 ? s.movedTo[i] : i);
  };
  for (size_t i = 0; i < count; ++i) {
    const Operation &op = p.operations[i];
    if (!s.runsHere[i])
      continue;
    if (Status status = s.prepare(i); !status)
      return status;
    for (int operand : op.operands)
      if (operand >= 0)
        last[operand] = static_cast<int64_t>(i);
    for (size_t r = 0; r < op.results.size(); ++r) {
      int id = op.results[r];
      int64_t bytes = numElements(op.resultTypes[r].shape) *
                      dtypeSize(op.resultTypes[r].dtype);
      first[id] = startOf(i);
      last[id] = static_cast<int64_t>(i);
      if (s.isStatic[id] || isOutput[id]) {
        if (Status status = s.allocate(bytes, s.device[id]); !status)
          return status;
      }
    }
  }
  // Operands and results of one operation never share: their lifetimes
  // both include it.
  for (int id = 0; id < p.numValues; ++id)
    if (first[id] >= 0 && !s.device[id]) {
      buffers.push_back({static_cast<int64_t>(numElements(s.types[id].shape) *
                                              dtypeSize(s.types[id].dtype)),
                         first[id], last[id]});
      owners.push_back({id, -1});
    }
  // Scratch buffers live during their operation only: a launch's, an
  // FFN's intermediate rows (the gate's products, then the up
  // projection's when gated), an all_gather's rank-major pieces. Static
  // operations' too: they run at load, while the arena holds nothing else.
  for (size_t i = 0; i < count; ++i) {
    const Operation &op = p.operations[i];
    if (op.results.empty() || !s.runsHere[i])
      continue;
    std::vector<int64_t> sizes;
    if (op.op == "launch") {
      if (const std::vector<int64_t> *declared = op.attrs.getArray("scratch"))
        sizes = *declared;
    } else if (op.op == "expert_ffn" || op.op == "ffn") {
      bool expert = op.op == "expert_ffn";
      const ValueType &input = s.types[op.operands[0]];
      int64_t rows = numElements(input.shape) / input.shape.back();
      int64_t ffn = s.types[op.operands[expert ? 3 : 2]].shape.back();
      bool gated = op.operands[expert ? 2 : 1] >= 0;
      if (s.lowPrecision[i]) {
        // 16-bit gate and up products, input rows and output rows.
        int64_t half = 2;
        sizes = {rows * ffn * half, gated ? rows * ffn * half : 0,
                 rows * input.shape.back() * half,
                 rows * input.shape.back() * half};
      } else {
        sizes.assign(gated ? 2 : 1, rows * ffn * int64_t(sizeof(float)));
      }
    } else if (op.op == "all_gather") {
      // Pieces along an inner axis are gathered rank-major first.
      const Shape &shape = s.types[op.operands[0]].shape;
      int64_t axis = op.attrs.getInt("gather_axis");
      int64_t outer = 1;
      for (int64_t d = 0; d < axis && d < static_cast<int64_t>(shape.size());
           ++d)
        outer *= shape[d];
      if (outer > 1)
        sizes.push_back(numElements(op.resultTypes[0].shape) *
                        dtypeSize(op.resultTypes[0].dtype));
    }
    for (size_t t = 0; t < sizes.size(); ++t) {
      buffers.push_back({sizes[t], startOf(i), static_cast<int64_t>(i)});
      owners.push_back({static_cast<int>(i), static_cast<int>(t)});
    }
  }
  MemoryPlan plan = planMemory(buffers, 256);
  s.arenaBytes = plan.arenaBytes;
  if (s.arenaBytes > 0) {
    if (cudaError_t error = cudaMalloc(&s.arena, s.arenaBytes);
        error != cudaSuccess)
      return Status::error("cudaMalloc of the " + std::to_string(s.arenaBytes) +
                           "-byte activation arena: " + cudaText(error));
  }
  for (size_t b = 0; b < buffers.size(); ++b) {
    void *pointer = static_cast<char *>(s.arena) + plan.offsets[b];
    auto [owner, slot] = owners[b];
    if (slot < 0) {
      s.device[owner] = pointer;
    } else {
      std::vector<void *> &slots = s.scratch[owner];
      if (slots.size() <= static_cast<size_t>(slot))
        slots.resize(slot + 1, nullptr);
      slots[slot] = pointer;
    }
  }

  // The static operations run now, once: launches and collectives that
  // communicate on the GPU (their results copied back, for static
  // operations after them), the others through the CPU kernels (their
  // results uploaded).
  for (size_t i = 0; i < count; ++i) {
    const Operation &op = p.operations[i];
    if (op.results.empty() || !s.isStatic[op.results.front()] || !s.runsHere[i])
      continue;
    bool onDevice = op.op == "launch" || communicates(op.op);
    Status status = onDevice ? s.runOperation(i) : s.runStaticOnHost(i);
    if (!status)
      return status;
    for (size_t r = 0; r < op.results.size() && onDevice; ++r) {
      int id = op.results[r];
      host[id] = Tensor(op.resultTypes[r].dtype, op.resultTypes[r].shape);
      if (cudaError_t error =
              cudaMemcpy(host[id].data(), s.device[id], host[id].sizeInBytes(),
                         cudaMemcpyDeviceToHost);
          error != cudaSuccess)
        return operationError(op, "copying a static result back: " +
                                      cudaText(error));
    }
  }
  if (cudaError_t error = cudaStreamSynchronize(s.stream); error != cudaSuccess)
    return Status::error("running the static operations: " + cudaText(error));
  // Static values no run reads leave the device.
  std::vector<void *> released;
  for (int id = 0; id < p.numValues; ++id) {
    if (!s.isStatic[id] || !s.device[id])
      continue;
    if (readAtRun[id]) {
      s.weightBytes +=
          numElements(s.types[id].shape) * dtypeSize(s.types[id].dtype);
      continue;
    }
    released.push_back(s.device[id]);
    cudaFree(s.device[id]);
    s.device[id] = nullptr;
  }
  std::sort(released.begin(), released.end());
  s.owned.erase(std::remove_if(s.owned.begin(), s.owned.end(),
                               [&](void *pointer) {
                                 return std::binary_search(
                                     released.begin(), released.end(), pointer);
                               }),
                s.owned.end());
  // The 16-bit copies of the weights of 16-bit FFNs, converted on the host
  // (after the release above, so that the f32 copies are gone first: a
  // model may fit on the GPU in 16 bits only).
  for (size_t i = 0; i < p.operations.size(); ++i) {
    if (!s.lowPrecision[i])
      continue;
    for (int id : weightOperands(p.operations[i])) {
      if (id < 0 || s.lowPrecisionWeights.count(id))
        continue;
      Tensor low(s.options.feedForwardType, host[id].shape());
      convert(host[id], low);
      void *pointer = nullptr;
      if (Status status = s.allocate(low.sizeInBytes(), pointer); !status)
        return status;
      if (cudaError_t error = cudaMemcpy(pointer, low.data(), low.sizeInBytes(),
                                         cudaMemcpyHostToDevice);
          error != cudaSuccess)
        return Status::error("uploading the 16-bit copy of value " +
                             std::to_string(id) + ": " + cudaText(error));
      s.lowPrecisionWeights[id] = pointer;
      s.weightBytes += low.sizeInBytes();
    }
  }
  // Static counts stay on the host for the operations that size work by
  // them; the rest of the host copies go.
  for (int id = 0; id < p.numValues; ++id)
    if (s.isStatic[id] && host[id].data() && isIndexType(host[id].dtype()))
      s.staticHostValues[id] = std::move(host[id]);
  host.clear();
  s.planSegments();
  // The copies above from pageable memory may still be landing when
  // cudaMemcpy returns; the second stream (non-blocking) would not wait
  // for them.
  if (cudaError_t error = cudaDeviceSynchronize(); error != cudaSuccess)
    return Status::error("finishing the load: " + cudaText(error));
  return Status::success();
}

/// Checks an operation at load and sets up what it needs.
Status CudaExecutor::State::prepare(size_t index) {
  const Operation &op = program.operations[index];
  if (op.op == "launch") {
    const std::vector<int64_t> *sizes = op.attrs.getArray("scratch");
    std::vector<KernelLaunch> parsed;
    std::string error = parseKernelLaunches(
        op.attrs.getString("launches"), op.operands.size(), op.results.size(),
        sizes ? sizes->size() : 0, parsed);
    if (!error.empty())
      return operationError(op, error);
    for (KernelLaunch &launch : parsed) {
      if (launch.module.empty()) {
        launches[index].push_back({std::move(launch), nullptr});
        continue;
      }
      auto module = modules.find(launch.module);
      if (module == modules.end())
        return operationError(op, "launches '" + launch.kernel +
                                      "' of gpu-module '" + launch.module +
                                      "', which the program lacks");
      cudaKernel_t function;
      if (cudaError_t error = cudaLibraryGetKernel(&function, module->second,
                                                   launch.kernel.c_str());
          error != cudaSuccess)
        return operationError(op, "gpu-module '" + launch.module +
                                      "' has no kernel '" + launch.kernel +
                                      "': " + cudaText(error));
      launches[index].push_back({std::move(launch), function});
    }
    return Status::success();
  }
  return Status::success();
}

/// A weight-only operation through its CPU kernel, its results uploaded.
Status CudaExecutor::State::runStaticOnHost(size_t index) {
  const Operation &op = program.operations[index];
  KernelFn kernel = findKernel(op.op);
  std::vector<const Tensor *> operands;
  for (int operand : op.operands)
    operands.push_back(operand >= 0 ? &host[operand] : nullptr);
  std::vector<Tensor *> results;
  for (size_t r = 0; r < op.results.size(); ++r) {
    host[op.results[r]] =
        Tensor(op.resultTypes[r].dtype, op.resultTypes[r].shape);
    results.push_back(&host[op.results[r]]);
  }
  // all_slice, the one collective that runs here, only reads its group's
  // rank and size.
  if (Status status = kernel(op.attrs, operands, results, context); !status)
    return operationError(op, status.message);
  for (int result : op.results)
    if (cudaError_t error =
            cudaMemcpy(device[result], host[result].data(),
                       host[result].sizeInBytes(), cudaMemcpyHostToDevice);
        error != cudaSuccess)
      return operationError(op, "uploading its result: " + cudaText(error));
  return Status::success();
}

namespace {

/// Operations that only enqueue work on their stream: no copy from or to
/// the host and no host bookkeeping (as the host copies of reshaped counts
/// are). What CUDA graphs capture and what overlap moves.
bool enqueuesOnly(const Operation &op, const std::vector<ValueType> &types) {
  if (op.op == "launch" || op.op == "matmul" || op.op == "ffn")
    return true;
  return op.op == "reshape" && !isIndexType(types[op.operands[0]].dtype);
}

} // namespace

std::vector<std::pair<size_t, size_t>>
graphStretches(const Program &program, const std::vector<bool> &skipped,
               const std::vector<bool> &uncapturable) {
  std::vector<ValueType> types = valueTypes(program);
  auto capturable = [&](size_t i) {
    return enqueuesOnly(program.operations[i], types) && !uncapturable[i];
  };
  std::vector<std::pair<size_t, size_t>> stretches;
  std::optional<std::pair<size_t, size_t>> open;
  size_t captured = 0;
  auto close = [&] {
    // A graph pays off from a few launches on.
    if (open && captured >= 2)
      stretches.push_back(*open);
    open.reset();
    captured = 0;
  };
  for (size_t i = 0; i < program.operations.size(); ++i) {
    if (skipped[i]) {
      if (open)
        open->second = i;
      continue;
    }
    if (!capturable(i)) {
      close();
      continue;
    }
    if (!open)
      open = std::pair{i, i};
    open->second = i;
    ++captured;
  }
  close();
  return stretches;
}

std::vector<int> overlapPlan(const Program &program,
                             const std::vector<bool> &skipped) {
  // A layer's exchanges: counts, rows there and back, and a gather or
  // reduce around it.
  constexpr size_t overlapWindow = 4;
  std::vector<ValueType> types = valueTypes(program);
  std::vector<int> movedTo(program.operations.size(), -1);
  // The first operation index at whose collective each value can be read:
  // after the operation that computes it, or at the collective that
  // operation moved to (the second stream runs in order). Inputs and
  // static values are there from the start.
  std::vector<int64_t> readableFrom(program.numValues, 0);
  std::vector<int> collectives; // Those that talk to other ranks, in order.
  for (size_t i = 0; i < program.operations.size(); ++i) {
    const Operation &op = program.operations[i];
    if (skipped[i])
      continue;
    int64_t ready = 0;
    for (int operand : op.operands)
      if (operand >= 0)
        ready = std::max(ready, readableFrom[operand]);
    if (enqueuesOnly(op, types)) {
      // The earliest exchange it can wait at, for the longest overlap, but
      // none before the last few: work that reads only the inputs would
      // otherwise move to the first exchange of the program and hold its
      // buffers through every layer.
      auto at = std::lower_bound(collectives.begin(), collectives.end(), ready);
      size_t window = std::min(collectives.size(), overlapWindow);
      at = std::max(at, collectives.end() - window);
      if (at != collectives.end())
        movedTo[i] = *at;
    }
    for (int result : op.results)
      readableFrom[result] =
          movedTo[i] >= 0 ? movedTo[i] : static_cast<int64_t>(i) + 1;
    if (communicates(op.op))
      collectives.push_back(static_cast<int>(i));
  }
  return movedTo;
}

std::vector<bool> CudaExecutor::State::skippedOperations() const {
  std::vector<bool> skipped(program.operations.size());
  for (size_t i = 0; i < skipped.size(); ++i) {
    const Operation &op = program.operations[i];
    skipped[i] =
        (!op.results.empty() && isStatic[op.results.front()]) || !runsHere[i];
  }
  return skipped;
}

void CudaExecutor::State::planSegments() {
  segments.clear();
  if (!options.graphs)
    return;
  std::vector<bool> uncapturable(movedTo.size());
  for (size_t i = 0; i < movedTo.size(); ++i)
    uncapturable[i] = movedTo[i] >= 0;
  for (auto [first, last] :
       graphStretches(program, skippedOperations(), uncapturable))
    segments.push_back({first, last});
}

Status CudaExecutor::State::createSideLane() {
  if (cudaError_t error =
          cudaStreamCreateWithFlags(&side.stream, cudaStreamNonBlocking);
      error != cudaSuccess)
    return Status::error("cudaStreamCreate (overlap): " + cudaText(error));
  if (cublasCreate(&side.blas) != CUBLAS_STATUS_SUCCESS ||
      cublasSetStream(side.blas, side.stream) != CUBLAS_STATUS_SUCCESS)
    return Status::error("cannot create a cuBLAS handle (overlap)");
  void *workspace = nullptr;
  if (Status status = allocate(blasWorkspaceBytes, workspace); !status)
    return status;
  if (cublasSetWorkspace(side.blas, workspace, blasWorkspaceBytes) !=
      CUBLAS_STATUS_SUCCESS)
    return Status::error("cannot give cuBLAS its workspace (overlap)");
  side.expertGemm = std::make_unique<ExpertGemm>();
  if (Status status = side.expertGemm->init(side.stream); !status)
    return status;
  auto createEvent = [](cudaEvent_t &event) -> Status {
    if (cudaError_t error =
            cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
        error != cudaSuccess)
      return Status::error("cudaEventCreate (overlap): " + cudaText(error));
    return Status::success();
  };
  for (auto &[collective, moved] : movedAt) {
    if (Status status = createEvent(forks[collective]); !status)
      return status;
    for (size_t index : moved)
      if (Status status = createEvent(joins[index]); !status)
        return status;
  }
  return Status::success();
}

Status CudaExecutor::State::runMoved(size_t index) {
  auto moved = movedAt.find(index);
  if (moved == movedAt.end())
    return Status::success();
  cudaEvent_t fork = forks.at(index);
  if (cudaError_t error = cudaEventRecord(fork, stream); error != cudaSuccess)
    return Status::error("cudaEventRecord: " + cudaText(error));
  if (cudaError_t error = cudaStreamWaitEvent(side.stream, fork);
      error != cudaSuccess)
    return Status::error("cudaStreamWaitEvent: " + cudaText(error));
  // The lanes are swapped back however this returns.
  swapLanes();
  std::unique_ptr<State, void (*)(State *)> swappedBack(
      this, [](State *state) { state->swapLanes(); });
  for (size_t i : moved->second) {
    if (Status status = runOperation(i); !status)
      return status;
    if (cudaError_t error = cudaEventRecord(joins.at(i), stream);
        error != cudaSuccess)
      return Status::error("cudaEventRecord: " + cudaText(error));
  }
  return Status::success();
}

Status
CudaExecutor::State::runSegment(Segment &segment,
                                const std::function<bool(size_t)> &runs) {
  auto runEach = [&]() -> Status {
    for (size_t i = segment.first; i <= segment.last; ++i)
      if (runs(i))
        if (Status status = runOperation(i); !status)
          return status;
    return Status::success();
  };
  if (!segment.graph) {
    // Thread-local capture: other ranks' threads keep using CUDA freely.
    if (cudaError_t error =
            cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
        error != cudaSuccess)
      return Status::error("cudaStreamBeginCapture: " + cudaText(error));
    Status captured = runEach();
    cudaGraph_t graph = nullptr;
    cudaError_t ended = cudaStreamEndCapture(stream, &graph);
    cudaGraphExec_t exec = nullptr;
    if (captured && ended == cudaSuccess && graph &&
        cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess)
      segment.graph = exec;
    if (graph)
      cudaGraphDestroy(graph);
    if (!segment.graph) {
      // Not capturable after all: op by op from now on (this run too,
      // since nothing ran while capturing).
      cudaGetLastError();
      segment.failed = true;
      return runEach();
    }
  }
  if (cudaError_t error = cudaGraphLaunch(segment.graph, stream);
      error != cudaSuccess)
    return Status::error("cudaGraphLaunch: " + cudaText(error));
  return Status::success();
}

Status CudaExecutor::State::hostValue(int id, const Tensor *&tensor) {
  if (auto known = hostValues.find(id); known != hostValues.end()) {
    tensor = &known->second;
    return Status::success();
  }
  if (auto known = staticHostValues.find(id); known != staticHostValues.end()) {
    tensor = &known->second;
    return Status::success();
  }
  // During the load, static values are on the host anyway.
  if (static_cast<size_t>(id) < host.size() && host[id].data()) {
    tensor = &host[id];
    return Status::success();
  }
  if (!device[id])
    return Status::error("value " + std::to_string(id) +
                         " is not computed on this rank");
  Tensor copy(types[id].dtype, types[id].shape);
  if (cudaError_t error =
          cudaMemcpyAsync(copy.data(), device[id], copy.sizeInBytes(),
                          cudaMemcpyDeviceToHost, stream);
      error != cudaSuccess)
    return Status::error("reading value " + std::to_string(id) +
                         " back: " + cudaText(error));
  if (cudaError_t error = cudaStreamSynchronize(stream); error != cudaSuccess)
    return Status::error(cudaText(error));
  tensor = &(hostValues[id] = std::move(copy));
  return Status::success();
}

Status CudaExecutor::State::hostIndices(int id, std::vector<int64_t> &indices) {
  const Tensor *tensor;
  if (Status status = hostValue(id, tensor); !status)
    return status;
  if (!isIndexType(tensor->dtype()))
    return Status::error("value " + std::to_string(id) + " holds " +
                         dtypeName(tensor->dtype()) +
                         "; indices and counts must be i64 or i32");
  indices.resize(tensor->numElements());
  for (int64_t i = 0; i < tensor->numElements(); ++i)
    indices[i] = detail::loadIndex(*tensor, i);
  return Status::success();
}

Status CudaExecutor::State::setHostResult(int id, Tensor tensor) {
  // The host copy outlives the asynchronous upload: a run clears the host
  // copies only after the previous run's stream synchronisation.
  Tensor &kept = hostValues[id] = std::move(tensor);
  if (cudaError_t error =
          cudaMemcpyAsync(device[id], kept.data(), kept.sizeInBytes(),
                          cudaMemcpyHostToDevice, stream);
      error != cudaSuccess)
    return Status::error("uploading value " + std::to_string(id) + ": " +
                         cudaText(error));
  return Status::success();
}

/// Integer index arithmetic through its CPU kernel, on host copies.
Status CudaExecutor::State::runOnHost(size_t index) {
  const Operation &op = program.operations[index];
  std::vector<const Tensor *> operands;
  for (int operand : op.operands) {
    const Tensor *tensor = nullptr;
    if (operand >= 0)
      if (Status status = hostValue(operand, tensor); !status)
        return status;
    operands.push_back(tensor);
  }
  std::vector<Tensor> computed;
  for (const ValueType &type : op.resultTypes)
    computed.emplace_back(type.dtype, type.shape);
  std::vector<Tensor *> results;
  for (Tensor &tensor : computed)
    results.push_back(&tensor);
  if (Status status = findKernel(op.op)(op.attrs, operands, results, context);
      !status)
    return status;
  for (size_t r = 0; r < op.results.size(); ++r)
    if (Status status = setHostResult(op.results[r], std::move(computed[r]));
        !status)
      return status;
  return Status::success();
}

Status CudaExecutor::State::findGroup(const Operation &op,
                                      Communicator *&group) {
  std::vector<int64_t> axes;
  if (const std::vector<int64_t> *listed = op.attrs.getArray("grid_axes"))
    axes = *listed;
  auto found = context.groups.find(groupKey(op.attrs.getString("grid"), axes));
  if (found == context.groups.end() || !found->second)
    return Status::error("no device group for grid '" +
                         op.attrs.getString("grid") +
                         "' along the listed axes");
  group = found->second;
  return Status::success();
}

/// The collectives on device memory: the communicator (NCCL, or a host
/// transport staged through host copies) moves the data, the stream
/// reorders it. Counts are host values. A communicating collective first
/// waits for the stream, since the communicator works on its own.
Status CudaExecutor::State::runCollective(size_t index) {
  const Operation &op = program.operations[index];
  Communicator *group;
  if (Status status = findGroup(op, group); !status)
    return status;
  if (communicates(op.op)) {
    // At load, uploads from pageable memory through cudaMemcpy may still be
    // landing when it returns, and NCCL's stream does not wait for them:
    // wait for the whole device then.
    cudaError_t error =
        host.empty() ? cudaStreamSynchronize(stream) : cudaDeviceSynchronize();
    if (error != cudaSuccess)
      return Status::error(cudaText(error));
  }
  const ValueType &resultType = op.resultTypes[0];
  char *result = static_cast<char *>(device[op.results[0]]);
  const char *input = static_cast<const char *>(device[op.operands[0]]);
  size_t elementBytes = dtypeSize(resultType.dtype);
  int64_t resultBytes = numElements(resultType.shape) * elementBytes;
  // Row bytes: the elements after dim 0.
  auto rowBytesOf = [&](const Shape &shape) {
    return shape.empty() ? elementBytes
                         : numElements(shape) / std::max<int64_t>(shape[0], 1) *
                               elementBytes;
  };
  // (outer elements before `axis`, bytes of one block along it).
  auto blocks = [&](const Shape &shape, int64_t axis, int64_t &outer,
                    int64_t &blockBytes) -> Status {
    if (axis < 0 || axis >= static_cast<int64_t>(shape.size()))
      return Status::error("axis " + std::to_string(axis) +
                           " is out of range for rank " +
                           std::to_string(shape.size()));
    outer = 1;
    for (int64_t i = 0; i < axis; ++i)
      outer *= shape[i];
    blockBytes = elementBytes;
    for (size_t i = axis; i < shape.size(); ++i)
      blockBytes *= shape[i];
    return Status::success();
  };
  auto copy2D = [&](void *target, size_t targetPitch, const void *source,
                    size_t sourcePitch, size_t width, size_t height) -> Status {
    if (width == 0 || height == 0)
      return Status::success();
    if (cudaError_t error =
            cudaMemcpy2DAsync(target, targetPitch, source, sourcePitch, width,
                              height, cudaMemcpyDeviceToDevice, stream);
        error != cudaSuccess)
      return Status::error(cudaText(error));
    return Status::success();
  };

  if (op.op == "all_slice") {
    // This rank's block along the axis of every outer index.
    int64_t outer, blockBytes;
    if (Status status = blocks(resultType.shape, op.attrs.getInt("slice_axis"),
                               outer, blockBytes);
        !status)
      return status;
    return copy2D(result, blockBytes, input + group->rank() * blockBytes,
                  blockBytes * group->size(), blockBytes, outer);
  }
  if (op.op == "all_gather") {
    const ValueType &inputType = types[op.operands[0]];
    int64_t outer, blockBytes;
    if (Status status = blocks(inputType.shape, op.attrs.getInt("gather_axis"),
                               outer, blockBytes);
        !status)
      return status;
    int64_t inputBytes = outer * blockBytes;
    if (outer == 1)
      return group->allGather(input, result, inputBytes);
    // Rank-major into scratch, then every rank's blocks into place.
    char *gathered = static_cast<char *>(scratch[index][0]);
    if (Status status = group->allGather(input, gathered, inputBytes); !status)
      return status;
    for (int rank = 0; rank < group->size(); ++rank)
      if (Status status = copy2D(
              result + rank * blockBytes, blockBytes * group->size(),
              gathered + rank * inputBytes, blockBytes, blockBytes, outer);
          !status)
        return status;
    return Status::success();
  }
  if (op.op == "all_reduce") {
    std::string reduction = op.attrs.getString("reduction", "sum");
    if (reduction != "sum" && reduction != "max" && reduction != "min")
      return Status::error("reduction '" + reduction +
                           "' is not supported (sum, max, min are)");
    ReduceOp reduceOp = reduction == "max"   ? ReduceOp::Max
                        : reduction == "min" ? ReduceOp::Min
                                             : ReduceOp::Sum;
    return group->allReduce(input, result, numElements(resultType.shape),
                            resultType.dtype, reduceOp);
  }
  if (op.op == "ragged_all_to_all") {
    std::vector<int64_t> sendCounts;
    if (Status status = hostIndices(op.operands[1], sendCounts); !status)
      return status;
    if (static_cast<int>(sendCounts.size()) != group->size())
      return Status::error("has " + std::to_string(sendCounts.size()) +
                           " send counts for a group of " +
                           std::to_string(group->size()));
    const ValueType &inputType = types[op.operands[0]];
    int64_t sent =
        std::accumulate(sendCounts.begin(), sendCounts.end(), int64_t{0});
    if (inputType.shape.empty() || sent > inputType.shape[0])
      return Status::error("send_counts add up to " + std::to_string(sent) +
                           " rows but the input has " +
                           (inputType.shape.empty()
                                ? std::string("none")
                                : std::to_string(inputType.shape[0])));
    int64_t rowBytes = rowBytesOf(resultType.shape);
    Tensor received(DType::I64, {group->size()});
    if (Status status = group->raggedAllToAll(input, sendCounts.data(), result,
                                              resultType.shape[0],
                                              received.as<int64_t>(), rowBytes);
        !status)
      return status;
    int64_t rows =
        std::accumulate(received.as<int64_t>(),
                        received.as<int64_t>() + group->size(), int64_t{0});
    // Rows past the received ones are zero, as on the CPU backend.
    if (rows < resultType.shape[0])
      if (cudaError_t error =
              cudaMemsetAsync(result + rows * rowBytes, 0,
                              (resultType.shape[0] - rows) * rowBytes, stream);
          error != cudaSuccess)
        return Status::error(cudaText(error));
    return setHostResult(op.results[1], std::move(received));
  }
  if (op.op == "transpose_chunks") {
    // Chunk (i, j) of an a x b grid of row ranges moves to position
    // (j, i), in row-major order of the counts.
    std::vector<int64_t> counts;
    if (Status status = hostIndices(op.operands[1], counts); !status)
      return status;
    const Shape &countsShape = types[op.operands[1]].shape;
    if (countsShape.size() != 2)
      return Status::error("chunk_counts must be 2-D");
    int64_t a = countsShape[0], b = countsShape[1];
    for (int64_t chunkCount : counts)
      if (chunkCount < 0)
        return Status::error("chunk_counts holds a negative count (" +
                             std::to_string(chunkCount) + ")");
    int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    if (resultType.shape.empty() || total > resultType.shape[0])
      return Status::error("chunk_counts add up to " + std::to_string(total) +
                           " rows, more than the input has");
    int64_t rowBytes = rowBytesOf(resultType.shape);
    std::vector<int64_t> starts(counts.size(), 0);
    for (size_t c = 1; c < counts.size(); ++c)
      starts[c] = starts[c - 1] + counts[c - 1];
    int64_t written = 0;
    for (int64_t j = 0; j < b; ++j)
      for (int64_t i = 0; i < a; ++i) {
        int64_t chunk = i * b + j;
        if (counts[chunk] > 0)
          if (cudaError_t error = cudaMemcpyAsync(
                  result + written * rowBytes, input + starts[chunk] * rowBytes,
                  counts[chunk] * rowBytes, cudaMemcpyDeviceToDevice, stream);
              error != cudaSuccess)
            return Status::error(cudaText(error));
        written += counts[chunk];
      }
    if (written < resultType.shape[0])
      if (cudaError_t error =
              cudaMemsetAsync(result + written * rowBytes, 0,
                              resultBytes - written * rowBytes, stream);
          error != cudaSuccess)
        return Status::error(cudaText(error));
    return Status::success();
  }
  // stage_transfer: the sending stage sends to each receiving stage in
  // stage order; receivers fill the result.
  int64_t from = op.attrs.getInt("from", -1);
  const std::vector<int64_t> *to = op.attrs.getArray("to");
  if (from < 0 || from >= group->size() || !to)
    return Status::error("needs a sending stage in [0, " +
                         std::to_string(group->size()) +
                         ") and receiving stages");
  if (group->rank() == from) {
    for (int64_t stage : *to)
      if (Status status =
              group->send(input, resultBytes, static_cast<int>(stage));
          !status)
        return status;
    if (result != input)
      if (cudaError_t error = cudaMemcpyAsync(result, input, resultBytes,
                                              cudaMemcpyDeviceToDevice, stream);
          error != cudaSuccess)
        return Status::error(cudaText(error));
    return Status::success();
  }
  if (std::find(to->begin(), to->end(), group->rank()) != to->end())
    return group->recv(result, resultBytes, static_cast<int>(from));
  return Status::success();
}

Status CudaExecutor::State::runOperation(size_t index) {
  const Operation &op = program.operations[index];
  Status status;
  if (op.op == "launch") {
    status = runLaunch(index);
  } else if (op.op == "reshape") {
    int64_t bytes = numElements(op.resultTypes[0].shape) *
                    dtypeSize(op.resultTypes[0].dtype);
    if (cudaError_t error =
            cudaMemcpyAsync(device[op.results[0]], device[op.operands[0]],
                            bytes, cudaMemcpyDeviceToDevice, stream);
        error != cudaSuccess)
      status = Status::error(cudaText(error));
    // Counts the host has keep their host copy under the new shape.
    if (auto known = hostValues.find(op.operands[0]); known != hostValues.end())
      hostValues[op.results[0]] =
          known->second.reshaped(op.resultTypes[0].shape);
  } else if (isCollective(op.op)) {
    status = runCollective(index);
  } else if (runsOnHost(op)) {
    status = runOnHost(index);
  } else if (op.op == "matmul") {
    status = runMatmul(op);
  } else if (op.op == "dispatch") {
    status = runDispatch(op);
  } else if (op.op == "expert_ffn" || op.op == "ffn") {
    status = runFeedForward(index);
  } else if (op.op == "combine") {
    status = runCombine(index);
  }
  if (!status)
    return operationError(op, status.message);
  return Status::success();
}

Status CudaExecutor::State::runLaunch(size_t index) {
  const Operation &op = program.operations[index];
  auto buffer = [&](const LaunchArgument &argument) -> void * {
    switch (argument.kind) {
    case LaunchArgument::Input:
      return device[op.operands[argument.value]];
    case LaunchArgument::Output:
      return device[op.results[argument.value]];
    case LaunchArgument::Scratch:
      return scratch[index][argument.value];
    default:
      return nullptr;
    }
  };
  for (auto &[launch, function] : launches[index]) {
    if (launch.module.empty()) {
      if (cudaError_t error = cudaMemcpyAsync(
              buffer(launch.arguments[1]), buffer(launch.arguments[0]),
              launch.copyBytes, cudaMemcpyDeviceToDevice, stream);
          error != cudaSuccess)
        return Status::error("copy: " + cudaText(error));
      continue;
    }
    // Each parameter's value lives in `storage`; `params` points at them.
    std::vector<uint64_t> storage(launch.arguments.size());
    std::vector<void *> params(launch.arguments.size());
    for (size_t a = 0; a < launch.arguments.size(); ++a) {
      const LaunchArgument &argument = launch.arguments[a];
      switch (argument.kind) {
      case LaunchArgument::Input:
      case LaunchArgument::Output:
      case LaunchArgument::Scratch:
        storage[a] = reinterpret_cast<uint64_t>(buffer(argument));
        break;
      case LaunchArgument::Int64:
        storage[a] = static_cast<uint64_t>(argument.value);
        break;
      case LaunchArgument::Float32: {
        uint32_t bits = static_cast<uint32_t>(argument.value);
        std::memcpy(&storage[a], &bits, sizeof(bits));
        break;
      }
      }
      params[a] = &storage[a];
    }
    dim3 grid(launch.grid[0], launch.grid[1], launch.grid[2]);
    dim3 block(launch.block[0], launch.block[1], launch.block[2]);
    if (cudaError_t error =
            cudaLaunchKernel(reinterpret_cast<const void *>(function), grid,
                             block, params.data(), 0, stream);
        error != cudaSuccess)
      return Status::error("launching " + launch.module + ":" + launch.kernel +
                           ": " + cudaText(error));
  }
  return Status::success();
}

/// ONNX MatMul on f32: [..., M, K] x [K, N] as one GEMM, or equal leading
/// dimensions as strided batches (row-major, so cuBLAS computes the
/// transposed product).
/// (checkCudaSupport refused the other forms at load.)
Status CudaExecutor::State::runMatmul(const Operation &op) {
  const ValueType *lhs = &types[op.operands[0]];
  const ValueType *rhs = &types[op.operands[1]];
  int64_t m = lhs->shape[lhs->shape.size() - 2];
  int64_t k = lhs->shape.back();
  int64_t n = rhs->shape.back();
  const float *a = static_cast<const float *>(device[op.operands[0]]);
  const float *b = static_cast<const float *>(device[op.operands[1]]);
  float *c = static_cast<float *>(device[op.results[0]]);
  const float one = 1.0f, zero = 0.0f;
  cublasStatus_t status;
  if (rhs->shape.size() == 2) {
    int64_t rows = numElements(lhs->shape) / k;
    status = cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, rows, k, &one, b, n,
                         a, k, &zero, c, n);
  } else {
    Shape lhsBatch(lhs->shape.begin(), lhs->shape.end() - 2);
    status = cublasSgemmStridedBatched(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k,
                                       &one, b, n, k * n, a, k, m * k, &zero, c,
                                       n, m * n, numElements(lhsBatch));
  }
  if (status != CUBLAS_STATUS_SUCCESS)
    return Status::error(std::string("cuBLAS: ") +
                         cublasGetStatusString(status));
  return Status::success();
}

/// The expert order on the host (the selection is small), then the permute
/// kernel.
Status CudaExecutor::State::runDispatch(const Operation &op) {
  const ValueType &rowsType = op.resultTypes[0];
  int64_t numExperts = op.attrs.getInt("num_experts");
  int64_t capacity =
      op.attrs.has("capacity") ? op.attrs.getInt("capacity") : -1;
  int64_t hidden = rowsType.shape.back();
  int64_t rows = op.resultTypes[2].shape[0];
  // experts [tokens, top_k], i64 or i32, come to the host (one stream
  // synchronisation per layer).
  int selectedId = op.operands[1];
  int64_t topK = types[selectedId].shape.back();
  std::vector<int64_t> selected;
  if (Status status = hostIndices(selectedId, selected); !status)
    return status;
  std::vector<int64_t> counts, sources;
  if (Status status = detail::planDispatch("dispatch", selected, numExperts,
                                           capacity, counts, sources);
      !status)
    return status;
  if (static_cast<int64_t>(sources.size()) != rows)
    return Status::error("the program declares " + std::to_string(rows) +
                         " rows; the selection gives " +
                         std::to_string(sources.size()));
  for (auto [r, values] : {std::pair{1, &counts}, std::pair{2, &sources}}) {
    Tensor tensor(DType::I64, {static_cast<int64_t>(values->size())});
    std::copy(values->begin(), values->end(), tensor.as<int64_t>());
    if (Status status = setHostResult(op.results[r], std::move(tensor));
        !status)
      return status;
  }
  return permuteRows(static_cast<const float *>(device[op.operands[0]]),
                     static_cast<const int64_t *>(device[op.results[2]]), rows,
                     hidden, topK, static_cast<float *>(device[op.results[0]]),
                     stream);
}

/// expert_ffn (grouped GEMMs over the experts' rows, per-expert biases) and
/// ffn (a dense FFN, shared experts: cuBLAS GEMMs, one bias): the gate's
/// and the up projection's products with their biases, the activation,
/// then the down projection and its bias.
Status CudaExecutor::State::runFeedForward(size_t index) {
  const Operation &op = program.operations[index];
  bool expert = op.op == "expert_ffn";
  // expert_ffn: rows, counts, gate, up, down, gate_bias, up_bias, down_bias;
  // ffn: input, gate, up, down, gate_bias, up_bias, down_bias.
  int shift = expert ? 1 : 0;
  int gateOperand = 1 + shift, upOperand = 2 + shift, downOperand = 3 + shift;
  const ValueType &input = types[op.operands[0]];
  int64_t hidden = input.shape.back();
  int64_t rows = numElements(input.shape) / hidden;
  int64_t ffn = types[op.operands[upOperand]].shape.back();
  bool gated = op.operands[gateOperand] >= 0;
  // The storage type of the GEMMs' operands (f32 accumulation either way);
  // a 16-bit FFN converts its input rows first and its output rows last.
  DType compute = lowPrecision[index] ? options.feedForwardType : DType::F32;
  void *first = scratch[index][0];
  void *second = gated ? scratch[index][1] : nullptr;
  const void *x = device[op.operands[0]];
  void *out = device[op.results[0]];
  if (compute != DType::F32) {
    if (Status status = convertElements(
            DType::F32, x, compute, scratch[index][2], rows * hidden, stream);
        !status)
      return status;
    x = scratch[index][2];
    out = scratch[index][3];
  }

  const std::vector<int64_t> *groups = nullptr;
  std::vector<int64_t> expertCounts, paddedCounts;
  int64_t experts = 1, biasedRows = rows;
  int64_t *offsets = nullptr;
  // Capacity mode: expert e owns rows [e*C, (e+1)*C), its counts[e] rows
  // first; the GEMMs run over whole blocks (the padding rows are zero),
  // and the padding rows of the result are zeroed afterwards, as on the CPU.
  int64_t capacity =
      expert && op.attrs.has("capacity") ? op.attrs.getInt("capacity") : -1;
  if (expert) {
    if (Status status = hostIndices(op.operands[1], expertCounts); !status)
      return status;
    groups = &expertCounts;
    experts = static_cast<int64_t>(groups->size());
    if (capacity >= 0) {
      if (capacity < 1 || rows != experts * capacity)
        return Status::error("capacity " + std::to_string(capacity) +
                             " does not give the " + std::to_string(rows) +
                             " rows of " + std::to_string(experts) +
                             " experts");
      for (int64_t count : expertCounts)
        if (count < 0 || count > capacity)
          return Status::error("an expert count (" + std::to_string(count) +
                               ") is outside [0, capacity " +
                               std::to_string(capacity) + "]");
      paddedCounts.assign(experts, capacity);
      groups = &paddedCounts;
    }
    // Each expert's first row, for the bias kernel; kept per operation,
    // since the copy is asynchronous.
    std::vector<int64_t> &starts = hostOffsets[index];
    starts.assign(experts + 1, 0);
    for (int64_t e = 0; e < experts; ++e)
      starts[e + 1] = starts[e] + (*groups)[e];
    biasedRows = starts.back();
    int64_t *&deviceStarts = expertOffsets[index];
    if (!deviceStarts) {
      void *pointer = nullptr;
      if (Status status = allocate(starts.size() * sizeof(int64_t), pointer);
          !status)
        return status;
      deviceStarts = static_cast<int64_t *>(pointer);
    }
    if (cudaError_t error = cudaMemcpyAsync(deviceStarts, starts.data(),
                                            starts.size() * sizeof(int64_t),
                                            cudaMemcpyHostToDevice, stream);
        error != cudaSuccess)
      return Status::error(cudaText(error));
    offsets = deviceStarts;
  }

  const float one = 1.0f, zero = 0.0f;
  // out[rows, n] = in[rows, k] @ w[k, n] (row-major, so cuBLAS computes
  // the column-major out^T = w^T in^T), or per expert group.
  cudaDataType_t type = compute == DType::BF16  ? CUDA_R_16BF
                        : compute == DType::F16 ? CUDA_R_16F
                                                : CUDA_R_32F;
  auto product = [&](const void *in, const void *w, void *result, int64_t k,
                     int64_t n) -> Status {
    if (expert)
      return expertGemm->run(compute, in, *groups, k, n, w, result);
    // A dense FFN is one GEMM, which needs no pointer arrays (so it can be
    // captured in a CUDA graph at any precision).
    if (cublasStatus_t status =
            cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, rows, k, &one, w,
                         type, n, in, type, k, &zero, result, type, n,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        status != CUBLAS_STATUS_SUCCESS)
      return Status::error(std::string("cuBLAS: ") +
                           cublasGetStatusString(status));
    return Status::success();
  };
  auto bias = [&](int operand, DType dtype, void *values,
                  int64_t columns) -> Status {
    operand += shift;
    if (op.operands.size() <= static_cast<size_t>(operand) ||
        op.operands[operand] < 0)
      return Status::success();
    return addBias(dtype, values,
                   static_cast<const float *>(device[op.operands[operand]]),
                   offsets, experts, biasedRows, columns, stream);
  };
  // A weight as the GEMMs read it: its 16-bit copy on the 16-bit paths.
  auto weight = [&](int operand) -> const void * {
    int id = op.operands[operand];
    return compute != DType::F32 ? lowPrecisionWeights.at(id) : device[id];
  };
  // One projection: the product with a weight, then its bias.
  auto project = [&](const void *in, int weightOperand, int biasOperand,
                     void *result, int64_t k, int64_t n) -> Status {
    if (Status status = product(in, weight(weightOperand), result, k, n);
        !status)
      return status;
    return bias(biasOperand, compute, result, n);
  };
  if (gated)
    if (Status status = project(x, gateOperand, 4, first, hidden, ffn); !status)
      return status;
  if (Status status =
          project(x, upOperand, 5, gated ? second : first, hidden, ffn);
      !status)
    return status;
  if (Status status = activate(op.attrs.getString("activation"), compute, first,
                               second, rows * ffn, stream);
      !status)
    return status;
  float *result = static_cast<float *>(device[op.results[0]]);
  if (compute == DType::F32) {
    if (Status status = project(first, downOperand, 6, out, ffn, hidden);
        !status)
      return status;
  } else {
    // 16 bits: the down projection's rows back to f32, then its bias in f32.
    if (Status status = product(first, weight(downOperand), out, ffn, hidden);
        !status)
      return status;
    if (Status status = convertElements(compute, out, DType::F32, result,
                                        rows * hidden, stream);
        !status)
      return status;
    if (Status status = bias(6, DType::F32, result, hidden); !status)
      return status;
  }
  for (int64_t e = 0; capacity >= 0 && e < experts; ++e) {
    int64_t padding = capacity - expertCounts[e];
    if (padding > 0)
      if (cudaError_t error = cudaMemsetAsync(
              result + (e * capacity + expertCounts[e]) * hidden, 0,
              padding * hidden * sizeof(float), stream);
          error != cudaSuccess)
        return Status::error(cudaText(error));
  }
  return Status::success();
}

Status CudaExecutor::State::runCombine(size_t index) {
  const Operation &op = program.operations[index];
  std::vector<int64_t> sources;
  if (Status status = hostIndices(op.operands[1], sources); !status)
    return status;
  const ValueType &result = op.resultTypes[0];
  int64_t tokens = result.shape[0], hidden = result.shape[1];
  int64_t pairs = numElements(types[op.operands[2]].shape);
  if (tokens == 0 || pairs % tokens != 0)
    return Status::error("the routing weights do not hold top_k per token");
  std::vector<int64_t> rows;
  if (Status status = invertDispatchOrder(sources, pairs, rows); !status)
    return status;
  int64_t *&deviceRows = rowOfPair[index];
  if (!deviceRows) {
    void *pointer = nullptr;
    if (Status status = allocate(pairs * sizeof(int64_t), pointer); !status)
      return status;
    deviceRows = static_cast<int64_t *>(pointer);
  }
  if (cudaError_t error =
          cudaMemcpyAsync(deviceRows, rows.data(), pairs * sizeof(int64_t),
                          cudaMemcpyHostToDevice, stream);
      error != cudaSuccess)
    return Status::error("uploading the rows of the pairs: " + cudaText(error));
  // The host array must outlive the copy.
  if (cudaError_t error = cudaStreamSynchronize(stream); error != cudaSuccess)
    return Status::error(cudaText(error));
  return unpermuteCombine(static_cast<const float *>(device[op.operands[0]]),
                          deviceRows,
                          static_cast<const float *>(device[op.operands[2]]),
                          tokens, pairs / tokens, hidden,
                          static_cast<float *>(device[op.results[0]]), stream);
}

Status CudaExecutor::run(const std::vector<Tensor> &inputs,
                         std::vector<Tensor> &outputs) {
  State &s = *state_;
  const Program &p = s.program;
  if (cudaError_t error = cudaSetDevice(s.deviceIndex); error != cudaSuccess)
    return Status::error("cannot use CUDA device " +
                         std::to_string(s.deviceIndex) + ": " +
                         cudaText(error));
  if (inputs.size() != p.inputs.size())
    return Status::error("expected " + std::to_string(p.inputs.size()) +
                         " inputs, got " + std::to_string(inputs.size()));
  // A failed run may have left work on the second stream that reads the
  // inputs about to be overwritten.
  if (s.side.stream)
    if (cudaError_t error = cudaStreamSynchronize(s.side.stream);
        error != cudaSuccess)
      return Status::error(cudaText(error));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputDecl &input = p.inputs[i];
    if (inputs[i].dtype() != input.type.dtype ||
        inputs[i].shape() != input.type.shape)
      return Status::error(
          "input '" + input.name + "' is " + dtypeName(inputs[i].dtype()) +
          " " + formatShape(inputs[i].shape()) + "; expected " +
          dtypeName(input.type.dtype) + " " + formatShape(input.type.shape));
    if (cudaError_t error = cudaMemcpyAsync(
            s.device[input.id], inputs[i].data(), inputs[i].sizeInBytes(),
            cudaMemcpyHostToDevice, s.stream);
        error != cudaSuccess)
      return Status::error("uploading input '" + input.name +
                           "': " + cudaText(error));
  }
  // The previous run's uploads from the host copies are done (it ended
  // waiting for the stream, unless it failed).
  if (cudaError_t error = cudaStreamSynchronize(s.stream); error != cudaSuccess)
    return Status::error(cudaText(error));
  s.hostValues.clear();
  auto runs = [&](size_t i) {
    const Operation &op = p.operations[i];
    return (op.results.empty() || !s.isStatic[op.results.front()]) &&
           s.runsHere[i];
  };
  size_t segment = 0;
  for (size_t i = 0; i < p.operations.size(); ++i) {
    // A stretch of operations that needs no host: one CUDA graph.
    while (segment < s.segments.size() && s.segments[segment].first < i)
      ++segment;
    if (segment < s.segments.size() && s.segments[segment].first == i &&
        !s.segments[segment].failed) {
      if (Status status = s.runSegment(s.segments[segment], runs); !status)
        return status;
      i = s.segments[segment].last;
      continue;
    }
    if (!runs(i))
      continue;
    if (s.movedTo[i] >= 0) {
      // Enqueued on the second stream at its collective: joined here.
      if (cudaError_t error = cudaStreamWaitEvent(s.stream, s.joins.at(i));
          error != cudaSuccess)
        return Status::error("cudaStreamWaitEvent: " + cudaText(error));
      continue;
    }
    if (Status status = s.runMoved(i); !status)
      return status;
    if (Status status = s.runOperation(i); !status)
      return status;
  }
  outputs.clear();
  for (const OutputDecl &output : p.outputs) {
    const ValueType &type = s.types[output.id];
    Tensor tensor(type.dtype, type.shape);
    if (cudaError_t error = cudaMemcpyAsync(tensor.data(), s.device[output.id],
                                            tensor.sizeInBytes(),
                                            cudaMemcpyDeviceToHost, s.stream);
        error != cudaSuccess)
      return Status::error("downloading output '" + output.name +
                           "': " + cudaText(error));
    outputs.push_back(std::move(tensor));
  }
  if (cudaError_t error = cudaStreamSynchronize(s.stream); error != cudaSuccess)
    return Status::error("running the program: " + cudaText(error));
  return Status::success();
}

} // namespace moe::rt::cuda
