//===- Program.cpp - the executable program format ------------------------===//
//
// Part of moe-compiler's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Program.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

using namespace moe::rt;

namespace {

bool isPlainNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
         c == '+' || c == '-';
}

std::vector<std::string> splitWords(const std::string &line) {
  std::vector<std::string> words;
  std::istringstream stream(line);
  std::string word;
  while (stream >> word)
    words.push_back(word);
  return words;
}

std::vector<std::string> splitOn(const std::string &text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream stream(text);
  while (std::getline(stream, part, separator))
    parts.push_back(part);
  if (!text.empty() && text.back() == separator)
    parts.push_back("");
  return parts;
}

bool parseInt(const std::string &text, int64_t &value) {
  if (text.empty())
    return false;
  char *end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0')
    return false;
  value = parsed;
  return true;
}

bool parseDouble(const std::string &text, double &value) {
  if (text.empty())
    return false;
  if (text == "inf" || text == "-inf" || text == "nan") {
    value = text == "nan"   ? std::numeric_limits<double>::quiet_NaN()
            : text == "inf" ? std::numeric_limits<double>::infinity()
                            : -std::numeric_limits<double>::infinity();
    return true;
  }
  char *end = nullptr;
  errno = 0;
  value = std::strtod(text.c_str(), &end);
  return errno == 0 && *end == '\0';
}

bool parseShape(const std::string &text, Shape &shape) {
  shape.clear();
  if (text == "scalar")
    return true;
  for (const std::string &part : splitOn(text, 'x')) {
    int64_t dim;
    if (!parseInt(part, dim) || dim < 0)
      return false;
    shape.push_back(dim);
  }
  return !shape.empty();
}

std::string formatDouble(double value) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value > 0 ? "inf" : "-inf";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

std::string joinInts(const std::vector<int64_t> &values, char separator) {
  std::string text;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i)
      text += separator;
    text += std::to_string(values[i]);
  }
  return text;
}

/// Parses one program; keeps the line number for messages.
class Parser {
public:
  Parser(const std::string &source, Program &program)
      : source(source), program(program) {}

  Status parse(const std::string &text) {
    std::istringstream stream(text);
    std::string line;
    bool sawHeader = false;
    while (std::getline(stream, line)) {
      ++lineNumber;
      std::vector<std::string> words = splitWords(line);
      if (words.empty() || words[0][0] == '#')
        continue;
      if (!sawHeader) {
        int64_t version;
        if (words.size() != 2 || words[0] != "moe-program" ||
            !parseInt(words[1], version))
          return error("not a moe program (the first line must be "
                       "'moe-program <version>')");
        if (version != kProgramVersion)
          return error("program format version " + words[1] +
                       " is not supported (this runtime reads version " +
                       std::to_string(kProgramVersion) +
                       "); recompile the model with moe-compile");
        sawHeader = true;
        continue;
      }
      Status status = parseRecord(words);
      if (!status)
        return status;
    }
    if (!sawHeader)
      return Status::error(source + ": empty program");
    if (program.outputs.empty())
      return Status::error(source + ": program has no outputs");
    return Status::success();
  }

private:
  Status error(const std::string &message) {
    return Status::error(source + ":" + std::to_string(lineNumber) + ": " +
                         message);
  }

  /// Declares value `text` as a new definition.
  Status define(const std::string &text, int &id) {
    int64_t value;
    if (!parseInt(text, value) || value < 0 || value > (1 << 26))
      return error("bad value id '" + text + "'");
    id = static_cast<int>(value);
    if (id < static_cast<int>(defined.size()) && defined[id])
      return error("value " + text + " is defined twice");
    if (id >= static_cast<int>(defined.size()))
      defined.resize(id + 1, false);
    defined[id] = true;
    program.numValues = std::max(program.numValues, id + 1);
    return Status::success();
  }

  Status use(const std::string &text, int &id) {
    int64_t value;
    if (!parseInt(text, value) || value < 0 ||
        value >= static_cast<int64_t>(defined.size()) || !defined[value])
      return error("value '" + text + "' is used before it is defined");
    id = static_cast<int>(value);
    return Status::success();
  }

