//===- moe-run.cpp - run a compiled moe program ---------------------------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// Loads a program written by moe-compile, runs it on inputs from .npy files
// (or random ones), reports latency percentiles and throughput, writes the
// outputs and compares them with references.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Collectives.h"
#include "moe/Runtime/CudaExecutor.h"
#include "moe/Runtime/Executor.h"
#ifdef MOE_RUN_WITH_NCCL
#include "moe/Runtime/NCCLCommunicator.h"
#endif
#include "moe/Runtime/Npy.h"
#include "moe/Runtime/TensorProto.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

using namespace moe::rt;

namespace {

const char *kUsage = R"(usage: moe-run PROGRAM.moe [options]

Runs a program compiled by moe-compile and reports its latency.

options:
  --inputs A.npy,B.npy    inputs in program order: .npy files, ONNX
                          TensorProto .pb files, or an ONNX test data set
                          directory (its input_0.pb, input_1.pb, ...);
                          default: random values, floats ~ N(0, 1),
                          integers uniform in [0, 8)
  --outputs Y.npy,...     write the outputs (all or nothing: on any error no
                          file is written)
  --compare R.npy,...     compare the outputs with references (.npy, .pb,
                          or a test data set directory's output_K.pb); exit
                          1 when any element differs by more than
                          atol + rtol*|ref|
  --rtol R                relative tolerance (default 1e-4)
  --atol A                absolute tolerance (default 1e-5)
  --warmup N              untimed runs first (default 1)
  --iterations N          timed runs (default 10)
  --threads N             threads for kernels per rank (default 1)
  --ranks N               run N ranks as threads of this process (default:
                          the ranks the program was partitioned for, 1 for
                          an unpartitioned one); under `mpirun -np N` (or
                          torchrun) every process is one rank instead. Every
                          rank gets the same inputs and computes the whole
                          outputs (a partitioned program gathers them);
                          rank 0 reports, and checks that all ranks computed
                          the same outputs
  --seed S                seed for random inputs (default 0)
  --trace FILE            write a Chrome trace (chrome://tracing, Perfetto) of
                          one extra run: one event per operation, pid = rank,
                          compute and communication on separate tracks
  --expert-load FILE      write tokens per expert of every MoE layer of the
                          last run (of a program with micro-batches: of its
                          last micro-batch) as JSON lines, with max / mean
  --gpu-transport T       for programs compiled with --target cuda, how
                          the ranks' collectives move device memory: nccl
                          (one GPU per rank), staged (copies through the
                          host over threads or MPI; ranks may share a GPU),
                          or auto (the default: nccl when every rank has a
                          GPU of its own and NCCL was built, else staged).
                          Rank r uses GPU r mod the number of GPUs. nccl on
                          one rank runs a one-device program through NCCL
  --gpu-precision P       for programs compiled with --target cuda, the
                          storage type of the feed-forward GEMMs (experts,
                          shared experts): f32 (the default, the reference),
                          bf16 or f16 (weights converted at load, f32
                          accumulation; attention and routing stay f32).
                          bf16 results differ from f32 ones by about 1e-2
                          relative, f16 ones by about 1e-3 (f16 has three
                          more significant bits but overflows past 65504):
                          compare with --rtol / --atol to match
  --cuda-graphs           for programs compiled with --target cuda, replay
                          each stretch of operations that needs no host
                          (attention, normalisation, routing between MoE
                          layers) as one CUDA graph, captured on the first
                          run; the MoE dispatch and experts still run op by
                          op (their sizes come from the routing)
  --overlap               for partitioned programs compiled with --target
                          cuda, run the work that does not depend on an
                          exchange (the shared expert and its gate) on a
                          second stream while the all-to-all or all-reduce
                          before it moves data; the buffers of moved work
                          live longer, so the arena may grow
  --help                  this text

example:
  moe-compile model.onnx -o model.moe
  moe-run model.moe --inputs x.npy --compare y_ref.npy --iterations 50
)";

std::vector<std::string> splitList(const std::string &text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos)
      end = text.size();
    if (end > start)
      items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

struct Options {
  std::string program;
  std::vector<std::string> inputs, outputs, compare;
  double rtol = 1e-4, atol = 1e-5;
  int warmup = 1, iterations = 10, threads = 1;
  unsigned seed = 0;
  int ranks = 0; ///< 0: as many as the program is partitioned for
  std::string trace, expertLoad;
  std::string gpuTransport = "auto";
  DType gpuPrecision = DType::F32;
  bool cudaGraphs = false;
  bool overlap = false;
};

bool parseNumber(const char *text, double &value) {
  char *end = nullptr;
  value = std::strtod(text, &end);
  return end != text && *end == '\0';
}

int parseArgs(int argc, char **argv, Options &options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char *&text) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "moe-run: %s needs a value\n", arg.c_str());
        return false;
      }
      text = argv[++i];
      return true;
    };
    const char *text = nullptr;
    double number;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--cuda-graphs") {
      options.cudaGraphs = true;
    } else if (arg == "--overlap") {
      options.overlap = true;
    } else if (arg == "--gpu-precision") {
      if (!value(text))
        return 2;
      if (!parseDType(text, options.gpuPrecision) ||
          (options.gpuPrecision != DType::F32 &&
           options.gpuPrecision != DType::BF16 &&
           options.gpuPrecision != DType::F16)) {
        std::fprintf(stderr,
                     "moe-run: --gpu-precision must be f32, bf16 or f16, got "
                     "'%s'\n",
                     text);
        return 2;
      }
    } else if (arg == "--gpu-transport") {
      if (!value(text))
        return 2;
      options.gpuTransport = text;
      if (options.gpuTransport != "auto" && options.gpuTransport != "nccl" &&
          options.gpuTransport != "staged") {
        std::fprintf(stderr,
                     "moe-run: --gpu-transport must be auto, nccl or staged, "
                     "got '%s'\n",
                     text);
        return 2;
      }
    } else if (arg == "--trace" || arg == "--expert-load") {
      if (!value(text))
        return 2;
      (arg == "--trace" ? options.trace : options.expertLoad) = text;
    } else if (arg == "--inputs" || arg == "--outputs" || arg == "--compare") {
      if (!value(text))
        return 2;
      (arg == "--inputs"    ? options.inputs
       : arg == "--outputs" ? options.outputs
                            : options.compare) = splitList(text);
    } else if (arg == "--rtol" || arg == "--atol" || arg == "--warmup" ||
               arg == "--iterations" || arg == "--threads" || arg == "--seed" ||
               arg == "--ranks") {
      if (!value(text))
        return 2;
      bool integer = arg != "--rtol" && arg != "--atol";
      if (!parseNumber(text, number) || number < 0 ||
          (integer && number != std::floor(number))) {
        std::fprintf(stderr, "moe-run: %s needs a non-negative %s, got '%s'\n",
                     arg.c_str(), integer ? "integer" : "number", text);
        return 2;
      }
      if (arg == "--rtol")
        options.rtol = number;
      else if (arg == "--atol")
        options.atol = number;
      else if (arg == "--warmup")
        options.warmup = static_cast<int>(number);
      else if (arg == "--iterations")
        options.iterations = std::max(1, static_cast<int>(number));
      else if (arg == "--threads")
        options.threads = std::max(1, static_cast<int>(number));
      else if (arg == "--ranks")
        options.ranks = std::max(1, static_cast<int>(number));
      else
        options.seed = static_cast<unsigned>(number);
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "moe-run: unknown option '%s' (see --help)\n",
                   arg.c_str());
      return 2;
    } else if (options.program.empty()) {
      options.program = arg;
    } else {
      std::fprintf(stderr, "moe-run: more than one program given ('%s')\n",
                   arg.c_str());
      return 2;
    }
  }
  if (options.program.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  return -1;
}

