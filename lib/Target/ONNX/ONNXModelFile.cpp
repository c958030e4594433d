//===- ONNXModelFile.cpp - reading untrusted ONNX files -------------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "ONNXModelFile.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <climits>
#include <sys/stat.h>

using namespace mlir;
using namespace moe::onnx_import;

namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// A bounds-checked reader of the protobuf wire format. The generated parser
/// copies `bytes` fields, so it cannot say where `raw_data` lies in the file;
/// this reader walks the same bytes to find out.
class WireCursor {
public:
  WireCursor(const uint8_t *begin, const uint8_t *end)
      : fileBegin(begin), pos(begin), end(end) {}
  WireCursor(const uint8_t *fileBegin, const uint8_t *begin, const uint8_t *end)
      : fileBegin(fileBegin), pos(begin), end(end) {}

  bool atEnd() const { return pos >= end; }

  bool readVarint(uint64_t &value) {
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

  /// Reads a field key; `wireType` 2 fields leave `[begin, end)` of their
  /// payload in `payload` and advance past it.
  bool readField(uint32_t &number, uint32_t &wireType, const uint8_t *&payload,
                 uint64_t &payloadLength) {
    uint64_t key;
    if (!readVarint(key))
      return false;
    number = static_cast<uint32_t>(key >> 3);
    wireType = static_cast<uint32_t>(key & 7);
    payload = nullptr;
    payloadLength = 0;
    switch (wireType) {
    case 0: {
      uint64_t ignored;
      return readVarint(ignored);
    }
    case 1:
      return advance(8);
    case 2:
      if (!readVarint(payloadLength) ||
          payloadLength > static_cast<uint64_t>(end - pos))
        return false;
      payload = pos;
      pos += payloadLength;
      return true;
    case 5:
      return advance(4);
    default:
      // Groups (3, 4) are not used by ONNX; anything else is corruption.
      return false;
    }
  }

  WireCursor sub(const uint8_t *payload, uint64_t length) const {
    return WireCursor(fileBegin, payload, payload + length);
  }
  int64_t offsetOf(const uint8_t *p) const { return p - fileBegin; }

private:
  bool advance(uint64_t n) {
    if (n > static_cast<uint64_t>(end - pos))
      return false;
    pos += n;
    return true;
  }

  const uint8_t *fileBegin;
  const uint8_t *pos;
  const uint8_t *end;
};

struct ScannedInitializer {
  std::optional<std::pair<int64_t, int64_t>> raw, floats, doubles;
};

// Field numbers from onnx.proto.
constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kGraphInitializer = 5;
constexpr uint32_t kTensorFloatData = 4;
constexpr uint32_t kTensorRawData = 9;
constexpr uint32_t kTensorDoubleData = 10;

/// Finds the payload ranges of the data fields of every graph initializer, in
/// order. Returns false on malformed wire data.
bool scanInitializers(const uint8_t *data, size_t size,
                      std::vector<ScannedInitializer> &result) {
  WireCursor model(data, data + size);
  while (!model.atEnd()) {
    uint32_t number, wireType;
    const uint8_t *payload;
    uint64_t length;
    if (!model.readField(number, wireType, payload, length))
      return false;
    if (number != kModelGraph || wireType != 2)
      continue;
    WireCursor graph = model.sub(payload, length);
    while (!graph.atEnd()) {
      if (!graph.readField(number, wireType, payload, length))
        return false;
      if (number != kGraphInitializer || wireType != 2)
        continue;
      ScannedInitializer scanned;
      WireCursor tensor = graph.sub(payload, length);
      while (!tensor.atEnd()) {
        if (!tensor.readField(number, wireType, payload, length))
          return false;
        if (wireType != 2)
          continue;
        auto range = std::make_pair(tensor.offsetOf(payload),
                                    static_cast<int64_t>(length));
        // Protobuf keeps the last occurrence of a singular field.
        if (number == kTensorRawData)
          scanned.raw = range;
        else if (number == kTensorFloatData)
          scanned.floats = range;
        else if (number == kTensorDoubleData)
          scanned.doubles = range;
      }
      result.push_back(scanned);
    }
  }
  return true;
}

} // namespace

