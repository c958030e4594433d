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

#include "../lib/KernelSupport.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstring>
#include <map>

namespace moe::rt::cuda {

namespace {

std::string cudaText(cudaError_t error) { return cudaGetErrorString(error); }

/// An error about operation `op`, named by its program line.
Status operationError(const Operation &op, const std::string &message) {
  return Status::error("line " + std::to_string(op.line) + " (" + op.op +
                       "): " + message);
}

} // namespace

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
  /// Per operation: its launches with their functions (launch ops), its
  /// scratch buffers' arena offsets, and expert_ffn buffers.
  std::vector<std::vector<std::pair<KernelLaunch, cudaKernel_t>>> launches;
  std::vector<std::vector<void *>> scratch;
  /// Per value: the host copy of a dispatch's counts and sources, which
  /// expert_ffn and combine read.
  std::map<int, std::vector<int64_t>> hostIndices;
  /// Per combine op: the device array of each pair's row.
  std::map<size_t, int64_t *> rowOfPair;
  /// Per expert_ffn op: its experts' row offsets, on the host and the
  /// device (the bias kernel's).
  std::map<size_t, std::vector<int64_t>> hostOffsets;
  std::map<size_t, int64_t *> expertOffsets;
  /// Host copies of the static values, while they are computed at load.
  std::vector<Tensor> host;

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
  if (!program.grids.empty())
    return Status::error("partitioned programs (grid '" +
                         program.grids[0].name +
                         "') do not run on the CUDA backend yet: its "
                         "executor has no NCCL collectives; compile without "
                         "--machine for one GPU");
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
    if (op.op == "launch" || op.op == "reshape" || op.op == "combine")
      continue;
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
      if (expert && op.attrs.has("capacity"))
        return refuse("capacity mode is not supported by the CUDA backend "
                      "yet");
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
                  "expert_ffn and combine; the compiler leaves this op when "
                  "it cannot generate its kernel");
  }
  return Status::success();
}

CudaExecutor::State::~State() {
  if (stream)
    cudaStreamSynchronize(stream);
  // The cuBLAS handles go before the stream they are bound to.
  expertGemm.reset();
  for (void *pointer : owned)
    cudaFree(pointer);
  if (arena)
    cudaFree(arena);
  for (auto &[name, module] : modules)
    cudaLibraryUnload(module);
  if (blas)
    cublasDestroy(blas);
  if (stream)
    cudaStreamDestroy(stream);
}

CudaExecutor::~CudaExecutor() = default;

const Program &CudaExecutor::program() const { return state_->program; }
int64_t CudaExecutor::weightBytes() const { return state_->weightBytes; }
int64_t CudaExecutor::arenaBytes() const { return state_->arenaBytes; }

std::string CudaExecutor::deviceName() const {
  cudaDeviceProp properties;
  if (cudaGetDeviceProperties(&properties, state_->deviceIndex) != cudaSuccess)
    return "CUDA device " + std::to_string(state_->deviceIndex);
  return properties.name;
}

