//===- MachineDescription.cpp - presets and JSON machine files ------------===//
//
// Part of moe-compiler.
//
// Preset figures are public spec-sheet numbers (dense, without sparsity);
// the planner ranks plans, so what matters is that the ratios between
// compute, memory and links are right, not that a kernel reaches the peak.
// Link latencies are the per-step figures of NCCL's own cost model
// (src/graph/tuning.cc, hwLat, Ring/Simple protocol: NVLink 3.4 us, PCI
// 5.7 us, network 14 us), since the collective formulas in CostModel.cpp
// charge one latency per ring or exchange step as NCCL's model does.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/MachineDescription.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cmath>

using namespace llvm;
using namespace moe::plan;

//===----------------------------------------------------------------------===//
// Data types
//===----------------------------------------------------------------------===//

StringRef moe::plan::dataTypeName(DataType type) {
  switch (type) {
  case DataType::FP32:
    return "fp32";
  case DataType::BF16:
    return "bf16";
  case DataType::FP16:
    return "fp16";
  case DataType::FP8:
    return "fp8";
  }
  llvm_unreachable("unknown data type");
}

std::optional<DataType> moe::plan::parseDataType(StringRef name) {
  for (DataType type :
       {DataType::FP32, DataType::BF16, DataType::FP16, DataType::FP8})
    if (name == dataTypeName(type))
      return type;
  return std::nullopt;
}

int64_t moe::plan::dataTypeBytes(DataType type) {
  switch (type) {
  case DataType::FP32:
    return 4;
  case DataType::BF16:
  case DataType::FP16:
    return 2;
  case DataType::FP8:
    return 1;
  }
  llvm_unreachable("unknown data type");
}

//===----------------------------------------------------------------------===//
// Presets
//===----------------------------------------------------------------------===//

namespace {

constexpr double kGB = 1e9;
constexpr double kTera = 1e12;
constexpr double kMicrosecond = 1e-6;

/// One GPU model and the links of the servers it comes in.
struct GPUSpec {
  StringRef name;
  double memoryBytes;
  double memoryBandwidth;
  double bf16Flops, fp16Flops, fp8Flops, fp32Flops;
  LinkSpec intraNode;
  /// Zero bandwidth: no multi-node preset.
  LinkSpec interNode;
};

// NVLink 4 (H100 / H200 SXM): 900 GB/s bidirectional per GPU, i.e. 450 GB/s
// each way (NVIDIA H100 Tensor Core GPU datasheet).
constexpr LinkSpec kNVLink4 = {450 * kGB, 3.4 * kMicrosecond};
// InfiniBand NDR, one 400 Gb/s ConnectX-7 per GPU as in DGX H100 / H200:
// 50 GB/s each way per GPU.
constexpr LinkSpec kInfiniBandNDR = {50 * kGB, 14 * kMicrosecond};
// PCIe Gen4 x16: 16 GT/s x 16 lanes x 128/130 encoding = 31.5 GB/s each way.
constexpr LinkSpec kPCIeGen4x16 = {31.5 * kGB, 5.7 * kMicrosecond};

const GPUSpec kGPUs[] = {
    // H200 SXM datasheet: 141 GB HBM3e at 4.8 TB/s; compute as H100 SXM.
    {"H200", 141 * kGB, 4800 * kGB, 989 * kTera, 989 * kTera, 1979 * kTera,
     67 * kTera, kNVLink4, kInfiniBandNDR},
    // H100 SXM datasheet: 80 GB HBM3 at 3.35 TB/s; dense BF16/FP16 989.4,
    // FP8 1978.9, FP32 (no TF32, cuBLAS's default) 67 TFLOP/s.
    {"H100", 80 * kGB, 3350 * kGB, 989 * kTera, 989 * kTera, 1979 * kTera,
     67 * kTera, kNVLink4, kInfiniBandNDR},
    // L40S datasheet: 48 GB GDDR6 at 864 GB/s; dense BF16/FP16 362.05,
    // FP8 733, FP32 91.6 TFLOP/s; PCIe Gen4 x16, no NVLink.
    {"L40S",
     48 * kGB,
     864 * kGB,
     362 * kTera,
     362 * kTera,
     733 * kTera,
     91.6 * kTera,
     kPCIeGen4x16,
     {0, 0}},
};

constexpr int64_t kMaxGPUsPerNode = 8;
constexpr int64_t kMaxNodes = 4096;
constexpr int64_t kMaxCPURanks = 1024;

// cpu:N measures nothing at plan time; these conservative defaults can be
// overridden by a JSON file with "base": "cpu:N". Per rank: 50 GFLOP/s
// whatever the element type (the CPU runtime computes in fp32 and converts
// bf16/fp16 weights at load), 10 GB/s of memory bandwidth, 8 GB of memory;
// ranks exchange through shared memory at 5 GB/s with 2 us per message.
constexpr double kCPUFlops = 50e9;
constexpr double kCPUMemoryBandwidth = 10 * kGB;
constexpr double kCPUMemoryBytes = 8 * kGB;
constexpr LinkSpec kCPUSharedMemory = {5 * kGB, 2 * kMicrosecond};

Error presetError(StringRef name, const Twine &why) {
  return createStringError(
      inconvertibleErrorCode(),
      formatv("unknown machine preset '{0}': {1}; presets are {2}", name, why,
              join(listMachinePresets(), ", "))
          .str());
}

Expected<MachineDescription> cpuPreset(StringRef name, StringRef count) {
  int64_t ranks = 0;
  if (count.getAsInteger(10, ranks) || ranks < 1 || ranks > kMaxCPURanks)
    return presetError(name,
                       formatv("cpu:N needs 1 <= N <= {0}", kMaxCPURanks));
  MachineDescription machine;
  machine.name = name.str();
  machine.numNodes = 1;
  machine.devicesPerNode = ranks;
  machine.memoryBytesPerDevice = kCPUMemoryBytes;
  machine.memoryBandwidthBytesPerSecond = kCPUMemoryBandwidth;
  machine.peakFlopsPerSecond.fill(kCPUFlops);
  machine.intraNode = kCPUSharedMemory;
  machine.interNode = kCPUSharedMemory;
  machine.cpuRanks = true;
  return machine;
}

} // namespace