  Status parseType(const std::string &dtype, const std::string &shape,
                   ValueType &type) {
    if (!parseDType(dtype, type.dtype))
      return error("unknown element type '" + dtype + "'");
    if (!parseShape(shape, type.shape))
      return error("bad shape '" + shape + "'");
    if (checkedNumElements(type.shape, int64_t(1) << 40) < 0)
      return error("shape '" + shape + "' is too large");
    return Status::success();
  }

  Status parseRecord(const std::vector<std::string> &w) {
    const std::string &kind = w[0];
    if (kind == "weights-dir") {
      if (w.size() != 2 || !decodeName(w[1], program.weightsDir))
        return error("expected 'weights-dir <path>'");
      return Status::success();
    }
    if (kind == "grid") {
      GridDecl grid;
      if (w.size() != 3 || !decodeName(w[1], grid.name) ||
          !parseShape(w[2], grid.shape) || grid.shape.empty())
        return error("expected 'grid <name> <shape>'");
      for (int64_t size : grid.shape)
        if (size < 1 || size > (1 << 20))
          return error("grid '" + grid.name + "' has a bad size in '" + w[2] +
                       "'");
      for (const GridDecl &other : program.grids)
        if (other.name == grid.name)
          return error("grid '" + grid.name + "' is declared twice");
      program.grids.push_back(std::move(grid));
      return Status::success();
    }
    if (kind == "pipeline") {
      PipelineDecl pipeline;
      if (w.size() != 3 || !decodeName(w[1], pipeline.grid) ||
          !parseInt(w[2], pipeline.axis) || pipeline.axis < 0)
        return error("expected 'pipeline <grid> <axis>'");
      if (program.pipeline)
        return error("the pipeline is declared twice");
      program.pipeline = pipeline;
      return Status::success();
    }
    if (kind == "microbatches") {
      if (w.size() != 2 || !parseInt(w[1], program.microbatches) ||
          program.microbatches < 1 || program.microbatches > (1 << 20))
        return error("expected 'microbatches <count>' with a count of 1 or "
                     "more");
      return Status::success();
    }
    if (kind == "gpu-module") {
      GpuModuleDecl module;
      if ((w.size() != 3 && w.size() != 5) || !decodeName(w[1], module.name) ||
          !decodeName(w[2], module.ptx) || module.ptx.empty())
        return error("expected 'gpu-module <name> <ptx> [<chip> <cubin>]'");
      if (w.size() == 5 &&
          (!decodeName(w[3], module.cubinChip) || module.cubinChip.empty() ||
           !decodeBase64(w[4], module.cubin) || module.cubin.empty()))
        return error("gpu-module '" + module.name +
                     "': the cubin must be a chip name and base64 bytes");
      for (const GpuModuleDecl &other : program.gpuModules)
        if (other.name == module.name)
          return error("gpu-module '" + module.name + "' is declared twice");
      program.gpuModules.push_back(std::move(module));
      return Status::success();
    }
    if (kind == "input") {
      InputDecl input;
      if (w.size() != 5 || !decodeName(w[2], input.name))
        return error("expected 'input <id> <name> <dtype> <shape>'");
      Status status = define(w[1], input.id);
      if (status)
        status = parseType(w[3], w[4], input.type);
      if (!status)
        return status;
      program.inputs.push_back(input);
      return Status::success();
    }
    if (kind == "weight") {
      WeightDecl weight;
      if ((w.size() != 8 && w.size() != 11) || !decodeName(w[2], weight.name) ||
          !decodeName(w[5], weight.file) || !parseInt(w[6], weight.offset) ||
          !parseInt(w[7], weight.length) || weight.offset < 0 ||
          weight.length < 0)
        return error("expected 'weight <id> <name> <dtype> <shape> <file> "
                     "<offset> <length> [slice <offsets> <sizes>]'");
      Status status = define(w[1], weight.id);
      if (status)
        status = parseType(w[3], w[4], weight.type);
      if (!status)
        return status;
      weight.fullShape = weight.type.shape;
      if (w.size() == 11) {
        Shape offsets, sizes;
        if (w[8] != "slice" || !parseShape(w[9], offsets) ||
            !parseShape(w[10], sizes) || offsets.size() != sizes.size() ||
            offsets.size() != weight.fullShape.size())
          return error("bad slice: expected 'slice <offsets> <sizes>' with "
                       "one entry per dimension");
        for (size_t d = 0; d < sizes.size(); ++d)
          if (offsets[d] > weight.fullShape[d] ||
              sizes[d] > weight.fullShape[d] - offsets[d])
            return error("slice exceeds dimension " + std::to_string(d) +
                         " of weight '" + weight.name + "'");
        weight.sliceOffsets = offsets;
        weight.type.shape = sizes;
      }
      if (static_cast<int64_t>(numElements(weight.fullShape) *
                               dtypeSize(weight.type.dtype)) != weight.length)
        return error("weight '" + weight.name + "' has length " + w[7] +
                     " but its type needs " +
                     std::to_string(numElements(weight.fullShape) *
                                    dtypeSize(weight.type.dtype)) +
                     " bytes");
      program.weights.push_back(weight);
      return Status::success();
    }
    if (kind == "const") {
      ConstDecl constant;
      if (w.size() != 5)
        return error("expected 'const <id> <dtype> <shape> <values>'");
      Status status = define(w[1], constant.id);
      if (status)
        status = parseType(w[2], w[3], constant.type);
      if (!status)
        return status;
      // Constants are small (shape arithmetic, masks); a huge one is a
      // corrupted program.
      int64_t count = checkedNumElements(constant.type.shape, int64_t(1) << 26);
      if (count < 0)
        return error("constant of shape " + w[3] + " is too large");
      std::vector<std::string> items;
      if (w[4] != "none")
        items = splitOn(w[4], ',');
      if (static_cast<int64_t>(items.size()) != count &&
          !(items.size() == 1 && count >= 1))
        return error("constant has " + std::to_string(items.size()) +
                     " values but its shape needs " + std::to_string(count));
      // A single value is a splat.
      for (const std::string &item : items) {
        double value;
        if (!parseDouble(item, value))
          return error("bad constant value '" + item + "'");
        constant.values.push_back(value);
      }
      if (constant.values.size() == 1 && count > 1)
        constant.values.assign(count, constant.values[0]);
      program.constants.push_back(std::move(constant));
      return Status::success();
    }
    if (kind == "op") {
      return parseOperation(w);
    }
    if (kind == "output") {
      OutputDecl output;
      if (w.size() != 3 || !decodeName(w[2], output.name))
        return error("expected 'output <id> <name>'");
      Status status = use(w[1], output.id);
      if (!status)
        return status;
      program.outputs.push_back(output);
      return Status::success();
    }
    return error("unknown record '" + kind + "'");
  }