/// The shape of an input or output over a whole step: the program's shape
/// with the first dimension times the micro-batches.
Shape stepShape(const Program &program, Shape shape) {
  if (!shape.empty())
    shape[0] *= program.microbatches;
  return shape;
}

Tensor randomInput(const Program &program, const InputDecl &input,
                   std::mt19937 &generator) {
  Shape shape = stepShape(program, input.type.shape);
  Tensor values(DType::F64, shape);
  double *data = values.as<double>();
  bool isFloat =
      input.type.dtype == DType::F32 || input.type.dtype == DType::F64 ||
      input.type.dtype == DType::F16 || input.type.dtype == DType::BF16;
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> uniform(0, 7);
  for (int64_t i = 0; i < values.numElements(); ++i)
    data[i] = isFloat ? normal(generator) : uniform(generator);
  Tensor tensor(input.type.dtype, shape);
  convert(values, tensor);
  return tensor;
}

/// Runs one step of the program: once, or once per micro-batch on its slice
/// of the inputs with the outputs joined (every rank in the same order, so
/// the pipeline stages overlap across micro-batches). The same for the CPU
/// and the CUDA executor: `run` runs the program once.
class StepRunner {
public:
  using RunFn = std::function<Status(const std::vector<Tensor> &inputs,
                                     std::vector<const Tensor *> &outputs,
                                     std::vector<OpTiming> *timings)>;
  StepRunner(const Program &program, RunFn run,
             const std::vector<Tensor> &inputs)
      : program_(program), run_(std::move(run)), inputs_(inputs) {
    int64_t count = program.microbatches;
    if (count == 1)
      return;
    slices_.resize(count);
    for (const Tensor &input : inputs) {
      int64_t rows = input.dim(0) / count;
      size_t bytes = input.sizeInBytes() / count;
      for (int64_t m = 0; m < count; ++m) {
        Shape shape = input.shape();
        shape[0] = rows;
        Tensor slice(input.dtype(), shape);
        std::memcpy(slice.data(),
                    static_cast<const char *>(input.data()) + m * bytes, bytes);
        slices_[m].push_back(std::move(slice));
      }
    }
  }

