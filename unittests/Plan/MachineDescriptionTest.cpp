//===- MachineDescriptionTest.cpp - presets and machine JSON files --------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/MachineDescription.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/raw_ostream.h"
#include "gtest/gtest.h"

using namespace llvm;
using namespace moe::plan;

namespace {

/// The message of a failed Expected, or "" when it succeeded.
template <typename T> std::string errorOf(Expected<T> value) {
  return value ? "" : toString(value.takeError());
}

TEST(MachinePresetTest, H200NodeUsesSpecSheetFigures) {
  Expected<MachineDescription> machine = getMachinePreset("8xH200");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->numNodes, 1);
  EXPECT_EQ(machine->devicesPerNode, 8);
  EXPECT_DOUBLE_EQ(machine->memoryBytesPerDevice, 141e9);
  EXPECT_DOUBLE_EQ(machine->memoryBandwidthBytesPerSecond, 4.8e12);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::BF16), 989e12);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::FP8), 1979e12);
  EXPECT_DOUBLE_EQ(machine->intraNode.bandwidthBytesPerSecond, 450e9);
  EXPECT_DOUBLE_EQ(machine->intraNode.latencySeconds, 3.4e-6);
  EXPECT_FALSE(machine->cpuRanks);
}

TEST(MachinePresetTest, H100ClusterHasInfiniBandBetweenNodes) {
  Expected<MachineDescription> machine = getMachinePreset("2x8xH100");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->numDevices(), 16);
  EXPECT_EQ(machine->nodeOf(7), 0);
  EXPECT_EQ(machine->nodeOf(8), 1);
  EXPECT_DOUBLE_EQ(machine->memoryBytesPerDevice, 80e9);
  EXPECT_DOUBLE_EQ(machine->memoryBandwidthBytesPerSecond, 3.35e12);
  EXPECT_DOUBLE_EQ(machine->interNode.bandwidthBytesPerSecond, 50e9);
  EXPECT_DOUBLE_EQ(machine->interNode.latencySeconds, 14e-6);

  Expected<MachineDescription> large = getMachinePreset("32x8xH100");
  ASSERT_TRUE(!!large) << errorOf(std::move(large));
  EXPECT_EQ(large->numDevices(), 256);
}

TEST(MachinePresetTest, L40SNodeUsesPCIe) {
  Expected<MachineDescription> machine = getMachinePreset("4xL40S");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->numDevices(), 4);
  EXPECT_DOUBLE_EQ(machine->memoryBytesPerDevice, 48e9);
  EXPECT_DOUBLE_EQ(machine->memoryBandwidthBytesPerSecond, 864e9);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::BF16), 362e12);
  EXPECT_DOUBLE_EQ(machine->intraNode.bandwidthBytesPerSecond, 31.5e9);
}

TEST(MachinePresetTest, CPURanksUseConservativeDefaults) {
  Expected<MachineDescription> machine = getMachinePreset("cpu:6");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->numNodes, 1);
  EXPECT_EQ(machine->devicesPerNode, 6);
  for (DataType type :
       {DataType::FP32, DataType::BF16, DataType::FP16, DataType::FP8})
    EXPECT_DOUBLE_EQ(machine->peakFlops(type), 50e9);
  EXPECT_DOUBLE_EQ(machine->memoryBandwidthBytesPerSecond, 10e9);
  EXPECT_DOUBLE_EQ(machine->intraNode.bandwidthBytesPerSecond, 5e9);
  EXPECT_DOUBLE_EQ(machine->intraNode.latencySeconds, 2e-6);
  EXPECT_TRUE(machine->cpuRanks) << "the CPU target partitions for it";
}

TEST(MachinePresetTest, UnknownPresetsNameThemselvesAndTheChoices) {
  for (StringRef name :
       {"9xH100", "2x4xL40S", "cpu:0", "cpu:x", "8xA100", "huge", "0x8xH100"}) {
    std::string message = errorOf(getMachinePreset(name));
    EXPECT_NE(message.find(("'" + name + "'").str()), std::string::npos)
        << message;
    EXPECT_NE(message.find("8xH200"), std::string::npos) << message;
  }
  EXPECT_NE(errorOf(getMachinePreset("2x4xL40S")).find("single-node"),
            std::string::npos);
}

TEST(MachineJSONTest, ParsesAFullDescription) {
  Expected<MachineDescription> machine = parseMachineDescription(R"({
    "name": "lab",
    "nodes": 2,
    "devices_per_node": 4,
    "memory_per_device_gb": 24,
    "memory_bandwidth_gb_per_s": 1000,
    "peak_tflops": {"bf16": 150, "fp32": 40},
    "intra_node": {"bandwidth_gb_per_s": 64, "latency_us": 5},
    "inter_node": {"bandwidth_gb_per_s": 12.5, "latency_us": 10}
  })",
                                                                 "lab.json");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->name, "lab");
  EXPECT_EQ(machine->numDevices(), 8);
  EXPECT_DOUBLE_EQ(machine->memoryBytesPerDevice, 24e9);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::BF16), 150e12);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::FP8), 0);
  EXPECT_DOUBLE_EQ(machine->interNode.bandwidthBytesPerSecond, 12.5e9);
  EXPECT_DOUBLE_EQ(machine->interNode.latencySeconds, 10e-6);
}