  Status parseOperation(const std::vector<std::string> &w) {
    // op <name> <results> = <operands> [attr=value ...]
    Operation op;
    op.line = lineNumber;
    if (w.size() < 4 || w[3] != "=")
      return error("expected 'op <name> <id:dtype:shape,...> = <operands> "
                   "[attributes]'");
    op.op = w[1];
    // Operands: '-' is an absent optional operand; '()' means none.
    size_t attrStart = 4;
    if (w.size() > 4 && w[4].find('=') == std::string::npos) {
      attrStart = 5;
      if (w[4] != "()") {
        for (const std::string &item : splitOn(w[4], ',')) {
          if (item == "-") {
            op.operands.push_back(-1);
            continue;
          }
          int id;
          Status status = use(item, id);
          if (!status)
            return status;
          op.operands.push_back(id);
        }
      }
    }
    for (const std::string &item : splitOn(w[2], ',')) {
      std::vector<std::string> parts = splitOn(item, ':');
      ValueType type;
      int id;
      if (parts.size() != 3)
        return error("bad result '" + item + "': expected id:dtype:shape");
      Status status = parseType(parts[1], parts[2], type);
      if (status)
        status = define(parts[0], id);
      if (!status)
        return status;
      op.results.push_back(id);
      op.resultTypes.push_back(type);
    }
    for (size_t i = attrStart; i < w.size(); ++i) {
      size_t eq = w[i].find('=');
      if (eq == std::string::npos || eq == 0 || w[i].size() < eq + 3 ||
          w[i][eq + 2] != ':')
        return error("bad attribute '" + w[i] +
                     "': expected name=<i|f|s|a>:value");
      std::string name = w[i].substr(0, eq);
      char type = w[i][eq + 1];
      std::string value = w[i].substr(eq + 3);
      if (type == 'i') {
        int64_t number;
        if (!parseInt(value, number))
          return error("bad integer attribute '" + w[i] + "'");
        op.attrs.ints[name] = number;
      } else if (type == 'f') {
        double number;
        if (!parseDouble(value, number))
          return error("bad float attribute '" + w[i] + "'");
        op.attrs.floats[name] = number;
      } else if (type == 's') {
        std::string text;
        if (!decodeName(value, text))
          return error("bad string attribute '" + w[i] + "'");
        op.attrs.strings[name] = text;
      } else if (type == 'a') {
        std::vector<int64_t> list;
        if (!value.empty()) {
          for (const std::string &item : splitOn(value, ',')) {
            int64_t number;
            if (!parseInt(item, number))
              return error("bad integer list attribute '" + w[i] + "'");
            list.push_back(number);
          }
        }
        op.attrs.arrays[name] = list;
      } else {
        return error("bad attribute type in '" + w[i] + "'");
      }
    }
    program.operations.push_back(std::move(op));
    return Status::success();
  }