  Status run(std::vector<const Tensor *> &outputs,
             std::vector<OpTiming> *timings = nullptr) {
    if (slices_.empty())
      return run_(inputs_, outputs, timings);
    std::vector<const Tensor *> parts;
    for (size_t m = 0; m < slices_.size(); ++m) {
      if (Status status = run_(slices_[m], parts, timings); !status)
        return status;
      if (whole_.empty())
        for (const Tensor *part : parts)
          whole_.emplace_back(part->dtype(),
                              stepShape(program_, part->shape()));
      for (size_t i = 0; i < parts.size(); ++i)
        std::memcpy(static_cast<char *>(whole_[i].data()) +
                        m * parts[i]->sizeInBytes(),
                    parts[i]->data(), parts[i]->sizeInBytes());
    }
    outputs.clear();
    for (const Tensor &output : whole_)
      outputs.push_back(&output);
    return Status::success();
  }

private:
  const Program &program_;
  RunFn run_;
  const std::vector<Tensor> &inputs_;
  std::vector<std::vector<Tensor>> slices_;
  std::vector<Tensor> whole_;
};

/// Compares with numpy.allclose semantics; prints one line per output.
bool compareOutput(const std::string &name, const Tensor &actual,
                   const Tensor &expected, double rtol, double atol) {
  if (actual.shape() != expected.shape()) {
    std::printf("compare %s: FAIL: shape %s, reference %s\n", name.c_str(),
                formatShape(actual.shape()).c_str(),
                formatShape(expected.shape()).c_str());
    return false;
  }
  Tensor a(DType::F64, actual.shape()), b(DType::F64, expected.shape());
  convert(actual, a);
  convert(expected, b);
  double maxAbs = 0.0, maxRel = 0.0;
  int64_t mismatches = 0, first = -1;
  for (int64_t i = 0; i < a.numElements(); ++i) {
    double x = a.as<double>()[i], y = b.as<double>()[i];
    double diff = std::fabs(x - y);
    bool close = diff <= atol + rtol * std::fabs(y) ||
                 (std::isnan(x) && std::isnan(y)) || x == y;
    if (!close) {
      ++mismatches;
      if (first < 0)
        first = i;
    }
    if (std::isfinite(diff)) {
      maxAbs = std::max(maxAbs, diff);
      if (y != 0.0)
        maxRel = std::max(maxRel, diff / std::fabs(y));
    }
  }
  if (mismatches == 0) {
    std::printf("compare %s: OK (%lld elements, max abs diff %.3g, max rel "
                "diff %.3g, rtol %g, atol %g)\n",
                name.c_str(), static_cast<long long>(a.numElements()), maxAbs,
                maxRel, rtol, atol);
    return true;
  }
  std::printf("compare %s: FAIL: %lld of %lld elements differ (first at "
              "flat index %lld: %.9g vs reference %.9g; max abs diff %.3g)\n",
              name.c_str(), static_cast<long long>(mismatches),
              static_cast<long long>(a.numElements()),
              static_cast<long long>(first), a.as<double>()[first],
              b.as<double>()[first], maxAbs);
  return false;
}

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  double rank = p / 100.0 * (values.size() - 1);
  size_t low = static_cast<size_t>(std::floor(rank));
  size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (rank - low);
}

/// Tokens processed per run: the elements of the first input, without the
/// hidden dimension when it is a float activation ([tokens, hidden]).
int64_t tokensPerRun(const Program &program) {
  if (program.inputs.empty())
    return 1;
  const ValueType &type = program.inputs.front().type;
  int64_t count = numElements(type.shape);
  bool isFloat = type.dtype == DType::F32 || type.dtype == DType::F16 ||
                 type.dtype == DType::BF16 || type.dtype == DType::F64;
  if (isFloat && !type.shape.empty() && type.shape.back() > 0)
    count /= type.shape.back();
  return std::max<int64_t>(count, 1) * program.microbatches;
}

/// Reads a .npy or ONNX TensorProto (.pb) file.
Status readTensorFile(const std::string &path, Tensor &tensor) {
  bool proto = path.size() > 3 && path.compare(path.size() - 3, 3, ".pb") == 0;
  return proto ? readTensorProto(path, tensor) : readNpy(path, tensor);
}

/// Replaces each directory in `files` by its `prefix`_K.pb files (an ONNX
/// test data set); other entries stay as they are.
std::vector<std::string>
expandTestDataSets(const std::vector<std::string> &files,
                   const std::string &prefix) {
  std::vector<std::string> expanded;
  for (const std::string &file : files) {
    struct stat info;
    if (::stat(file.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      for (const std::string &path : listTestDataFiles(file, prefix))
        expanded.push_back(path);
      continue;
    }
    expanded.push_back(file);
  }
  return expanded;
}

/// Writes `text` through a temporary file renamed at the end.
Status writeTextFile(const std::string &path, const std::string &text) {
  std::string temporary = path + ".partial";
  std::FILE *file = std::fopen(temporary.c_str(), "wb");
  bool ok =
      file && std::fwrite(text.data(), 1, text.size(), file) == text.size();
  if (file && std::fclose(file) != 0)
    ok = false;
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    return Status::error("cannot write '" + path + "'");
  }
  return Status::success();
}