TEST(MachineJSONTest, OverridesAPresetBase) {
  Expected<MachineDescription> machine = parseMachineDescription(
      R"({"base": "cpu:4", "memory_per_device_gb": 2,
          "peak_tflops": {"fp32": 0.2},
          "intra_node": {"latency_us": 1}})",
      "dir/small.json");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->name, "small");
  EXPECT_EQ(machine->numDevices(), 4);
  EXPECT_DOUBLE_EQ(machine->memoryBytesPerDevice, 2e9);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::FP32), 0.2e12);
  EXPECT_DOUBLE_EQ(machine->peakFlops(DataType::BF16), 50e9);
  EXPECT_DOUBLE_EQ(machine->intraNode.bandwidthBytesPerSecond, 5e9);
  EXPECT_DOUBLE_EQ(machine->intraNode.latencySeconds, 1e-6);
  EXPECT_TRUE(machine->cpuRanks) << "inherited from the cpu:4 base";

  Expected<MachineDescription> grown = parseMachineDescription(
      R"({"base": "8xH200", "nodes": 4})", "grown.json");
  ASSERT_TRUE(!!grown) << errorOf(std::move(grown));
  EXPECT_EQ(grown->numDevices(), 32);
  EXPECT_DOUBLE_EQ(grown->interNode.bandwidthBytesPerSecond, 50e9);
  EXPECT_FALSE(grown->cpuRanks);
}

TEST(MachineJSONTest, ErrorsNameTheFileAndTheField) {
  struct Case {
    const char *json;
    const char *expected;
  };
  const Case cases[] = {
      {"{\"nodes\": ", "m.json: not valid JSON"},
      {"[1, 2]", "m.json: expected a JSON object"},
      {R"({"base": "cpu:2", "memroy_per_device_gb": 4})",
       "m.json: field 'memroy_per_device_gb': unknown field"},
      {R"({"base": "cpu:2", "intra_node": {"bandwidth_gb_per_s": -3}})",
       "m.json: field 'intra_node.bandwidth_gb_per_s': expected a positive "
       "number, got -3"},
      {R"({"base": "cpu:2", "intra_node": {"speed": 3}})",
       "m.json: field 'intra_node.speed': unknown field"},
      {R"({"base": "cpu:2", "nodes": "two"})",
       "m.json: field 'nodes': expected an integer"},
      {R"({"base": "cpu:2", "devices_per_node": 1.5})",
       "m.json: field 'devices_per_node': expected an integer"},
      {R"({"base": "cpu:2", "peak_tflops": {"int4": 3}})",
       "m.json: field 'peak_tflops.int4': unknown field"},
      {R"({"base": "cpu:2", "peak_tflops": {"fp32": 0, "bf16": 0,
           "fp16": 0, "fp8": 0}})",
       "m.json: field 'peak_tflops': no data type has a positive peak"},
      {R"({"base": "cpu:2", "nodes": 2})",
       "m.json: field 'inter_node': missing"},
      {R"({"base": 3})", "m.json: field 'base': expected a preset name"},
      {R"({"base": "7xTPU"})", "m.json: field 'base': unknown machine preset"},
      {R"({"nodes": 1, "devices_per_node": 2})",
       "m.json: field 'memory_per_device_gb': missing"},
  };
  for (const Case &c : cases) {
    std::string message = errorOf(parseMachineDescription(c.json, "m.json"));
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "JSON: " << c.json << "\nmessage: " << message;
  }
}

TEST(MachineJSONTest, LoadsFilesAndReportsUnreadableOnes) {
  SmallString<128> path;
  ASSERT_FALSE(sys::fs::createTemporaryFile("machine", "json", path));
  FileRemover remover(path);
  {
    std::error_code error;
    raw_fd_ostream file(path, error);
    ASSERT_FALSE(error);
    file << R"({"base": "2x8xH100", "memory_per_device_gb": 94})";
  }
  Expected<MachineDescription> machine = resolveMachine(path);
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_DOUBLE_EQ(machine->memoryBytesPerDevice, 94e9);

  std::string message = errorOf(resolveMachine("/nonexistent/machine.json"));
  EXPECT_NE(message.find("/nonexistent/machine.json: cannot read"),
            std::string::npos)
      << message;
  EXPECT_TRUE(!!resolveMachine("cpu:2"));
}

TEST(MachineJSONTest, ToJSONParsesBackToTheSameMachine) {
  for (StringRef name : {"8xH200", "2x8xH100", "4xL40S", "cpu:3"}) {
    Expected<MachineDescription> preset = getMachinePreset(name);
    ASSERT_TRUE(!!preset);
    std::string text;
    raw_string_ostream os(text);
    os << toJSON(*preset);
    Expected<MachineDescription> parsed =
        parseMachineDescription(text, "copy.json");
    ASSERT_TRUE(!!parsed) << errorOf(std::move(parsed));
    EXPECT_EQ(parsed->name, preset->name);
    EXPECT_EQ(parsed->numDevices(), preset->numDevices());
    EXPECT_DOUBLE_EQ(parsed->memoryBytesPerDevice,
                     preset->memoryBytesPerDevice);
    EXPECT_DOUBLE_EQ(parsed->peakFlops(DataType::BF16),
                     preset->peakFlops(DataType::BF16));
    EXPECT_DOUBLE_EQ(parsed->interNode.latencySeconds,
                     preset->interNode.latencySeconds);
  }
}

TEST(MachineJSONTest, CoresSharedByCPURanks) {
  Expected<MachineDescription> machine = parseMachineDescription(
      R"({"base": "cpu:8", "cores": 2})", "shared.json");
  ASSERT_TRUE(!!machine) << errorOf(std::move(machine));
  EXPECT_EQ(machine->cores, 2);
  std::string text;
  raw_string_ostream os(text);
  os << toJSON(*machine);
  EXPECT_NE(text.find("\"cores\":2"), std::string::npos) << text;
  Expected<MachineDescription> bad =
      parseMachineDescription(R"({"base": "cpu:8", "cores": 0})", "bad.json");
  EXPECT_NE(errorOf(std::move(bad)).find("cores"), std::string::npos);
}

} // namespace