  const std::string &source;
  Program &program;
  std::vector<bool> defined;
  int lineNumber = 0;
};

std::string typeText(const ValueType &type) {
  return std::string(dtypeName(type.dtype)) + " " + formatShape(type.shape);
}

} // namespace

std::string moe::rt::encodeName(const std::string &name) {
  static const char *hex = "0123456789ABCDEF";
  std::string text;
  for (unsigned char c : name) {
    if (isPlainNameChar(static_cast<char>(c))) {
      text += static_cast<char>(c);
    } else {
      text += '%';
      text += hex[c >> 4];
      text += hex[c & 15];
    }
  }
  return text.empty() ? "%" : text;
}

bool moe::rt::decodeName(const std::string &text, std::string &name) {
  name.clear();
  if (text == "%")
    return true;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      if (!isPlainNameChar(text[i]))
        return false;
      name += text[i];
      continue;
    }
    if (i + 2 >= text.size())
      return false;
    auto digit = [](char c) {
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                    : -1;
    };
    int high = digit(text[i + 1]), low = digit(text[i + 2]);
    if (high < 0 || low < 0)
      return false;
    name += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return true;
}

Status moe::rt::parseProgram(const std::string &text, const std::string &source,
                             Program &program) {
  program = Program();
  return Parser(source, program).parse(text);
}

Status moe::rt::readProgram(const std::string &path, Program &program) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return Status::error("cannot read program '" + path + "'");
  std::ostringstream text;
  text << file.rdbuf();
  return parseProgram(text.str(), path, program);
}