/// Operations that move data between ranks go on the communication track.
bool isCommunication(const std::string &op) {
  return op.find("all_to_all") != std::string::npos ||
         op.find("all_reduce") != std::string::npos ||
         op.find("all_gather") != std::string::npos ||
         op.find("reduce_scatter") != std::string::npos ||
         op == "stage_transfer";
}

/// The trace events of one rank: process and track names, then one
/// complete event per operation.
std::string traceEvents(const Program &program,
                        const std::vector<OpTiming> &timings, int rank) {
  char buffer[512];
  std::snprintf(buffer, sizeof(buffer),
                "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": "
                "%d, \"args\": {\"name\": \"rank %d\"}},\n"
                "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, "
                "\"tid\": 0, \"args\": {\"name\": \"compute\"}},\n"
                "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, "
                "\"tid\": 1, \"args\": {\"name\": \"communication\"}}",
                rank, rank, rank, rank);
  std::string json = buffer;
  for (const OpTiming &timing : timings) {
    const Operation &op = program.operations[timing.operation];
    std::snprintf(buffer, sizeof(buffer),
                  ",\n{\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, "
                  "\"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, \"args\": "
                  "{\"line\": %d}}",
                  op.op.c_str(), rank, isCommunication(op.op) ? 1 : 0,
                  timing.startSeconds * 1e6, timing.durationSeconds * 1e6,
                  op.line);
    json += buffer;
  }
  return json;
}

/// One JSON line per moe.dispatch (one per MoE layer): the `counts` result
/// is the number of (token, slot) pairs each expert received.
std::string expertLoadLines(const Executor &executor, int rank) {
  std::string lines;
  int layer = 0;
  for (const Operation &op : executor.program().operations) {
    if (op.op != "dispatch" || op.results.size() < 2)
      continue;
    const Tensor &counts = executor.value(op.results[1]);
    // A partitioned dispatch may number the experts in the order the ranks
    // hold them; report by the model's expert numbers.
    // A replicated expert has several slots: its counts add up.
    std::vector<int64_t> byExpert(counts.as<int64_t>(),
                                  counts.as<int64_t>() + counts.numElements());
    if (const std::vector<int64_t> *order = op.attrs.getArray("expert_order");
        order && order->size() == byExpert.size()) {
      int64_t experts = 0;
      for (int64_t expert : *order)
        experts = std::max(experts, expert + 1);
      byExpert.assign(experts, 0);
      for (size_t slot = 0; slot < order->size(); ++slot)
        if ((*order)[slot] >= 0)
          byExpert[(*order)[slot]] += counts.as<int64_t>()[slot];
    }
    std::string list;
    int64_t total = 0, maximum = 0;
    for (size_t e = 0; e < byExpert.size(); ++e) {
      int64_t count = byExpert[e];
      list += (e ? ", " : "") + std::to_string(count);
      total += count;
      maximum = std::max(maximum, count);
    }
    double mean = counts.numElements()
                      ? static_cast<double>(total) / counts.numElements()
                      : 0.0;
    char buffer[256];
    std::snprintf(buffer, sizeof(buffer),
                  "\"max\": %lld, \"mean\": %.6g, \"max_over_mean\": %.6g}\n",
                  static_cast<long long>(maximum), mean,
                  mean > 0 ? maximum / mean : 0.0);
    lines += "{\"layer\": " + std::to_string(layer++) +
             ", \"rank\": " + std::to_string(rank) +
             ", \"line\": " + std::to_string(op.line) +
             ", \"tokens_per_expert\": [" + list + "], " + buffer;
  }
  return lines;
}

/// Collects every rank's `text` on rank 0, in rank order (other ranks get
/// an empty list).
Status gatherText(Communicator *communicator, const std::string &text,
                  std::vector<std::string> &texts) {
  texts.clear();
  if (!communicator) {
    texts.push_back(text);
    return Status::success();
  }
  if (communicator->rank() != 0) {
    int64_t length = static_cast<int64_t>(text.size());
    Status status = communicator->send(&length, sizeof(length), 0);
    if (status && length > 0)
      status = communicator->send(text.data(), text.size(), 0);
    return status;
  }
  texts.push_back(text);
  for (int peer = 1; peer < communicator->size(); ++peer) {
    int64_t length = 0;
    Status status = communicator->recv(&length, sizeof(length), peer);
    if (!status)
      return status;
    std::string received(static_cast<size_t>(length), '\0');
    if (length > 0 &&
        !(status = communicator->recv(received.data(), received.size(), peer)))
      return status;
    texts.push_back(std::move(received));
  }
  return Status::success();
}

std::string joinLines(const std::vector<std::string> &texts) {
  std::string joined;
  for (const std::string &text : texts)
    joined += text;
  return joined;
}

std::string directoryOf(const std::string &path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

} // namespace

/// Loads and runs the program on one rank; rank 0 reports, compares and
/// writes files. Returns the exit code.
/// The files a run writes, all or nothing: on any failure it removes what
/// the run already wrote.
class OutputFiles {
public:
  /// Notes that `path` was written with `result`; false (after a message
  /// and the removals) when it failed.
  bool record(const std::string &path, const Status &result) {
    if (result) {
      written_.push_back(path);
      return true;
    }
    for (const std::string &done : written_)
      std::remove(done.c_str());
    std::fprintf(stderr, "moe-run: %s\n", result.message.c_str());
    return false;
  }

private:
  std::vector<std::string> written_;
};