std::vector<std::string> moe::plan::listMachinePresets() {
  return {"8xH200", "2x8xH100", "32x8xH100",
          "4xL40S", "cpu:N",    "[NODESx]DEVICESx{H200,H100,L40S}"};
}

Expected<MachineDescription> moe::plan::getMachinePreset(StringRef name) {
  if (name.starts_with("cpu:"))
    return cpuPreset(name, name.drop_front(4));

  SmallVector<StringRef, 3> parts;
  name.split(parts, 'x');
  if (parts.size() != 2 && parts.size() != 3)
    return presetError(name, "expected cpu:N or [NODESx]DEVICESxGPU");
  int64_t nodes = 1, devices = 0;
  if (parts.size() == 3 &&
      (parts[0].getAsInteger(10, nodes) || nodes < 1 || nodes > kMaxNodes))
    return presetError(name,
                       formatv("the node count must be 1 to {0}", kMaxNodes));
  StringRef deviceCount = parts[parts.size() - 2];
  if (deviceCount.getAsInteger(10, devices) || devices < 1 ||
      devices > kMaxGPUsPerNode)
    return presetError(
        name, formatv("the GPUs per node must be 1 to {0}", kMaxGPUsPerNode));
  StringRef gpuName = parts.back();
  const GPUSpec *gpu = find_if(kGPUs, [&](const GPUSpec &spec) {
    return spec.name.equals_insensitive(gpuName);
  });
  if (gpu == std::end(kGPUs))
    return presetError(name, formatv("no GPU named '{0}'", gpuName));
  if (nodes > 1 && gpu->interNode.bandwidthBytesPerSecond == 0)
    return presetError(name, formatv("{0} presets are single-node; describe a "
                                     "cluster of them in a JSON machine file",
                                     gpu->name));

  MachineDescription machine;
  machine.name = name.str();
  machine.numNodes = nodes;
  machine.devicesPerNode = devices;
  machine.memoryBytesPerDevice = gpu->memoryBytes;
  machine.memoryBandwidthBytesPerSecond = gpu->memoryBandwidth;
  machine.peakFlopsPerSecond[static_cast<size_t>(DataType::BF16)] =
      gpu->bf16Flops;
  machine.peakFlopsPerSecond[static_cast<size_t>(DataType::FP16)] =
      gpu->fp16Flops;
  machine.peakFlopsPerSecond[static_cast<size_t>(DataType::FP8)] =
      gpu->fp8Flops;
  machine.peakFlopsPerSecond[static_cast<size_t>(DataType::FP32)] =
      gpu->fp32Flops;
  machine.intraNode = gpu->intraNode;
  // GPUs without a multi-node preset get the intra-node figures, so that a
  // JSON file starting from them can add nodes after giving "inter_node".
  machine.interNode = gpu->interNode.bandwidthBytesPerSecond > 0
                          ? gpu->interNode
                          : gpu->intraNode;
  return machine;
}

//===----------------------------------------------------------------------===//
// JSON
//===----------------------------------------------------------------------===//

namespace {

/// Reads fields of one JSON object, reporting errors as
/// "FILE: field 'PATH': WHAT".
class FieldReader {
public:
  FieldReader(StringRef fileName) : fileName(fileName) {}