std::string moe::rt::printProgram(const Program &program) {
  std::ostringstream os;
  os << "moe-program " << kProgramVersion << "\n";
  os << "weights-dir " << encodeName(program.weightsDir) << "\n";
  for (const GridDecl &grid : program.grids)
    os << "grid " << encodeName(grid.name) << " " << formatShape(grid.shape)
       << "\n";
  if (program.pipeline)
    os << "pipeline " << encodeName(program.pipeline->grid) << " "
       << program.pipeline->axis << "\n";
  if (program.microbatches > 1)
    os << "microbatches " << program.microbatches << "\n";
  for (const GpuModuleDecl &module : program.gpuModules) {
    os << "gpu-module " << encodeName(module.name) << " "
       << encodeName(module.ptx);
    if (!module.cubin.empty())
      os << " " << encodeName(module.cubinChip) << " "
         << encodeBase64(module.cubin);
    os << "\n";
  }
  for (const InputDecl &input : program.inputs)
    os << "input " << input.id << " " << encodeName(input.name) << " "
       << typeText(input.type) << "\n";
  for (const WeightDecl &weight : program.weights) {
    os << "weight " << weight.id << " " << encodeName(weight.name) << " "
       << dtypeName(weight.type.dtype) << " " << formatShape(weight.fullShape)
       << " " << encodeName(weight.file) << " " << weight.offset << " "
       << weight.length;
    if (weight.sliceOffsets)
      os << " slice " << joinInts(*weight.sliceOffsets, 'x') << " "
         << formatShape(weight.type.shape);
    os << "\n";
  }
  for (const ConstDecl &constant : program.constants) {
    os << "const " << constant.id << " " << typeText(constant.type) << " ";
    bool splat = constant.values.size() > 1;
    for (double value : constant.values)
      splat = splat && value == constant.values[0];
    if (constant.values.empty()) {
      os << "none";
    } else if (splat) {
      os << formatDouble(constant.values[0]);
    } else {
      for (size_t i = 0; i < constant.values.size(); ++i)
        os << (i ? "," : "") << formatDouble(constant.values[i]);
    }
    os << "\n";
  }
  for (const Operation &op : program.operations) {
    os << "op " << op.op << " ";
    for (size_t i = 0; i < op.results.size(); ++i)
      os << (i ? "," : "") << op.results[i] << ":"
         << dtypeName(op.resultTypes[i].dtype) << ":"
         << formatShape(op.resultTypes[i].shape);
    os << " = ";
    if (op.operands.empty())
      os << "()";
    for (size_t i = 0; i < op.operands.size(); ++i) {
      os << (i ? "," : "");
      if (op.operands[i] < 0)
        os << "-";
      else
        os << op.operands[i];
    }
    for (const auto &[name, value] : op.attrs.ints)
      os << " " << name << "=i:" << value;
    for (const auto &[name, value] : op.attrs.floats)
      os << " " << name << "=f:" << formatDouble(value);
    for (const auto &[name, value] : op.attrs.strings)
      os << " " << name << "=s:" << encodeName(value);
    for (const auto &[name, value] : op.attrs.arrays)
      os << " " << name << "=a:" << joinInts(value, ',');
    os << "\n";
  }
  for (const OutputDecl &output : program.outputs)
    os << "output " << output.id << " " << encodeName(output.name) << "\n";
  return os.str();
}

namespace {
const char *kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
} // namespace

std::string moe::rt::encodeBase64(const std::string &bytes) {
  std::string text;
  text.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t word = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size())
      word |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size())
      word |= static_cast<unsigned char>(bytes[i + 2]);
    text += kBase64Alphabet[(word >> 18) & 63];
    text += kBase64Alphabet[(word >> 12) & 63];
    text += i + 1 < bytes.size() ? kBase64Alphabet[(word >> 6) & 63] : '=';
    text += i + 2 < bytes.size() ? kBase64Alphabet[word & 63] : '=';
  }
  return text;
}

bool moe::rt::decodeBase64(const std::string &text, std::string &bytes) {
  bytes.clear();
  if (text.size() % 4 != 0)
    return false;
  auto value = [](char c) -> int {
    const char *found = std::strchr(kBase64Alphabet, c);
    return c != '\0' && found ? static_cast<int>(found - kBase64Alphabet) : -1;
  };
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int padding = 0;
    uint32_t word = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      if (c == '=' && last && j >= 2 && (j == 3 || text[i + 3] == '=')) {
        ++padding;
        word <<= 6;
        continue;
      }
      int digit = value(c);
      if (digit < 0 || padding)
        return false;
      word = (word << 6) | static_cast<uint32_t>(digit);
    }
    bytes += static_cast<char>((word >> 16) & 255);
    if (padding < 2)
      bytes += static_cast<char>((word >> 8) & 255);
    if (padding < 1)
      bytes += static_cast<char>(word & 255);
  }
  return true;
}