Type moe::onnx_import::convertDataType(int32_t dataType, MLIRContext &context) {
  Builder b(&context);
  switch (dataType) {
  case onnx::TensorProto::FLOAT:
    return b.getF32Type();
  case onnx::TensorProto::FLOAT16:
    return b.getF16Type();
  case onnx::TensorProto::BFLOAT16:
    return b.getBF16Type();
  case onnx::TensorProto::DOUBLE:
    return b.getF64Type();
  case onnx::TensorProto::INT8:
    return b.getI8Type();
  case onnx::TensorProto::INT16:
    return b.getI16Type();
  case onnx::TensorProto::INT32:
    return b.getI32Type();
  case onnx::TensorProto::INT64:
    return b.getI64Type();
  case onnx::TensorProto::UINT8:
    return b.getIntegerType(8, /*isSigned=*/false);
  case onnx::TensorProto::UINT16:
    return b.getIntegerType(16, /*isSigned=*/false);
  case onnx::TensorProto::UINT32:
    return b.getIntegerType(32, /*isSigned=*/false);
  case onnx::TensorProto::UINT64:
    return b.getIntegerType(64, /*isSigned=*/false);
  case onnx::TensorProto::BOOL:
    return b.getI1Type();
  // ONNX 1.16 added 4-bit integers (INT4 = 22, UINT4 = 21); the Debian
  // protobuf headers predate them, hence the literals.
  case 21:
    return b.getIntegerType(4, /*isSigned=*/false);
  case 22:
    return b.getIntegerType(4);
  default:
    return nullptr;
  }
}

llvm::StringRef moe::onnx_import::dataTypeName(int32_t dataType) {
  if (onnx::TensorProto::DataType_IsValid(dataType))
    return onnx::TensorProto::DataType_Name(
        static_cast<onnx::TensorProto::DataType>(dataType));
  switch (dataType) {
  case 21:
    return "UINT4";
  case 22:
    return "INT4";
  case 23:
    return "FLOAT4E2M1";
  default:
    return "unknown";
  }
}

llvm::Expected<std::unique_ptr<ModelFile>>
moe::onnx_import::loadModelFile(llvm::StringRef path) {
  auto file = std::make_unique<ModelFile>();
  file->path = path.str();
  llvm::SmallString<256> directory(path);
  llvm::sys::path::remove_filename(directory);
  file->directory = directory.empty() ? "." : directory.str().str();

  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return makeError("cannot read '" + path +
                     "': " + buffer.getError().message());
  file->buffer = std::move(*buffer);
  size_t size = file->buffer->getBufferSize();
  if (size == 0)
    return makeError("'" + path + "' is empty, not an ONNX model");
  if (size > static_cast<size_t>(INT_MAX)) {
    return makeError("'" + path + "' is " + llvm::Twine(size) +
                     " bytes; ONNX protobuf files are limited to 2 GiB, "
                     "store the weights as external data");
  }
  const auto *data =
      reinterpret_cast<const uint8_t *>(file->buffer->getBufferStart());
  if (!file->model.ParseFromArray(data, static_cast<int>(size))) {
    return makeError("'" + path +
                     "' is not a valid ONNX model: the protobuf is truncated "
                     "or malformed");
  }
  if (!file->model.has_graph())
    return makeError("'" + path + "' has no graph");

  std::vector<ScannedInitializer> scanned;
  const auto &initializers = file->model.graph().initializer();
  if (!scanInitializers(data, size, scanned) ||
      scanned.size() != static_cast<size_t>(initializers.size())) {
    return makeError("'" + path +
                     "': the initializer list is malformed (protobuf wire "
                     "data does not match the parsed model)");
  }
  std::string fileName = llvm::sys::path::filename(path).str();
  file->inlineBytes.resize(scanned.size());
  for (auto [index, tensor] : llvm::enumerate(initializers)) {
    const ScannedInitializer &where = scanned[index];
    auto expect = [&](const std::optional<std::pair<int64_t, int64_t>> &range,
                      size_t parsedBytes) -> std::optional<TensorBytes> {
      if (!range || static_cast<size_t>(range->second) != parsedBytes)
        return std::nullopt;
      return TensorBytes{fileName, range->first, range->second};
    };
    if (!tensor.raw_data().empty())
      file->inlineBytes[index] = expect(where.raw, tensor.raw_data().size());
    else if (tensor.float_data_size() > 0)
      file->inlineBytes[index] =
          expect(where.floats, tensor.float_data_size() * sizeof(float));
    else if (tensor.double_data_size() > 0)
      file->inlineBytes[index] =
          expect(where.doubles, tensor.double_data_size() * sizeof(double));
  }
  return std::move(file);
}