Status CudaExecutor::create(Program program,
                            const std::string &programDirectory, int device,
                            std::unique_ptr<CudaExecutor> &executor) {
  executor.reset(new CudaExecutor());
  executor->state_ = std::make_unique<State>();
  State &s = *executor->state_;
  s.program = std::move(program);
  s.deviceIndex = device;
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
  if (Status status = s.expertGemm->init(s.stream); !status)
    return status;

  // The PTX modules, compiled by the driver for this device.
  for (const GpuModuleDecl &module : p.gpuModules) {
    cudaLibrary_t loaded;
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
  s.isStatic = staticValues(p);
  s.types = valueTypes(p);
  auto upload = [&](int id) -> Status {
    const Tensor &tensor = host[id];
    if (Status status = s.allocate(tensor.sizeInBytes(), s.device[id]); !status)
      return status;
    s.weightBytes += tensor.sizeInBytes();
    if (cudaError_t error =
            cudaMemcpy(s.device[id], tensor.data(), tensor.sizeInBytes(),
                       cudaMemcpyHostToDevice);
        error != cudaSuccess)
      return Status::error("uploading value " + std::to_string(id) + ": " +
                           cudaText(error));
    return Status::success();
  };
  for (const ConstDecl &constant : p.constants)
    if (Status status = upload(constant.id); !status)
      return status;
  for (const WeightDecl &weight : p.weights)
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
  for (size_t i = 0; i < count; ++i) {
    const Operation &op = p.operations[i];
    if (Status status = s.prepare(i); !status)
      return status;
    for (int operand : op.operands)
      if (operand >= 0)
        last[operand] = static_cast<int64_t>(i);
    for (size_t r = 0; r < op.results.size(); ++r) {
      int id = op.results[r];
      int64_t bytes = numElements(op.resultTypes[r].shape) *
                      dtypeSize(op.resultTypes[r].dtype);
      first[id] = last[id] = static_cast<int64_t>(i);
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
  // Scratch buffers live during their operation only: a launch's, and an
  // FFN's intermediate rows (the gate's products, then the up
  // projection's when gated).
  for (size_t i = 0; i < count; ++i) {
    const Operation &op = p.operations[i];
    if (op.results.empty() || s.isStatic[op.results.front()])
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
      sizes.assign(gated ? 2 : 1, rows * ffn * int64_t(sizeof(float)));
    }
    for (size_t t = 0; t < sizes.size(); ++t) {
      buffers.push_back(
          {sizes[t], static_cast<int64_t>(i), static_cast<int64_t>(i)});
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

  // The static operations run now, once: launches on the GPU (their
  // results copied back, for static operations after them), the others
  // through the CPU kernels (their results uploaded).
  for (size_t i = 0; i < count; ++i) {
    const Operation &op = p.operations[i];
    if (op.results.empty() || !s.isStatic[op.results.front()])
      continue;
    Status status =
        op.op == "launch" ? s.runOperation(i) : s.runStaticOnHost(i);
    if (!status)
      return status;
    for (size_t r = 0; r < op.results.size() && op.op == "launch"; ++r) {
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
  host.clear();
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
  KernelContext context;
  if (Status status = kernel(op.attrs, operands, results, context); !status)
    return operationError(op, status.message);
  if (op.op == "dispatch")
    // expert_ffn and combine read the order on the host.
    for (int r : {1, 2}) {
      const Tensor &indices = host[op.results[r]];
      hostIndices[op.results[r]].assign(
          indices.as<int64_t>(), indices.as<int64_t>() + indices.numElements());
    }
  for (int result : op.results)
    if (cudaError_t error =
            cudaMemcpy(device[result], host[result].data(),
                       host[result].sizeInBytes(), cudaMemcpyHostToDevice);
        error != cudaSuccess)
      return operationError(op, "uploading its result: " + cudaText(error));
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
  // experts [tokens, top_k], i64 or i32.
  int selectedId = op.operands[1];
  DType selectedType = types[selectedId].dtype;
  int64_t pairs = numElements(types[selectedId].shape);
  int64_t topK = types[selectedId].shape.back();
  // The selection comes to the host (one stream synchronisation per
  // layer), as i64 or i32.
  std::vector<int64_t> selected(pairs);
  std::vector<int32_t> narrow(selectedType == DType::I32 ? pairs : 0);
  void *target = selectedType == DType::I64
                     ? static_cast<void *>(selected.data())
                     : static_cast<void *>(narrow.data());
  if (cudaError_t error = cudaMemcpyAsync(target, device[selectedId],
                                          pairs * dtypeSize(selectedType),
                                          cudaMemcpyDeviceToHost, stream);
      error != cudaSuccess)
    return Status::error("reading the selected experts: " + cudaText(error));
  if (cudaError_t error = cudaStreamSynchronize(stream); error != cudaSuccess)
    return Status::error(cudaText(error));
  if (selectedType == DType::I32)
    selected.assign(narrow.begin(), narrow.end());
  std::vector<int64_t> counts, sources;
  if (Status status = detail::planDispatch("dispatch", selected, numExperts,
                                           capacity, counts, sources);
      !status)
    return status;
  if (static_cast<int64_t>(sources.size()) != rows)
    return Status::error("the program declares " + std::to_string(rows) +
                         " rows; the selection gives " +
                         std::to_string(sources.size()));
  hostIndices[op.results[1]] = counts;
  hostIndices[op.results[2]] = sources;
  std::vector<int64_t> &keptCounts = hostIndices[op.results[1]];
  std::vector<int64_t> &keptSources = hostIndices[op.results[2]];
  for (auto [id, values] : {std::pair{op.results[1], &keptCounts},
                            std::pair{op.results[2], &keptSources}})
    if (cudaError_t error = cudaMemcpyAsync(device[id], values->data(),
                                            values->size() * sizeof(int64_t),
                                            cudaMemcpyHostToDevice, stream);
        error != cudaSuccess)
      return Status::error("uploading the expert order: " + cudaText(error));
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
  float *first = static_cast<float *>(scratch[index][0]);
  float *second = gated ? static_cast<float *>(scratch[index][1]) : nullptr;

  const std::vector<int64_t> *groups = nullptr;
  int64_t experts = 1, biasedRows = rows;
  int64_t *offsets = nullptr;
  if (expert) {
    auto counts = hostIndices.find(op.operands[1]);
    if (counts == hostIndices.end())
      return Status::error("its counts do not come from a dispatch on this "
                           "GPU");
    groups = &counts->second;
    experts = static_cast<int64_t>(groups->size());
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
  auto product = [&](const void *in, const void *w, float *out, int64_t k,
                     int64_t n) -> Status {
    if (expert)
      return expertGemm->run(DType::F32, in, *groups, k, n, w, out);
    if (cublasStatus_t status =
            cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, rows, k, &one,
                        static_cast<const float *>(w), n,
                        static_cast<const float *>(in), k, &zero, out, n);
        status != CUBLAS_STATUS_SUCCESS)
      return Status::error(std::string("cuBLAS: ") +
                           cublasGetStatusString(status));
    return Status::success();
  };
  auto bias = [&](int operand, float *values, int64_t columns) -> Status {
    operand += shift;
    if (op.operands.size() <= static_cast<size_t>(operand) ||
        op.operands[operand] < 0)
      return Status::success();
    return addBias(values,
                   static_cast<const float *>(device[op.operands[operand]]),
                   offsets, experts, biasedRows, columns, stream);
  };
  // One projection: the product with a weight, then its bias.
  auto project = [&](const void *in, int weight, int biasOperand, float *out,
                     int64_t k, int64_t n) -> Status {
    if (Status status = product(in, device[op.operands[weight]], out, k, n);
        !status)
      return status;
    return bias(biasOperand, out, n);
  };
  const void *x = device[op.operands[0]];
  if (gated)
    if (Status status = project(x, gateOperand, 4, first, hidden, ffn); !status)
      return status;
  if (Status status =
          project(x, upOperand, 5, gated ? second : first, hidden, ffn);
      !status)
    return status;
  if (Status status = activate(op.attrs.getString("activation"), first, second,
                               rows * ffn, stream);
      !status)
    return status;
  return project(first, downOperand, 6,
                 static_cast<float *>(device[op.results[0]]), ffn, hidden);
}

Status CudaExecutor::State::runCombine(size_t index) {
  const Operation &op = program.operations[index];
  auto sources = hostIndices.find(op.operands[1]);
  if (sources == hostIndices.end())
    return Status::error("its sources do not come from a dispatch on this "
                         "GPU");
  const ValueType &result = op.resultTypes[0];
  int64_t tokens = result.shape[0], hidden = result.shape[1];
  int64_t pairs = numElements(types[op.operands[2]].shape);
  if (tokens == 0 || pairs % tokens != 0)
    return Status::error("the routing weights do not hold top_k per token");
  std::vector<int64_t> rows;
  if (Status status = invertDispatchOrder(sources->second, pairs, rows);
      !status)
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
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    if (!op.results.empty() && s.isStatic[op.results.front()])
      continue;
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