  Error error(const Twine &field, const Twine &what) const {
    return createStringError(
        inconvertibleErrorCode(),
        formatv("{0}: field '{1}': {2}", fileName, field.str(), what.str())
            .str());
  }

  /// Fails on a key outside `known`, which usually is a typo.
  Error checkKnown(const json::Object &object, StringRef path,
                   ArrayRef<StringRef> known) const {
    SmallVector<std::string> keys;
    for (const auto &entry : object)
      keys.push_back(entry.first.str());
    sort(keys);
    for (const std::string &key : keys)
      if (!is_contained(known, key))
        return error(
            path.empty() ? Twine(key) : path + "." + key,
            formatv("unknown field; expected one of {0}", join(known, ", ")));
    return Error::success();
  }

  /// A number > 0 (or >= 0 with `allowZero`), scaled by `scale`.
  Error readPositive(const json::Object &object, StringRef key, StringRef path,
                     double scale, double &out, bool allowZero = false) const {
    const json::Value *value = object.get(key);
    if (!value)
      return Error::success();
    std::string field = path.empty() ? key.str() : (path + "." + key).str();
    std::optional<double> number = value->getAsNumber();
    if (!number || !std::isfinite(*number) || *number < 0 ||
        (!allowZero && *number == 0))
      return error(field, formatv("expected a {0} number, got {1}",
                                  allowZero ? "non-negative" : "positive",
                                  render(*value)));
    out = *number * scale;
    return Error::success();
  }

  Error readCount(const json::Object &object, StringRef key, int64_t limit,
                  int64_t &out) const {
    const json::Value *value = object.get(key);
    if (!value)
      return Error::success();
    std::optional<int64_t> number = value->getAsInteger();
    if (!number || *number < 1 || *number > limit)
      return error(key, formatv("expected an integer from 1 to {0}, got {1}",
                                limit, render(*value)));
    out = *number;
    return Error::success();
  }

  Error readLink(const json::Object &object, StringRef key,
                 LinkSpec &link) const {
    const json::Value *value = object.get(key);
    if (!value)
      return Error::success();
    const json::Object *linkObject = value->getAsObject();
    if (!linkObject)
      return error(key, formatv("expected an object with bandwidth_gb_per_s "
                                "and latency_us, got {0}",
                                render(*value)));
    if (Error err =
            checkKnown(*linkObject, key, {"bandwidth_gb_per_s", "latency_us"}))
      return err;
    if (Error err = readPositive(*linkObject, "bandwidth_gb_per_s", key, kGB,
                                 link.bandwidthBytesPerSecond))
      return err;
    return readPositive(*linkObject, "latency_us", key, kMicrosecond,
                        link.latencySeconds, /*allowZero=*/true);
  }

  static std::string render(const json::Value &value) {
    std::string text;
    raw_string_ostream os(text);
    os << value;
    return text;
  }

private:
  StringRef fileName;
};

} // namespace