llvm::Expected<TensorBytes>
moe::onnx_import::resolveExternalData(const ModelFile &file,
                                      const onnx::TensorProto &tensor,
                                      int64_t expectedBytes) {
  std::string name = tensor.name();
  auto fail = [&](const llvm::Twine &what) {
    return makeError("'" + file.path + "': initializer '" + name +
                     "': external data " + what);
  };
  std::string location;
  int64_t offset = 0;
  std::optional<int64_t> length;
  for (const auto &entry : tensor.external_data()) {
    llvm::StringRef value = entry.value();
    if (entry.key() == "location") {
      location = entry.value();
    } else if (entry.key() == "offset" || entry.key() == "length") {
      int64_t number;
      if (value.getAsInteger(10, number) || number < 0)
        return fail("has " + entry.key() + " '" + value +
                    "'; it must be a non-negative integer");
      if (entry.key() == "offset")
        offset = number;
      else
        length = number;
    }
  }
  if (location.empty())
    return fail("has no location");
  if (llvm::sys::path::is_absolute(location) ||
      llvm::StringRef(location).contains('\\'))
    return fail("location '" + location +
                "' must be a relative path with '/' separators");
  for (llvm::StringRef component : llvm::make_range(
           llvm::sys::path::begin(location), llvm::sys::path::end(location))) {
    if (component == "..")
      return fail("location '" + location +
                  "' contains '..'; external data must stay inside the model "
                  "directory");
  }
  if (length && *length != expectedBytes)
    return fail("length " + llvm::Twine(*length) + " does not match the " +
                llvm::Twine(expectedBytes) + " bytes its type and shape need");

  llvm::SmallString<256> fullPath(file.directory);
  llvm::sys::path::append(fullPath, location);
  struct stat info;
  if (::lstat(fullPath.c_str(), &info) != 0)
    return fail("file '" + location + "' does not exist next to the model");
  if (S_ISLNK(info.st_mode))
    return fail("file '" + location +
                "' is a symbolic link; links are refused so a model cannot "
                "read files outside its directory");
  if (!S_ISREG(info.st_mode))
    return fail("file '" + location + "' is not a regular file");
  if (info.st_nlink != 1)
    return fail("file '" + location +
                "' is a hard link; links are refused so a model cannot read "
                "files outside its directory");
  // A symbolic link in a directory component would pass the checks above;
  // compare real paths to be sure the file is inside the model directory.
  llvm::SmallString<256> realDirectory, realFile;
  if (llvm::sys::fs::real_path(file.directory, realDirectory) ||
      llvm::sys::fs::real_path(fullPath, realFile) ||
      !llvm::StringRef(realFile).starts_with(realDirectory.str().str() + "/"))
    return fail("file '" + location + "' resolves outside the model directory");
  int64_t fileSize = info.st_size;
  if (offset > fileSize || expectedBytes > fileSize - offset)
    return fail("range [" + llvm::Twine(offset) + ", " +
                llvm::Twine(offset + expectedBytes) + ") lies outside '" +
                location + "' of " + llvm::Twine(fileSize) + " bytes");
  return TensorBytes{location, offset, expectedBytes};
}
