//===- TensorProto.cpp - ONNX TensorProto files ---------------------------===//
//
// Part of moe-compiler's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/TensorProto.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

using namespace moe::rt;

namespace {

// onnx.proto field numbers of TensorProto and its data types.
constexpr uint32_t kDims = 1, kDataType = 2, kFloatData = 4, kInt32Data = 5,
                   kInt64Data = 7, kRawData = 9, kDoubleData = 10;
constexpr int kFloat = 1, kUint8 = 2, kInt8 = 3, kInt32 = 6, kInt64 = 7,
              kBool = 9, kFloat16 = 10, kDouble = 11;

class Reader {
public:
  Reader(const std::string &bytes)
      : pos(reinterpret_cast<const uint8_t *>(bytes.data())),
        end(pos + bytes.size()) {}
  Reader(const uint8_t *begin, const uint8_t *end) : pos(begin), end(end) {}
  bool atEnd() const { return pos >= end; }

  bool varint(uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end)
        return false;
      uint8_t byte = *pos++;
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80))
        return true;
    }
    return false;
  }
  bool bytes(const uint8_t *&data, uint64_t &length) {
    if (!varint(length) || length > static_cast<uint64_t>(end - pos))
      return false;
    data = pos;
    pos += length;
    return true;
  }
  bool skip(uint32_t wireType) {
    uint64_t ignored;
    const uint8_t *data;
    switch (wireType) {
    case 0:
      return varint(ignored);
    case 1:
    case 5: {
      uint64_t size = wireType == 1 ? 8 : 4;
      if (size > static_cast<uint64_t>(end - pos))
        return false;
      pos += size;
      return true;
    }
    case 2:
      return bytes(data, ignored);
    default:
      return false;
    }
  }

private:
  const uint8_t *pos, *end;
};

/// Appends a repeated varint field, packed (wire type 2) or not (0).
bool readVarints(Reader &reader, uint32_t wireType,
                 std::vector<int64_t> &values) {
  uint64_t value;
  if (wireType == 0) {
    if (!reader.varint(value))
      return false;
    values.push_back(static_cast<int64_t>(value));
    return true;
  }
  const uint8_t *data;
  uint64_t length;
  if (wireType != 2 || !reader.bytes(data, length))
    return false;
  Reader packed(data, data + length);
  while (!packed.atEnd()) {
    if (!packed.varint(value))
      return false;
    values.push_back(static_cast<int64_t>(value));
  }
  return true;
}

} // namespace

Status moe::rt::readTensorProto(const std::string &path, Tensor &tensor) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return Status::error("cannot read '" + path + "'");
  std::ostringstream content;
  content << file.rdbuf();
  std::string bytes = content.str();
  auto fail = [&](const std::string &what) {
    return Status::error("'" + path +
                         "' is not a valid ONNX TensorProto: " + what);
  };
  Reader reader(bytes);
  std::vector<int64_t> dims, int64Data, int32Data;
  int dataType = 0;
  const uint8_t *raw = nullptr, *floats = nullptr, *doubles = nullptr;
  uint64_t rawLength = 0, floatsLength = 0, doublesLength = 0;
  while (!reader.atEnd()) {
    uint64_t key;
    if (!reader.varint(key))
      return fail("truncated field key");
    uint32_t number = static_cast<uint32_t>(key >> 3);
    uint32_t wireType = static_cast<uint32_t>(key & 7);
    bool ok = true;
    if (number == kDims) {
      ok = readVarints(reader, wireType, dims);
    } else if (number == kDataType && wireType == 0) {
      uint64_t value;
      ok = reader.varint(value);
      dataType = static_cast<int>(value);
    } else if (number == kInt64Data) {
      ok = readVarints(reader, wireType, int64Data);
    } else if (number == kInt32Data) {
      ok = readVarints(reader, wireType, int32Data);
    } else if (number == kRawData && wireType == 2) {
      ok = reader.bytes(raw, rawLength);
    } else if (number == kFloatData && wireType == 2) {
      ok = reader.bytes(floats, floatsLength);
    } else if (number == kDoubleData && wireType == 2) {
      ok = reader.bytes(doubles, doublesLength);
    } else {
      ok = reader.skip(wireType);
    }
    if (!ok)
      return fail("field " + std::to_string(number) +
                  " is truncated or "
                  "malformed");
  }
  DType dtype;
  switch (dataType) {
  case kFloat:
    dtype = DType::F32;
    break;
  case kDouble:
    dtype = DType::F64;
    break;
  case kFloat16:
    dtype = DType::F16;
    break;
  case kInt64:
    dtype = DType::I64;
    break;
  case kInt32:
    dtype = DType::I32;
    break;
  case kInt8:
    dtype = DType::I8;
    break;
  case kUint8:
    dtype = DType::U8;
    break;
  case kBool:
    dtype = DType::Bool;
    break;
  default:
    return fail("data type " + std::to_string(dataType) + " is not supported");
  }
  for (int64_t dim : dims)
    if (dim < 0)
      return fail("negative dimension " + std::to_string(dim));
  Shape shape(dims.begin(), dims.end());
  int64_t count = checkedNumElements(shape, int64_t(1) << 36);
  if (count < 0)
    return fail("shape " + formatShape(shape) + " is too large");
  tensor = Tensor(dtype, shape);
  uint64_t expected = tensor.sizeInBytes();
  if (raw) {
    if (rawLength != expected)
      return fail("raw_data has " + std::to_string(rawLength) +
                  " bytes but shape " + formatShape(shape) + " needs " +
                  std::to_string(expected));
    std::memcpy(tensor.data(), raw, expected);
    return Status::success();
  }
  if (dtype == DType::F32 || dtype == DType::F64) {
    const uint8_t *data = dtype == DType::F32 ? floats : doubles;
    uint64_t length = dtype == DType::F32 ? floatsLength : doublesLength;
    if (length != expected)
      return fail("holds " + std::to_string(length) +
                  " bytes of values but "
                  "shape " +
                  formatShape(shape) + " needs " + std::to_string(expected));
    if (expected)
      std::memcpy(tensor.data(), data, expected);
    return Status::success();
  }
  const std::vector<int64_t> &values =
      dtype == DType::I64 ? int64Data : int32Data;
  if (static_cast<int64_t>(values.size()) != count)
    return fail("holds " + std::to_string(values.size()) +
                " values but shape " + formatShape(shape) + " needs " +
                std::to_string(count));
  if (dtype == DType::F16) {
    // float16 values are stored as their bit patterns in int32_data.
    for (int64_t i = 0; i < count; ++i)
      tensor.as<uint16_t>()[i] = static_cast<uint16_t>(values[i]);
    return Status::success();
  }
  Tensor wide(DType::I64, shape);
  std::memcpy(wide.data(), values.data(), count * sizeof(int64_t));
  convert(wide, tensor);
  return Status::success();
}

std::vector<std::string>
moe::rt::listTestDataFiles(const std::string &directory,
                           const std::string &prefix) {
  std::vector<std::string> files;
  for (int index = 0;; ++index) {
    std::string path =
        directory + "/" + prefix + "_" + std::to_string(index) + ".pb";
    struct stat info;
    if (::stat(path.c_str(), &info) != 0)
      break;
    files.push_back(path);
  }
  return files;
}