Expected<MachineDescription>
moe::plan::parseMachineDescription(StringRef text, StringRef fileName) {
  Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return createStringError(inconvertibleErrorCode(),
                             formatv("{0}: not valid JSON: {1}", fileName,
                                     toString(parsed.takeError()))
                                 .str());
  const json::Object *object = parsed->getAsObject();
  if (!object)
    return createStringError(
        inconvertibleErrorCode(),
        formatv("{0}: expected a JSON object describing the machine", fileName)
            .str());

  FieldReader reader(fileName);
  if (Error err = reader.checkKnown(*object, "",
                                    {"name", "base", "nodes",
                                     "devices_per_node", "memory_per_device_gb",
                                     "memory_bandwidth_gb_per_s", "peak_tflops",
                                     "intra_node", "inter_node", "cores"}))
    return std::move(err);

  MachineDescription machine;
  // Whether the base preset has a real inter-node link (cpu:N and L40S
  // presets are single-node and carry their intra-node figures there).
  bool baseHasInterNode = false;
  if (const json::Value *base = object->get("base")) {
    std::optional<StringRef> baseName = base->getAsString();
    if (!baseName)
      return reader.error("base", "expected a preset name string");
    Expected<MachineDescription> preset = getMachinePreset(*baseName);
    if (!preset)
      return reader.error("base", toString(preset.takeError()));
    machine = std::move(*preset);
    baseHasInterNode =
        machine.numNodes > 1 || machine.interNode.bandwidthBytesPerSecond !=
                                    machine.intraNode.bandwidthBytesPerSecond;
  } else {
    // Without a base every field must be given; report the first missing.
    for (StringRef required :
         {"nodes", "devices_per_node", "memory_per_device_gb",
          "memory_bandwidth_gb_per_s", "peak_tflops", "intra_node"})
      if (!object->get(required))
        return reader.error(required, "missing (give it, or start from a "
                                      "preset with \"base\")");
  }

  machine.name = sys::path::stem(fileName).str();
  if (const json::Value *name = object->get("name")) {
    std::optional<StringRef> nameString = name->getAsString();
    if (!nameString)
      return reader.error("name", "expected a string");
    machine.name = nameString->str();
  }
  if (Error err =
          reader.readCount(*object, "nodes", kMaxNodes, machine.numNodes))
    return std::move(err);
  if (Error err = reader.readCount(*object, "devices_per_node", kMaxCPURanks,
                                   machine.devicesPerNode))
    return std::move(err);
  if (Error err = reader.readPositive(*object, "memory_per_device_gb", "", kGB,
                                      machine.memoryBytesPerDevice))
    return std::move(err);
  if (Error err =
          reader.readPositive(*object, "memory_bandwidth_gb_per_s", "", kGB,
                              machine.memoryBandwidthBytesPerSecond))
    return std::move(err);

  if (const json::Value *peaks = object->get("peak_tflops")) {
    const json::Object *peakObject = peaks->getAsObject();
    if (!peakObject)
      return reader.error("peak_tflops",
                          "expected an object like {\"bf16\": 989}");
    if (Error err = reader.checkKnown(*peakObject, "peak_tflops",
                                      {"fp32", "bf16", "fp16", "fp8"}))
      return std::move(err);
    for (const auto &entry : *peakObject) {
      DataType type = *parseDataType(entry.first);
      if (Error err = reader.readPositive(
              *peakObject, entry.first, "peak_tflops", kTera,
              machine.peakFlopsPerSecond[static_cast<size_t>(type)],
              /*allowZero=*/true))
        return std::move(err);
    }
  }
  if (none_of(machine.peakFlopsPerSecond,
              [](double flops) { return flops > 0; }))
    return reader.error("peak_tflops", "no data type has a positive peak");

  if (Error err =
          reader.readCount(*object, "cores", kMaxCPURanks, machine.cores))
    return std::move(err);
  if (Error err = reader.readLink(*object, "intra_node", machine.intraNode))
    return std::move(err);
  if (!object->get("inter_node") && !baseHasInterNode) {
    if (machine.numNodes > 1)
      return reader.error("inter_node",
                          "missing; a machine with several nodes needs it");
    machine.interNode = machine.intraNode;
  }
  if (Error err = reader.readLink(*object, "inter_node", machine.interNode))
    return std::move(err);
  // A link object may give only one of its two fields when it starts from a
  // preset, but the result must have a bandwidth.
  if (machine.intraNode.bandwidthBytesPerSecond <= 0)
    return reader.error("intra_node.bandwidth_gb_per_s", "missing");
  if (machine.interNode.bandwidthBytesPerSecond <= 0)
    return reader.error("inter_node.bandwidth_gb_per_s", "missing");
  return machine;
}

Expected<MachineDescription> moe::plan::loadMachineDescription(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return createStringError(buffer.getError(),
                             formatv("{0}: cannot read the machine file: {1}",
                                     path, buffer.getError().message())
                                 .str());
  return parseMachineDescription((*buffer)->getBuffer(), path);
}

Expected<MachineDescription> moe::plan::resolveMachine(StringRef nameOrPath) {
  if (nameOrPath.ends_with(".json") || nameOrPath.contains('/'))
    return loadMachineDescription(nameOrPath);
  return getMachinePreset(nameOrPath);
}

json::Value moe::plan::toJSON(const MachineDescription &machine) {
  json::Object peaks;
  for (DataType type :
       {DataType::FP32, DataType::BF16, DataType::FP16, DataType::FP8})
    peaks[dataTypeName(type)] = machine.peakFlops(type) / kTera;
  auto link = [](const LinkSpec &spec) {
    return json::Object{
        {"bandwidth_gb_per_s", spec.bandwidthBytesPerSecond / kGB},
        {"latency_us", spec.latencySeconds / kMicrosecond}};
  };
  json::Object object{
      {"name", machine.name},
      {"nodes", machine.numNodes},
      {"devices_per_node", machine.devicesPerNode},
      {"memory_per_device_gb", machine.memoryBytesPerDevice / kGB},
      {"memory_bandwidth_gb_per_s",
       machine.memoryBandwidthBytesPerSecond / kGB},
      {"peak_tflops", std::move(peaks)},
      {"intra_node", link(machine.intraNode)},
      {"inter_node", link(machine.interNode)},
  };
  if (machine.cores > 0)
    object["cores"] = machine.cores;
  return object;
}