/// One rank's loaded program: the CPU executor, or the CUDA one for a
/// program compiled with --target cuda.
class RankProgram {
public:
  /// Loads `program` for the rank of `communicator` (null: the only rank).
  Status load(const Options &options, const Program &program,
              const std::vector<Tensor> &inputs, Communicator *communicator) {
    if (!cuda::isCudaProgram(program)) {
      Status status = Executor::create(program, directoryOf(options.program),
                                       options.threads, cpu_, communicator);
      if (!status)
        return status;
      Executor *cpu = cpu_.get();
      steps_ = std::make_unique<StepRunner>(
          cpu->program(),
          [cpu](const std::vector<Tensor> &stepInputs,
                std::vector<const Tensor *> &outputs,
                std::vector<OpTiming> *timings) {
            return cpu->run(stepInputs, outputs, timings);
          },
          inputs);
      if (communicator)
        transport_ = communicator->transport();
      else if (!program.grids.empty())
        transport_ = "threads"; // the executor's one-rank group
      return Status::success();
    }
#ifdef MOE_RUN_WITH_CUDA
    if (!options.trace.empty() || !options.expertLoad.empty())
      return Status::error("--trace and --expert-load are not supported for "
                           "programs compiled with --target cuda yet");
    int devices = cuda::deviceCount();
    // The rank among this machine's ranks picks the GPU: the launcher's
    // local rank for processes, the rank for threads of one process.
    int local = communicator ? communicator->rank() : 0;
    LaunchEnvironment launch;
    if (Status status = readLaunchEnvironment(launch);
        status && launch.size > 1 && launch.localRank >= 0)
      local = launch.localRank;
    device_ = devices > 0 ? local % devices : 0;
    cuda::CudaOptions gpuOptions;
    gpuOptions.feedForwardType = options.gpuPrecision;
    gpuOptions.graphs = options.cudaGraphs;
    gpuOptions.overlap = options.overlap;
    if (options.gpuPrecision != DType::F32)
      precisionNote_ = std::string(", ") + dtypeName(options.gpuPrecision) +
                       " feed-forward GEMMs";
    if (devices == 0) // The executor says why it needs a GPU.
      return cuda::CudaExecutor::create(program, directoryOf(options.program),
                                        device_, gpu_, nullptr, gpuOptions);
    // A partitioned program's collectives need a communicator of device
    // memory; so does `--gpu-transport nccl` on one rank (its grid of one).
    std::string transport = options.gpuTransport;
    if (!program.grids.empty() || transport == "nccl") {
      if (!communicator) {
        if (Status status =
                createThreadGroup(1, CommunicatorOptions(), bootstrap_);
            !status)
          return status;
        communicator = bootstrap_[0].get();
      }
      // NCCL needs a GPU per rank; the ranks agree on the transport, since
      // each creates its communicator collectively.
#ifdef MOE_RUN_WITH_NCCL
      int64_t ownGpu = local < devices ? 1 : 0;
#else
      int64_t ownGpu = 0;
#endif
      if (Status status = communicator->allReduce(&ownGpu, &ownGpu, 1,
                                                  DType::I64, ReduceOp::Min);
          !status)
        return status;
      if (transport == "auto")
        transport = ownGpu ? "nccl" : "staged";
      if (transport == "nccl") {
#ifdef MOE_RUN_WITH_NCCL
        if (!ownGpu)
          return Status::error(
              "--gpu-transport nccl needs a GPU per rank, but ranks share "
              "this machine's " +
              std::to_string(devices) +
              " GPU(s) (NCCL refuses two ranks on one device); use "
              "--gpu-transport staged");
        if (Status status = createNCCLCommunicator(
                *communicator, device_, CommunicatorOptions(), deviceWorld_);
            !status)
          return status;
#else
        return Status::error("--gpu-transport nccl: this moe-run was built "
                             "without NCCL (CMake found no nccl.h / "
                             "libnccl); use --gpu-transport staged");
#endif
      } else {
        deviceWorld_ = cuda::stagedDeviceCommunicator(*communicator);
      }
      transport_ = deviceWorld_->transport();
    }
    if (Status status = cuda::CudaExecutor::create(
            program, directoryOf(options.program), device_, gpu_,
            deviceWorld_.get(), gpuOptions);
        !status)
      return status;
    cuda::CudaExecutor *gpu = gpu_.get();
    std::vector<Tensor> *owned = &gpuOutputs_;
    steps_ = std::make_unique<StepRunner>(
        gpu->program(),
        [gpu, owned](const std::vector<Tensor> &stepInputs,
                     std::vector<const Tensor *> &outputs,
                     std::vector<OpTiming> *) {
          if (Status status = gpu->run(stepInputs, *owned); !status)
            return status;
          outputs.clear();
          for (const Tensor &output : *owned)
            outputs.push_back(&output);
          return Status::success();
        },
        inputs);
    return Status::success();
#else
    (void)inputs;
    return Status::error(
        "the program was compiled with --target cuda, but this moe-run was "
        "built without the CUDA backend (CMake found no CUDA compiler); "
        "rebuild with the CUDA toolkit, or compile the model with --target "
        "cpu");
#endif
  }

