//===- MachineDescription.h - devices, links and their speeds ---*- C++ -*-===//
//
// Part of moe-compiler.
//
// What the planner knows about a machine: how many nodes and devices, how much
// memory each device has, how fast it computes and reads memory, and the
// bandwidth and latency of the links inside a node and between nodes. A
// description comes from a built-in preset (public spec-sheet figures, sources
// in MachineDescription.cpp) or from a JSON file, which may start from a
// preset and override any field:
//
//   {
//     "name": "my-cluster",
//     "base": "2x8xH100",
//     "nodes": 4,
//     "devices_per_node": 8,
//     "memory_per_device_gb": 80,
//     "memory_bandwidth_gb_per_s": 3350,
//     "peak_tflops": {"bf16": 989, "fp16": 989, "fp8": 1979, "fp32": 67},
//     "intra_node": {"bandwidth_gb_per_s": 450, "latency_us": 3.4},
//     "inter_node": {"bandwidth_gb_per_s": 50, "latency_us": 14},
//     "cores": 0
//   }
//
// "cores", for CPU ranks: the cores the devices of a node share (0, the
// default: one core or more per device). More ranks than cores time-share
// them, which the cost model prices (CostModel.cpp, stage compute).
//
// GB means 10^9 bytes. Link bandwidths are per device and per direction:
// what one device can send while it receives as much (links are full duplex).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PLAN_MACHINEDESCRIPTION_H
#define MOE_PLAN_MACHINEDESCRIPTION_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace moe::plan {

/// Element types the planner prices: they decide the bytes per element and
/// which peak FLOP/s rate applies.
enum class DataType { FP32, BF16, FP16, FP8 };
constexpr size_t kNumDataTypes = 4;

/// "fp32", "bf16", "fp16", "fp8".
llvm::StringRef dataTypeName(DataType type);
std::optional<DataType> parseDataType(llvm::StringRef name);
int64_t dataTypeBytes(DataType type);

/// A link as the collective cost formulas see it: a fixed latency per message
/// step plus bytes over bandwidth.
struct LinkSpec {
  double bandwidthBytesPerSecond = 0;
  double latencySeconds = 0;
};

struct MachineDescription {
  std::string name;
  int64_t numNodes = 1;
  int64_t devicesPerNode = 1;
  double memoryBytesPerDevice = 0;
  double memoryBandwidthBytesPerSecond = 0;
  /// Dense (non-sparse) peak per data type; 0 where the device has none.
  std::array<double, kNumDataTypes> peakFlopsPerSecond = {};
  LinkSpec intraNode;
  LinkSpec interNode;
  /// Cores the devices of a node share; 0: no sharing.
  int64_t cores = 0;
  /// CPU ranks of one machine (the cpu:N preset, or a file based on it):
  /// what the CPU target partitions programs for.
  bool cpuRanks = false;

  int64_t numDevices() const { return numNodes * devicesPerNode; }
  int64_t nodeOf(int64_t rank) const { return rank / devicesPerNode; }
  double peakFlops(DataType type) const {
    return peakFlopsPerSecond[static_cast<size_t>(type)];
  }
};

/// A built-in machine: "cpu:N" (N CPU ranks of this machine) or
/// "[NODESx]DEVICESx{H200,H100,L40S}", e.g. "8xH200", "2x8xH100",
/// "32x8xH100", "4xL40S". The error names the preset and lists what exists.
llvm::Expected<MachineDescription> getMachinePreset(llvm::StringRef name);

/// The preset names the documentation and `--help` texts show.
std::vector<std::string> listMachinePresets();

/// Parses a machine JSON text (format above); `fileName` prefixes every error,
/// which also names the offending field.
llvm::Expected<MachineDescription>
parseMachineDescription(llvm::StringRef json, llvm::StringRef fileName);

/// Reads and parses a machine JSON file.
llvm::Expected<MachineDescription> loadMachineDescription(llvm::StringRef path);

/// A preset name when it is one ("cpu:4", "8xH200"), otherwise a JSON file.
llvm::Expected<MachineDescription> resolveMachine(llvm::StringRef nameOrPath);

/// The description in the JSON format above (without "base").
llvm::json::Value toJSON(const MachineDescription &machine);

} // namespace moe::plan

#endif // MOE_PLAN_MACHINEDESCRIPTION_H
