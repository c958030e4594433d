//===- Npy.cpp - numpy .npy files -----------------------------------------===//
//
// Part of moe-compiler's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace moe::rt;

namespace {

constexpr char kMagic[] = "\x93NUMPY";

const char *descrOf(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "<f4";
  case DType::F64:
    return "<f8";
  case DType::F16:
    return "<f2";
  case DType::I64:
    return "<i8";
  case DType::I32:
    return "<i4";
  case DType::I16:
    return "<i2";
  case DType::I8:
    return "|i1";
  case DType::U8:
    return "|u1";
  case DType::Bool:
    return "|b1";
  case DType::BF16:
    return nullptr; // numpy has no bfloat16
  }
  return nullptr;
}

bool dtypeOfDescr(const std::string &descr, DType &dtype) {
  static const std::pair<const char *, DType> table[] = {
      {"<f4", DType::F32}, {"<f8", DType::F64}, {"<f2", DType::F16},
      {"<i8", DType::I64}, {"<i4", DType::I32}, {"<i2", DType::I16},
      {"|i1", DType::I8},  {"|u1", DType::U8},  {"|b1", DType::Bool}};
  for (const auto &[name, type] : table) {
    if (descr == name) {
      dtype = type;
      return true;
    }
  }
  return false;
}

/// The value of `key` in the header dictionary, e.g. `'descr': '<f4'`.
bool headerField(const std::string &header, const std::string &key,
                 std::string &value) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos)
    return false;
  size_t colon = header.find(':', at);
  if (colon == std::string::npos)
    return false;
  size_t start = header.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos)
    return false;
  char open = header[start];
  size_t end;
  if (open == '\'') {
    end = header.find('\'', start + 1);
    if (end == std::string::npos)
      return false;
    value = header.substr(start + 1, end - start - 1);
  } else if (open == '(') {
    end = header.find(')', start);
    if (end == std::string::npos)
      return false;
    value = header.substr(start + 1, end - start - 1);
  } else {
    end = header.find_first_of(",}", start);
    if (end == std::string::npos)
      return false;
    value = header.substr(start, end - start);
  }
  return true;
}

} // namespace

Status moe::rt::readNpy(const std::string &path, Tensor &tensor) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return Status::error("cannot read '" + path + "'");
  auto fail = [&](const std::string &what) {
    return Status::error("'" + path + "' is not a valid .npy file: " + what);
  };
  char magic[6];
  unsigned char version[2];
  if (!file.read(magic, 6) || std::memcmp(magic, kMagic, 6) != 0)
    return fail("bad magic");
  if (!file.read(reinterpret_cast<char *>(version), 2) ||
      (version[0] != 1 && version[0] != 2 && version[0] != 3))
    return fail("unsupported version");
  uint32_t headerLength = 0;
  unsigned char lengthBytes[4] = {0, 0, 0, 0};
  int lengthSize = version[0] == 1 ? 2 : 4;
  if (!file.read(reinterpret_cast<char *>(lengthBytes), lengthSize))
    return fail("truncated header");
  for (int i = lengthSize - 1; i >= 0; --i)
    headerLength = headerLength * 256 + lengthBytes[i];
  if (headerLength > (1u << 20))
    return fail("header too long");
  std::string header(headerLength, '\0');
  if (!file.read(header.data(), headerLength))
    return fail("truncated header");

  std::string descr, fortran, shapeText;
  if (!headerField(header, "descr", descr) ||
      !headerField(header, "fortran_order", fortran) ||
      !headerField(header, "shape", shapeText))
    return fail("header lacks descr, fortran_order or shape");
  DType dtype;
  if (!dtypeOfDescr(descr, dtype))
    return fail("element type '" + descr +
                "' is not supported (use little-endian float32/64/16, "
                "int64/32/16/8, uint8 or bool)");
  if (fortran.find("False") == std::string::npos)
    return fail("Fortran-ordered arrays are not supported (use "
                "np.ascontiguousarray)");
  Shape shape;
  std::stringstream dims(shapeText);
  std::string item;
  while (std::getline(dims, item, ',')) {
    size_t first = item.find_first_not_of(' ');
    if (first == std::string::npos)
      continue;
    char *end = nullptr;
    long long dim = std::strtoll(item.c_str() + first, &end, 10);
    if (dim < 0 || end == item.c_str() + first)
      return fail("bad shape (" + shapeText + ")");
    shape.push_back(dim);
  }
  int64_t count = checkedNumElements(shape, int64_t(1) << 36);
  if (count < 0)
    return fail("shape (" + shapeText + ") is too large");
  tensor = Tensor(dtype, shape);
  if (!file.read(static_cast<char *>(tensor.data()), tensor.sizeInBytes()))
    return fail("data is truncated: expected " +
                std::to_string(tensor.sizeInBytes()) + " bytes for shape (" +
                shapeText + ")");
  return Status::success();
}

Status moe::rt::writeNpy(const std::string &path, const Tensor &tensor) {
  const char *descr = descrOf(tensor.dtype());
  if (!descr)
    return Status::error(std::string("cannot write ") +
                         dtypeName(tensor.dtype()) + " to .npy");
  // "(2, 3,)": a trailing comma keeps one-element shapes tuples.
  std::string shape = "(";
  for (int64_t d = 0; d < tensor.rank(); ++d)
    shape += std::to_string(tensor.dim(d)) + ", ";
  shape += ")";
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so the data starts on a 64-byte boundary, ending with a newline.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string temporary = path + ".partial";
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file)
      return Status::error("cannot write '" + path + "'");
    uint16_t length = static_cast<uint16_t>(header.size());
    unsigned char lengthBytes[2] = {static_cast<unsigned char>(length & 255),
                                    static_cast<unsigned char>(length >> 8)};
    file.write(kMagic, 6);
    file.put(1);
    file.put(0);
    file.write(reinterpret_cast<const char *>(lengthBytes), 2);
    file.write(header.data(), header.size());
    file.write(static_cast<const char *>(tensor.data()), tensor.sizeInBytes());
    if (!file) {
      file.close();
      std::remove(temporary.c_str());
      return Status::error("cannot write '" + path + "'");
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    return Status::error("cannot write '" + path + "'");
  }
  return Status::success();
}