  /// One step (all micro-batches) on the inputs given to load().
  Status run(std::vector<const Tensor *> &outputs,
             std::vector<OpTiming> *timings = nullptr) {
    if (!steps_)
      return Status::error("the program is not loaded");
    return steps_->run(outputs, timings);
  }

  /// Fails the job's device communicator too, so that ranks waiting in
  /// NCCL stop (the host communicator is the caller's to abort).
  void abort(const std::string &reason) {
#ifdef MOE_RUN_WITH_CUDA
    if (deviceWorld_)
      deviceWorld_->abort(reason);
#endif
  }

  /// The CUDA graphs a GPU rank replays (0 on the CPU).
  int graphs() const {
#ifdef MOE_RUN_WITH_CUDA
    if (gpu_)
      return gpu_->graphs();
#endif
    return 0;
  }

  /// The operations a GPU rank overlaps with collectives (0 on the CPU).
  int overlapped() const {
#ifdef MOE_RUN_WITH_CUDA
    if (gpu_)
      return gpu_->overlapped();
#endif
    return 0;
  }

  /// The CPU executor (null for a CUDA program).
  const Executor *cpu() const { return cpu_.get(); }

  /// "12.3 MB of weights" and, on a GPU, its arena and device.
  std::string describe() const {
    char text[256];
    if (cpu_) {
      std::snprintf(text, sizeof(text), "%.1f MB of weights",
                    cpu_->weightBytes() / 1e6);
      return text;
    }
#ifdef MOE_RUN_WITH_CUDA
    std::snprintf(text, sizeof(text),
                  "%.1f MB of weights and a %.1f MB activation arena on %s "
                  "(GPU %d%s; %d of %zu kernel modules from their cubin)",
                  gpu_->weightBytes() / 1e6, gpu_->arenaBytes() / 1e6,
                  gpu_->deviceName().c_str(), device_, precisionNote_.c_str(),
                  gpu_->modulesFromCubin(), gpu_->program().gpuModules.size());
    return text;
#else
    return "";
#endif
  }

  /// How collectives travel: the host transport, or for GPU ranks the
  /// device one ("nccl", "threads, staged").
  const std::string &transport() const { return transport_; }

private:
  std::unique_ptr<Executor> cpu_;
  std::unique_ptr<StepRunner> steps_;
  std::string transport_ = "none";
#ifdef MOE_RUN_WITH_CUDA
  int device_ = 0;
  /// ", bf16 feed-forward GEMMs" in the report, or nothing for f32.
  std::string precisionNote_;
  // Destroyed in reverse: the executor, its device world, the bootstrap.
  std::vector<std::unique_ptr<Communicator>> bootstrap_;
  std::unique_ptr<Communicator> deviceWorld_;
  std::unique_ptr<cuda::CudaExecutor> gpu_;
  std::vector<Tensor> gpuOutputs_;
#endif
};

