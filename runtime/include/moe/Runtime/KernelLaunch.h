//===- KernelLaunch.h - launch lists of generated GPU kernels ---*- C++ -*-===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// `moe.launch` (moe-compile --target cuda) runs a fused group of ops as
// kernels that MLIR generated: the program's `gpu-module` records hold their
// PTX, and the op's `launches` attribute says what to launch, in order, one
// launch per `;`-separated item:
//
//   MODULE:KERNEL GX,GY,GZ BX,BY,BZ ARG ARG ...
//
// with the grid and block sizes, and the kernel's parameters in order (the
// bare-pointer convention: a statically shaped buffer is one pointer):
//
//   inN    the op's operand N          outN   its result N
//   tmpN   scratch buffer N (the op's `scratch` attribute lists their bytes)
//   i64:V  an integer parameter        f32:0xBITS  a float parameter
//
// An item `copy SRC DST BYTES` (SRC and DST buffers as above) copies bytes
// from one buffer to another instead: what the compiled code does where a
// group's result is one of its values unchanged.
//
// For example, an RMSNorm whose row sums live in scratch buffer 0:
//
//   k3_kernel:k3_kernel 9,1,1 1,1,1 i64:1 tmp0;
//   k3_kernel_0:k3_kernel 9,3,1 1,256,1 i64:1 i64:256 in0 tmp0 in1 out0
//
// The parser is header-only so that the dialect's verifier and the CUDA
// executor read the same grammar.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_KERNELLAUNCH_H
#define MOE_RUNTIME_KERNELLAUNCH_H

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace moe::rt {

struct LaunchArgument {
  enum Kind { Input, Output, Scratch, Int64, Float32 } kind;
  /// The buffer's index (Input, Output, Scratch) or the value (Int64; the
  /// bits of the float for Float32).
  int64_t value = 0;
};

struct KernelLaunch {
  /// Empty for a copy, whose arguments are its source and destination.
  std::string module;
  std::string kernel;
  int64_t copyBytes = 0;
  int64_t grid[3] = {1, 1, 1};
  int64_t block[3] = {1, 1, 1};
  std::vector<LaunchArgument> arguments;
};

namespace detail {

inline bool parseInteger(const std::string &text, int64_t &value,
                         int base = 10) {
  if (text.empty())
    return false;
  char *end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(text.c_str(), &end, base);
  if (errno != 0 || *end != '\0')
    return false;
  value = parsed;
  return true;
}

/// "X,Y,Z" with each at least 1.
inline bool parseDims(const std::string &text, int64_t (&dims)[3]) {
  std::stringstream stream(text);
  std::string part;
  for (int i = 0; i < 3; ++i) {
    if (!std::getline(stream, part, ',') || !parseInteger(part, dims[i]) ||
        dims[i] < 1)
      return false;
  }
  return !std::getline(stream, part, ',');
}

inline bool startsWith(const std::string &text, const char *prefix) {
  return text.rfind(prefix, 0) == 0;
}

} // namespace detail

/// One argument: a buffer (inN, outN, tmpN, within the counts) or, unless
/// `buffersOnly`, a value (i64:V, f32:0xBITS). Empty on success, else why.
inline std::string parseLaunchArgument(const std::string &argument,
                                       int64_t inputs, int64_t outputs,
                                       int64_t scratch, bool buffersOnly,
                                       LaunchArgument &parsed) {
  parsed = {LaunchArgument::Input, 0};
  bool ok = false;
  int64_t bound = -1;
  if (detail::startsWith(argument, "in")) {
    ok = detail::parseInteger(argument.substr(2), parsed.value);
    bound = inputs;
  } else if (detail::startsWith(argument, "out")) {
    parsed.kind = LaunchArgument::Output;
    ok = detail::parseInteger(argument.substr(3), parsed.value);
    bound = outputs;
  } else if (detail::startsWith(argument, "tmp")) {
    parsed.kind = LaunchArgument::Scratch;
    ok = detail::parseInteger(argument.substr(3), parsed.value);
    bound = scratch;
  } else if (!buffersOnly && detail::startsWith(argument, "i64:")) {
    parsed.kind = LaunchArgument::Int64;
    ok = detail::parseInteger(argument.substr(4), parsed.value);
  } else if (!buffersOnly && detail::startsWith(argument, "f32:0x")) {
    parsed.kind = LaunchArgument::Float32;
    ok = detail::parseInteger(argument.substr(6), parsed.value, 16) &&
         parsed.value >= 0 && parsed.value <= 0xFFFFFFFFll;
  }
  if (ok && (bound < 0 || (parsed.value >= 0 && parsed.value < bound)))
    return "";
  return "argument '" + argument +
         "' is not inN, outN or tmpN within the op's " +
         std::to_string(inputs) + " operands, " + std::to_string(outputs) +
         " results and " + std::to_string(scratch) + " scratch buffers" +
         (buffersOnly ? "" : ", nor i64:V or f32:0xBITS");
}

/// Parses `text` into `launches`, checking that each argument names one of
/// `inputs` operands, `outputs` results or `scratch` buffers. Returns an
/// empty string on success, else what is wrong, naming the launch and item.
inline std::string parseKernelLaunches(const std::string &text, int64_t inputs,
                                       int64_t outputs, int64_t scratch,
                                       std::vector<KernelLaunch> &launches) {
  launches.clear();
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ';')) {
    std::stringstream fields(item);
    std::string first;
    fields >> first;
    std::string where = "launch " + std::to_string(launches.size());
    KernelLaunch launch;
    std::vector<std::string> words;
    for (std::string word; fields >> word;)
      words.push_back(word);
    if (first == "copy") {
      if (words.size() != 3 ||
          !detail::parseInteger(words[2], launch.copyBytes) ||
          launch.copyBytes <= 0)
        return where + ": expected 'copy SRC DST BYTES', got '" + item + "'";
      for (int i = 0; i < 2; ++i) {
        LaunchArgument parsed;
        std::string error = parseLaunchArgument(words[i], inputs, outputs,
                                                scratch, true, parsed);
        if (!error.empty())
          return where + ": " + error;
        launch.arguments.push_back(parsed);
      }
      launches.push_back(std::move(launch));
      continue;
    }
    if (words.size() < 2)
      return where +
             ": expected 'MODULE:KERNEL GX,GY,GZ BX,BY,BZ ARG...', "
             "got '" +
             item + "'";
    size_t colon = first.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == first.size())
      return where + ": '" + first + "' is not MODULE:KERNEL";
    launch.module = first.substr(0, colon);
    launch.kernel = first.substr(colon + 1);
    if (!detail::parseDims(words[0], launch.grid))
      return where + ": grid '" + words[0] + "' is not three positive sizes";
    if (!detail::parseDims(words[1], launch.block))
      return where + ": block '" + words[1] + "' is not three positive sizes";
    for (size_t i = 2; i < words.size(); ++i) {
      LaunchArgument parsed;
      std::string error = parseLaunchArgument(words[i], inputs, outputs,
                                              scratch, false, parsed);
      if (!error.empty())
        return where + ": " + error;
      launch.arguments.push_back(parsed);
    }
    launches.push_back(std::move(launch));
  }
  if (launches.empty())
    return "no launches";
  return "";
}

} // namespace moe::rt

#endif // MOE_RUNTIME_KERNELLAUNCH_H