int runRank(const Options &options, const Program &program,
            const std::vector<Tensor> &inputs,
            const std::vector<Tensor> &references, Communicator *communicator) {
  int rank = communicator ? communicator->rank() : 0;
  int size = communicator ? communicator->size() : 1;
  bool leader = rank == 0;
  // A failing rank stops the others instead of leaving them waiting.
  RankProgram executor;
  auto fail = [&](const Status &status) {
    executor.abort(status.message);
    if (communicator)
      communicator->abort(status.message);
    std::string prefix = size > 1 ? "rank " + std::to_string(rank) + ": " : "";
    std::fprintf(stderr, "moe-run: %s%s\n", prefix.c_str(),
                 status.message.c_str());
    return 1;
  };
  auto loadStart = std::chrono::steady_clock::now();
  Status status = executor.load(options, program, inputs, communicator);
  if (!status)
    return fail(status);
  double loadSeconds = std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - loadStart)
                           .count();
  const Program &loaded = program;
  if (leader) {
    std::printf("moe-run: %s: %zu inputs, %zu operations, %s, loaded in "
                "%.3f s\n",
                options.program.c_str(), loaded.inputs.size(),
                loaded.operations.size(), executor.describe().c_str(),
                loadSeconds);
    if (size > 1 && loaded.grids.empty())
      std::printf("ranks: %d (%s transport); the program is not "
                  "partitioned: every rank runs all of it\n",
                  size, communicator->transport());
    else if (!loaded.grids.empty() && executor.transport() != "none")
      std::printf("ranks: %d (%s transport); partitioned program (grid "
                  "'%s' of shape %s)\n",
                  size, executor.transport().c_str(),
                  loaded.grids[0].name.c_str(),
                  formatShape(loaded.grids[0].shape).c_str());
    if (loaded.microbatches > 1)
      std::printf("micro-batches: %lld per step (the program computes one; "
                  "inputs are cut along their first dimension)\n",
                  static_cast<long long>(loaded.microbatches));
  }

  RankProgram &step = executor;
  std::vector<const Tensor *> outputs;
  for (int i = 0; i < options.warmup; ++i) {
    status = step.run(outputs);
    if (!status) {
      return fail(status);
    }
  }
  // Ranks start each timed run together; a run takes as long as its slowest
  // rank.
  std::vector<double> latencies;
  for (int i = 0; i < options.iterations; ++i) {
    if (communicator && !(status = communicator->barrier()))
      return fail(status);
    auto start = std::chrono::steady_clock::now();
    if (!(status = step.run(outputs)))
      return fail(status);
    int64_t nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
    if (communicator &&
        !(status = communicator->allReduce(&nanoseconds, &nanoseconds, 1,
                                           DType::I64, ReduceOp::Max)))
      return fail(status);
    latencies.push_back(nanoseconds * 1e-9);
  }
  double p50 = percentile(latencies, 50);
  if (leader)
    std::printf("latency: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms over %d "
                "iterations (%d threads)\n",
                p50 * 1e3, percentile(latencies, 90) * 1e3,
                percentile(latencies, 99) * 1e3, options.iterations,
                options.threads);
  if (leader)
    std::printf("throughput: %.1f tokens/s (%lld tokens per run)\n",
                tokensPerRun(loaded) / p50,
                static_cast<long long>(tokensPerRun(loaded)));
  if (leader && options.cudaGraphs)
    std::printf("cuda graphs: %d stretches of operations replayed as "
                "graphs\n",
                executor.graphs());
  if (leader && options.overlap)
    std::printf("overlap: %d operations run on a second stream during the "
                "collectives before them\n",
                executor.overlapped());

  std::string traceText;
  if (!options.trace.empty()) {
    // A separate run, so recording does not disturb the latencies above.
    std::vector<OpTiming> timings;
    status = step.run(outputs, &timings);
    if (!status) {
      return fail(status);
    }
    std::vector<std::string> ranksEvents;
    if (!(status = gatherText(communicator, traceEvents(loaded, timings, rank),
                              ranksEvents)))
      return fail(status);
    traceText = "{\"traceEvents\": [\n";
    for (size_t r = 0; r < ranksEvents.size(); ++r)
      traceText += (r ? ",\n" : "") + ranksEvents[r];
    traceText += "\n]}\n";
  }
  std::vector<std::string> loadLines;
  if (!options.expertLoad.empty() &&
      !(status = gatherText(communicator,
                            expertLoadLines(*executor.cpu(), rank), loadLines)))
    return fail(status);

  // Every rank ran the same program on the same inputs: their outputs must
  // be identical bit for bit.
  if (size > 1) {
    for (const Tensor *output : outputs) {
      if (!leader) {
        if (!(status = communicator->send(*output, 0)))
          return fail(status);
        continue;
      }
      for (int peer = 1; peer < size; ++peer) {
        Tensor received(output->dtype(), output->shape());
        if (!(status = communicator->recv(received, peer)))
          return fail(status);
        if (std::memcmp(received.data(), output->data(),
                        output->sizeInBytes()) != 0) {
          std::printf("ranks: FAIL: rank %d computed other outputs than "
                      "rank 0\n",
                      peer);
          return 1;
        }
      }
    }
    if (leader)
      std::printf("ranks: all %d ranks computed identical outputs\n", size);
  }
  if (!leader)
    return 0;

  bool allClose = true;
  for (size_t i = 0; i < references.size(); ++i)
    allClose &= compareOutput(loaded.outputs[i].name, *outputs[i],
                              references[i], options.rtol, options.atol);
  if (!allClose)
    return 1;

  OutputFiles files;
  for (size_t i = 0; i < options.outputs.size(); ++i)
    if (!files.record(options.outputs[i],
                      writeNpy(options.outputs[i], *outputs[i])))
      return 1;
  if (!options.trace.empty() &&
      !files.record(options.trace, writeTextFile(options.trace, traceText)))
    return 1;
  if (!options.expertLoad.empty() &&
      !files.record(options.expertLoad,
                    writeTextFile(options.expertLoad, joinLines(loadLines))))
    return 1;
  return 0;
}

int main(int argc, char **argv) {
  Options options;
  int parsed = parseArgs(argc, argv, options);
  if (parsed >= 0)
    return parsed;

  Program program;
  Status status = readProgram(options.program, program);
  if (!status) {
    std::fprintf(stderr, "moe-run: %s\n", status.message.c_str());
    return 1;
  }
  if (!(status = checkFitsInMemory(program))) {
    std::fprintf(stderr, "moe-run: %s: %s\n", options.program.c_str(),
                 status.message.c_str());
    return 1;
  }
  // A GPU flag on a CPU program would change nothing; a run that silently
  // ignored --gpu-precision bf16 would report f32 figures as bf16 ones.
  if (!cuda::isCudaProgram(program)) {
    std::string gpuFlags;
    int count = 0;
    auto note = [&](bool set, const char *flag) {
      if (set)
        gpuFlags += std::string(count++ ? ", " : "") + flag;
    };
    note(options.gpuTransport != "auto", "--gpu-transport");
    note(options.gpuPrecision != DType::F32, "--gpu-precision");
    note(options.cudaGraphs, "--cuda-graphs");
    note(options.overlap, "--overlap");
    if (!gpuFlags.empty()) {
      std::fprintf(stderr,
                   "moe-run: %s %s to programs compiled with moe-compile "
                   "--target cuda, but %s was compiled for the CPU\n",
                   gpuFlags.c_str(), count > 1 ? "apply" : "applies",
                   options.program.c_str());
      return 2;
    }
  }
  options.inputs = expandTestDataSets(options.inputs, "input");
  options.compare = expandTestDataSets(options.compare, "output");
  auto checkCount = [&](const std::vector<std::string> &files, size_t want,
                        const char *flag, const char *what) {
    if (!files.empty() && files.size() != want) {
      std::fprintf(stderr,
                   "moe-run: %s has %zu files but the program has %zu "
                   "%s\n",
                   flag, files.size(), want, what);
      return false;
    }
    return true;
  };
  if (!checkCount(options.inputs, program.inputs.size(), "--inputs",
                  "inputs") ||
      !checkCount(options.outputs, program.outputs.size(), "--outputs",
                  "outputs") ||
      !checkCount(options.compare, program.outputs.size(), "--compare",
                  "outputs"))
    return 1;

  // Read every file before running, so bad input fails fast.
  std::vector<Tensor> inputs;
  std::mt19937 generator(options.seed);
  for (size_t i = 0; i < program.inputs.size(); ++i) {
    const InputDecl &decl = program.inputs[i];
    if (options.inputs.empty()) {
      inputs.push_back(randomInput(program, decl, generator));
      continue;
    }
    Tensor tensor;
    status = readTensorFile(options.inputs[i], tensor);
    Shape needed = stepShape(program, decl.type.shape);
    if (status && tensor.shape() != needed)
      status = Status::error(
          "'" + options.inputs[i] + "' has shape " +
          formatShape(tensor.shape()) + " but input '" + decl.name +
          "' needs " + formatShape(needed) +
          (program.microbatches > 1
               ? " (" + std::to_string(program.microbatches) +
                     " micro-batches of " + formatShape(decl.type.shape) + ")"
               : std::string()));
    if (status && tensor.dtype() != decl.type.dtype)
      status = Status::error(
          "'" + options.inputs[i] + "' holds " + dtypeName(tensor.dtype()) +
          " but input '" + decl.name + "' needs " + dtypeName(decl.type.dtype));
    if (!status) {
      std::fprintf(stderr, "moe-run: %s\n", status.message.c_str());
      return 1;
    }
    inputs.push_back(std::move(tensor));
  }
  std::vector<Tensor> references;
  for (const std::string &path : options.compare) {
    Tensor tensor;
    status = readTensorFile(path, tensor);
    if (!status) {
      std::fprintf(stderr, "moe-run: %s\n", status.message.c_str());
      return 1;
    }
    references.push_back(std::move(tensor));
  }

  LaunchEnvironment launch;
  if (!(status = readLaunchEnvironment(launch))) {
    std::fprintf(stderr, "moe-run: %s\n", status.message.c_str());
    return 1;
  }
  if (options.ranks == 0)
    options.ranks = launch.size > 1 ? 1 : Executor::ranksOf(program);
  if (options.ranks > 1 && launch.size > 1) {
    std::fprintf(stderr,
                 "moe-run: --ranks %d cannot be combined with a %s launch "
                 "of %d processes; use one or the other\n",
                 options.ranks, launch.launcher.c_str(), launch.size);
    return 2;
  }
  CommunicatorOptions communicatorOptions;
  if (launch.size > 1) {
#ifdef MOE_RUN_WITH_MPI
    std::unique_ptr<Communicator> world;
    if (!(status = createMPIWorldCommunicator(communicatorOptions, world))) {
      std::fprintf(stderr, "moe-run: %s\n", status.message.c_str());
      return 1;
    }
    return runRank(options, program, inputs, references, world.get());
#else
    std::fprintf(stderr,
                 "moe-run: launched as rank %d of %d by %s, but this moe-run "
                 "was built without MPI (install libopenmpi-dev and "
                 "rebuild)\n",
                 launch.rank, launch.size, launch.launcher.c_str());
    return 1;
#endif
  }
  if (options.ranks == 1)
    return runRank(options, program, inputs, references, nullptr);
  std::vector<std::unique_ptr<Communicator>> ranks;
  if (!(status =
            createThreadGroup(options.ranks, communicatorOptions, ranks))) {
    std::fprintf(stderr, "moe-run: %s\n", status.message.c_str());
    return 1;
  }
  std::vector<int> exitCodes(options.ranks, 0);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < options.ranks; ++rank)
    threads.emplace_back([&, rank] {
      exitCodes[rank] =
          runRank(options, program, inputs, references, ranks[rank].get());
    });
  for (std::thread &thread : threads)
    thread.join();
  return *std::max_element(exitCodes.begin(), exitCodes.end());
}
