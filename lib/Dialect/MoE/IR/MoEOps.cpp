//===- MoEOps.cpp - moe dialect operations, attributes, verifiers ---------===//
//
// Part of moe-compiler.
//
// Verifier messages follow one rule: say which operand or attribute is wrong,
// what it is, and what it should be, so a user can fix the IR or the model
// without reading this file. Dynamic dimensions (`?`) match anything.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Runtime/KernelLaunch.h"

#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallSet.h"
#include "llvm/Support/InterleavedRange.h"
#include "llvm/Support/Path.h"

#include <cmath>

using namespace mlir;
using namespace moe;

#include "moe/Dialect/MoE/IR/MoEEnums.cpp.inc"

//===----------------------------------------------------------------------===//
// Shape helpers
//===----------------------------------------------------------------------===//

namespace {

bool isDynamic(int64_t dim) { return ShapedType::isDynamic(dim); }

bool dimsCompatible(int64_t a, int64_t b) {
  return isDynamic(a) || isDynamic(b) || a == b;
}

ArrayRef<int64_t> shapeOf(Value value) {
  return cast<ShapedType>(value.getType()).getShape();
}

Type elementTypeOf(Value value) {
  return cast<ShapedType>(value.getType()).getElementType();
}

/// Resolves an ONNX axis (negative counts from the back) against `rank`.
/// Emits "<what> N is out of range for rank R" on failure.
FailureOr<int64_t> resolveAxis(Operation *op, StringRef what, int64_t axis,
                               int64_t rank) {
  if (axis < -rank || axis >= rank || rank == 0) {
    return op->emitOpError()
           << what << " " << axis << " is out of range for a rank-" << rank
           << " operand; use a value in [" << -rank << ", " << rank - 1 << "]";
  }
  return axis < 0 ? axis + rank : axis;
}

/// Checks `value` against an expected shape described as `layout` (for
/// example "[experts, hidden, inter]"). Dynamic entries of `expected` match
/// anything.
LogicalResult verifyShape(Operation *op, StringRef name, Value value,
                          ArrayRef<int64_t> expected, StringRef layout) {
  ArrayRef<int64_t> actual = shapeOf(value);
  if (actual.size() != expected.size()) {
    return op->emitOpError()
           << "'" << name << "' has rank " << actual.size() << "; expected "
           << layout << " (rank " << expected.size() << ")";
  }
  for (auto [a, e] : llvm::zip_equal(actual, expected)) {
    if (!dimsCompatible(a, e)) {
      return op->emitOpError()
             << "'" << name << "' has shape " << formatShape(actual)
             << "; expected " << layout << " = " << formatShape(expected);
    }
  }
  return success();
}

LogicalResult verifySameElementType(Operation *op, StringRef name, Value value,
                                    Type expected) {
  if (elementTypeOf(value) != expected) {
    return op->emitOpError() << "'" << name << "' has element type "
                             << elementTypeOf(value) << " but " << expected
                             << " is expected; insert a moe.cast to convert it";
  }
  return success();
}

/// The result shape of a dimension that must equal `a` and `b` when both are
/// static.
int64_t meetDims(int64_t a, int64_t b) { return isDynamic(a) ? b : a; }

} // namespace

//===----------------------------------------------------------------------===//
// Public helpers
//===----------------------------------------------------------------------===//

bool moe::isGatedActivation(ActivationKind kind) {
  return kind == ActivationKind::swiglu || kind == ActivationKind::geglu;
}

std::optional<int64_t> moe::getStorageSizeInBytes(Type elementType,
                                                  int64_t numElements) {
  unsigned bits = 0;
  if (auto floatType = dyn_cast<FloatType>(elementType))
    bits = floatType.getWidth();
  else if (auto intType = dyn_cast<IntegerType>(elementType))
    bits = intType.getWidth();
  else
    return std::nullopt;
  // ONNX stores a bool in a whole byte and packs 4-bit types two per byte.
  if (bits == 1)
    return numElements;
  if (bits != 4 && bits % 8 != 0)
    return std::nullopt;
  return (numElements * bits + 7) / 8;
}

FailureOr<SmallVector<int64_t>> moe::broadcastShapes(ArrayRef<int64_t> lhs,
                                                     ArrayRef<int64_t> rhs) {
  size_t rank = std::max(lhs.size(), rhs.size());
  SmallVector<int64_t> result(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t a = i < rank - lhs.size() ? 1 : lhs[i - (rank - lhs.size())];
    int64_t b = i < rank - rhs.size() ? 1 : rhs[i - (rank - rhs.size())];
    if (a == 1)
      result[i] = b;
    else if (b == 1)
      result[i] = a;
    else if (isDynamic(a) || isDynamic(b))
      result[i] = meetDims(a, b);
    else if (a == b)
      result[i] = a;
    else
      return failure();
  }
  return result;
}

FailureOr<SmallVector<int64_t>>
moe::inferMatMulShape(ArrayRef<int64_t> lhs, ArrayRef<int64_t> rhs,
                      llvm::raw_ostream &whyNot) {
  if (lhs.empty() || rhs.empty()) {
    whyNot << "operands must have rank 1 or more, not scalars";
    return failure();
  }
  // Promote 1-D operands as numpy does, then broadcast the batch dimensions.
  SmallVector<int64_t> a(lhs), b(rhs);
  if (a.size() == 1)
    a.insert(a.begin(), 1);
  if (b.size() == 1)
    b.push_back(1);
  int64_t k1 = a.back(), k2 = b[b.size() - 2];
  if (!dimsCompatible(k1, k2)) {
    whyNot << "contracting dimensions differ: " << formatShape(lhs) << " times "
           << formatShape(rhs)
           << " needs the last dimension of the left operand (" << k1
           << ") to equal the second to last of the right (" << k2 << ")";
    return failure();
  }
  FailureOr<SmallVector<int64_t>> batch = broadcastShapes(
      ArrayRef<int64_t>(a).drop_back(2), ArrayRef<int64_t>(b).drop_back(2));
  if (failed(batch)) {
    whyNot << "batch dimensions of " << formatShape(lhs) << " and "
           << formatShape(rhs) << " do not broadcast";
    return failure();
  }
  SmallVector<int64_t> result = *batch;
  if (lhs.size() > 1)
    result.push_back(a[a.size() - 2]);
  if (rhs.size() > 1)
    result.push_back(b.back());
  return result;
}

int64_t moe::sliceDimSize(int64_t dim, int64_t start, int64_t end,
                          int64_t step) {
  // ONNX clamping: negative bounds count from the back, then clamp to
  // [0, dim] for positive steps and [-1, dim - 1] for negative ones. Ends
  // near INT64_MIN mean "before the first element" and must not wrap.
  if (start < 0)
    start += dim;
  if (end < 0 && end > std::numeric_limits<int64_t>::min() / 2)
    end += dim;
  // Counts are ceil(distance / |step|), written so that steps near the
  // int64 limits cannot overflow.
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    return end > start ? (end - start - 1) / step + 1 : 0;
  }
  start = std::clamp<int64_t>(start, 0, dim - 1);
  end = std::clamp<int64_t>(end, -1, dim - 1);
  if (start <= end)
    return 0;
  uint64_t magnitude = uint64_t(0) - static_cast<uint64_t>(step);
  uint64_t distance = static_cast<uint64_t>(start - end);
  return static_cast<int64_t>((distance - 1) / magnitude + 1);
}

int64_t moe::expertCapacity(double capacityFactor, int64_t tokens, int64_t topK,
                            int64_t experts) {
  return static_cast<int64_t>(
      std::ceil(capacityFactor * static_cast<double>(tokens * topK) /
                static_cast<double>(experts)));
}

std::string moe::formatShape(ArrayRef<int64_t> shape) {
  if (shape.empty())
    return "scalar";
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      shape, os,
      [&](int64_t dim) {
        if (isDynamic(dim))
          os << '?';
        else
          os << dim;
      },
      "x");
  return text;
}

LogicalResult moe::detail::verifyBroadcastingOp(Operation *op) {
  // Every operand that carries data (not the i1 condition of moe.where, not
  // compared operands for moe.compare) must share the result element type.
  SmallVector<int64_t> shape;
  bool first = true;
  for (Value operand : op->getOperands()) {
    ArrayRef<int64_t> operandShape = shapeOf(operand);
    if (first) {
      shape.assign(operandShape.begin(), operandShape.end());
      first = false;
      continue;
    }
    FailureOr<SmallVector<int64_t>> broadcast =
        broadcastShapes(shape, operandShape);
    if (failed(broadcast)) {
      return op->emitOpError()
             << "operand shapes do not broadcast: " << formatShape(shape)
             << " and " << formatShape(operandShape)
             << " differ in a dimension where neither is 1";
    }
    shape = std::move(*broadcast);
  }

  Value result = op->getResult(0);
  ArrayRef<int64_t> resultShape = shapeOf(result);
  bool shapeMatches = resultShape.size() == shape.size();
  for (size_t i = 0; shapeMatches && i < shape.size(); ++i)
    shapeMatches = dimsCompatible(resultShape[i], shape[i]);
  if (!shapeMatches) {
    return op->emitOpError() << "result shape " << formatShape(resultShape)
                             << " is not the broadcast shape "
                             << formatShape(shape) << " of the operands";
  }

  // Element types: data operands and (except for compare) the result agree.
  SmallVector<Value> dataValues;
  if (isa<WhereOp>(op)) {
    dataValues = {op->getOperand(1), op->getOperand(2), result};
  } else if (isa<CompareOp>(op)) {
    dataValues = {op->getOperand(0), op->getOperand(1)};
  } else {
    dataValues.append(op->operand_begin(), op->operand_end());
    dataValues.push_back(result);
  }
  Type elementType = elementTypeOf(dataValues.front());
  for (Value value : dataValues) {
    if (elementTypeOf(value) != elementType) {
      return op->emitOpError() << "mixes element types " << elementType
                               << " and " << elementTypeOf(value)
                               << "; ONNX requires one type, insert a moe.cast";
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

LogicalResult StorageAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                  StringRef file, int64_t offset,
                                  int64_t length) {
  if (file.empty())
    return emitError() << "storage file name is empty";
  if (llvm::sys::path::is_absolute(file) || file.starts_with("/")) {
    return emitError() << "storage file '" << file
                       << "' is absolute; weight files must be relative to "
                          "the model directory";
  }
  for (StringRef component : llvm::make_range(llvm::sys::path::begin(file),
                                              llvm::sys::path::end(file))) {
    if (component == "..") {
      return emitError() << "storage file '" << file
                         << "' contains '..'; weight files must stay inside "
                            "the model directory";
    }
  }
  if (offset < 0 || length < 0) {
    return emitError() << "storage offset " << offset << " and length "
                       << length << " must not be negative";
  }
  if (offset > std::numeric_limits<int64_t>::max() - length) {
    return emitError() << "storage range offset " << offset << " + length "
                       << length << " overflows a 64-bit file offset";
  }
  return success();
}

LogicalResult SliceAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                ArrayRef<int64_t> offsets,
                                ArrayRef<int64_t> sizes) {
  if (offsets.size() != sizes.size()) {
    return emitError() << "slice has " << offsets.size() << " offsets but "
                       << sizes.size() << " sizes; give one of each per "
                       << "dimension";
  }
  for (auto [offset, size] : llvm::zip_equal(offsets, sizes)) {
    if (offset < 0 || size <= 0) {
      return emitError() << "slice offsets must be non-negative and sizes "
                            "positive, got offset "
                         << offset << " and size " << size;
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  RankedTensorType type = getTensorType();
  std::optional<int64_t> bytes =
      getStorageSizeInBytes(type.getElementType(), type.getNumElements());
  if (!bytes) {
    return emitOpError() << "element type " << type.getElementType()
                         << " cannot be stored in a weight file; use a float "
                            "or integer type";
  }
  if (*bytes != getStorage().getLength()) {
    return emitOpError() << "storage length " << getStorage().getLength()
                         << " does not match " << type << ", which needs "
                         << *bytes << " bytes";
  }
  return success();
}

LogicalResult
WeightRefOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto weight =
      symbolTable.lookupNearestSymbolFrom<WeightOp>(*this, getNameAttr());
  if (!weight) {
    return emitOpError() << "'" << getName()
                         << "' does not name a moe.weight in an enclosing "
                            "symbol table";
  }
  RankedTensorType weightType = weight.getTensorType();
  RankedTensorType resultType = getResult().getType();
  if (resultType.getElementType() != weightType.getElementType()) {
    return emitOpError() << "result element type "
                         << resultType.getElementType() << " differs from "
                         << weightType.getElementType() << " of @" << getName();
  }
  std::optional<SliceAttr> slice = getSlice();
  if (!slice) {
    if (resultType.getShape() != weightType.getShape()) {
      return emitOpError() << "result shape "
                           << formatShape(resultType.getShape())
                           << " differs from "
                           << formatShape(weightType.getShape()) << " of @"
                           << getName() << "; add a slice to read part of it";
    }
    return success();
  }
  ArrayRef<int64_t> offsets = slice->getOffsets();
  ArrayRef<int64_t> sizes = slice->getSizes();
  if (static_cast<int64_t>(sizes.size()) != weightType.getRank()) {
    return emitOpError() << "slice has " << sizes.size() << " dimensions but @"
                         << getName() << " has rank " << weightType.getRank();
  }
  for (auto [dim, offset, size] : llvm::enumerate(offsets, sizes)) {
    if (offset + size > weightType.getDimSize(dim)) {
      return emitOpError() << "slice [" << offset << ", " << offset + size
                           << ") of dimension " << dim << " exceeds size "
                           << weightType.getDimSize(dim) << " of @"
                           << getName();
    }
  }
  if (resultType.getShape() != sizes) {
    return emitOpError() << "result shape "
                         << formatShape(resultType.getShape())
                         << " differs from the slice sizes "
                         << formatShape(sizes);
  }
  return success();
}

LogicalResult DequantizeOp::verify() {
  int64_t bits = static_cast<int64_t>(getBits());
  if (bits != 2 && bits != 4 && bits != 8)
    return emitOpError() << "bits = " << bits << " must be 2, 4 or 8";
  ArrayRef<int64_t> codes = shapeOf(getCodes());
  ArrayRef<int64_t> result = shapeOf(getResult());
  if (codes.size() != 3 || result.size() != 3 ||
      llvm::any_of(result, isDynamic))
    return emitOpError() << "codes and result must be [experts, rows, "
                            "columns] with a static result shape";
  int64_t experts = result[0], rows = result[1], columns = result[2];
  auto packed = [&](int64_t count) { return (count * bits + 7) / 8; };
  if (failed(verifyShape(*this, "codes", getCodes(),
                         {experts, rows, packed(columns)},
                         "[experts, rows, packed columns]")))
    return failure();
  if (failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getScales()))))
    return failure();
  if (std::optional<uint64_t> blockSize = getBlockSize()) {
    int64_t size = static_cast<int64_t>(*blockSize);
    if (size < 1 || columns % size != 0)
      return emitOpError() << "block_size = " << size
                           << " must be positive and divide the " << columns
                           << " columns";
    int64_t blocks = columns / size;
    if (failed(verifyShape(*this, "scales", getScales(),
                           {experts, rows, blocks}, "[experts, rows, blocks]")))
      return failure();
    if (getZeroPoints() &&
        failed(verifyShape(*this, "zero_points", getZeroPoints(),
                           {experts, rows, packed(blocks)},
                           "[experts, rows, packed blocks]")))
      return failure();
    return success();
  }
  if (failed(verifyShape(*this, "scales", getScales(), {experts, rows},
                         "[experts, rows]")))
    return failure();
  if (getZeroPoints() &&
      failed(verifyShape(*this, "zero_points", getZeroPoints(),
                         {experts, packed(rows)}, "[experts, packed rows]")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Linear algebra, normalisation and reductions
//===----------------------------------------------------------------------===//

LogicalResult MatMulOp::verify() {
  if (elementTypeOf(getLhs()) != elementTypeOf(getRhs()) ||
      elementTypeOf(getLhs()) != elementTypeOf(getResult())) {
    return emitOpError() << "operands and result must share one element type";
  }
  std::string reason;
  llvm::raw_string_ostream whyNot(reason);
  FailureOr<SmallVector<int64_t>> expected =
      inferMatMulShape(shapeOf(getLhs()), shapeOf(getRhs()), whyNot);
  if (failed(expected))
    return emitOpError() << reason;
  return verifyShape(*this, "result", getResult(), *expected,
                     "the matrix product shape");
}

LogicalResult GemmOp::verify() {
  ArrayRef<int64_t> a = shapeOf(getA());
  ArrayRef<int64_t> b = shapeOf(getB());
  if (a.size() != 2 || b.size() != 2) {
    return emitOpError() << "A and B must be matrices, got " << formatShape(a)
                         << " and " << formatShape(b)
                         << "; use moe.matmul for batched products";
  }
  int64_t m = getTransA() ? a[1] : a[0];
  int64_t k1 = getTransA() ? a[0] : a[1];
  int64_t k2 = getTransB() ? b[1] : b[0];
  int64_t n = getTransB() ? b[0] : b[1];
  if (!dimsCompatible(k1, k2)) {
    return emitOpError() << "contracting dimensions differ: op(A) has " << k1
                         << " columns but op(B) has " << k2 << " rows";
  }
  if (failed(verifyShape(*this, "result", getResult(), {m, n}, "[M, N]")))
    return failure();
  if (Value c = getC()) {
    FailureOr<SmallVector<int64_t>> shape = broadcastShapes(shapeOf(c), {m, n});
    if (failed(shape) || shape->size() != 2 ||
        !dimsCompatible((*shape)[0], m) || !dimsCompatible((*shape)[1], n)) {
      return emitOpError() << "C has shape " << formatShape(shapeOf(c))
                           << ", which does not broadcast to the result "
                           << formatShape({m, n});
    }
  }
  return success();
}

LogicalResult ReduceOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  int64_t rank = input.size();
  llvm::SmallSet<int64_t, 4> reduced;
  for (int64_t axis : getAxes()) {
    FailureOr<int64_t> resolved = resolveAxis(*this, "axis", axis, rank);
    if (failed(resolved))
      return failure();
    if (!reduced.insert(*resolved).second) {
      return emitOpError() << "axis " << axis
                           << " is listed twice (after resolving negative "
                              "axes); list each axis once";
    }
  }
  SmallVector<int64_t> expected;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced.contains(i))
      expected.push_back(input[i]);
    else if (getKeepDims())
      expected.push_back(1);
  }
  if (elementTypeOf(getInput()) != elementTypeOf(getResult()))
    return emitOpError() << "input and result must share one element type";
  return verifyShape(*this, "result", getResult(), expected,
                     "the reduced shape");
}

LogicalResult SoftmaxOp::verify() {
  return resolveAxis(*this, "axis", getAxis(), getInput().getType().getRank());
}

LogicalResult TopKOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  FailureOr<int64_t> axis = resolveAxis(*this, "axis", getAxis(), input.size());
  if (failed(axis))
    return failure();
  int64_t k = getK();
  if (k < 1 || (!isDynamic(input[*axis]) && k > input[*axis])) {
    return emitOpError() << "k = " << k << " must be in [1, "
                         << formatShape(input[*axis]) << "], the size of axis "
                         << static_cast<int64_t>(getAxis());
  }
  SmallVector<int64_t> expected(input);
  expected[*axis] = k;
  if (failed(verifyShape(*this, "values", getValues(), expected,
                         "the input shape with k on the axis")) ||
      failed(verifyShape(*this, "indices", getIndices(), expected,
                         "the input shape with k on the axis")) ||
      failed(verifySameElementType(*this, "values", getValues(),
                                   elementTypeOf(getInput()))))
    return failure();
  return success();
}

/// Shared by the layer and RMS normalisations: `scale` (and `bias`) cover
/// dimensions `axis` to the last of `input`.
static LogicalResult verifyNormalization(Operation *op, Value input,
                                         ArrayRef<Value> params, int64_t axis,
                                         float epsilon) {
  ArrayRef<int64_t> shape = shapeOf(input);
  FailureOr<int64_t> first = resolveAxis(op, "axis", axis, shape.size());
  if (failed(first))
    return failure();
  ArrayRef<int64_t> normalized = shape.drop_front(*first);
  for (Value param : params) {
    if (failed(verifyShape(op, param == params.front() ? "scale" : "bias",
                           param, normalized,
                           "the normalised trailing dimensions")))
      return failure();
  }
  if (!(epsilon >= 0.0f))
    return op->emitOpError() << "epsilon " << epsilon << " must be >= 0";
  if (failed(verifyShape(op, "result", op->getResult(0), shape,
                         "the input shape")))
    return failure();
  return success();
}

LogicalResult LayerNormOp::verify() {
  SmallVector<Value> params = {getScale()};
  if (getBias())
    params.push_back(getBias());
  return verifyNormalization(*this, getInput(), params, getAxis(),
                             getEpsilon().convertToFloat());
}

LogicalResult RMSNormOp::verify() {
  return verifyNormalization(*this, getInput(), {getScale()}, getAxis(),
                             getEpsilon().convertToFloat());
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

LogicalResult GatherOp::verify() {
  ArrayRef<int64_t> data = shapeOf(getData());
  FailureOr<int64_t> axis = resolveAxis(*this, "axis", getAxis(), data.size());
  if (failed(axis))
    return failure();
  SmallVector<int64_t> expected(data.take_front(*axis));
  llvm::append_range(expected, shapeOf(getIndices()));
  llvm::append_range(expected, data.drop_front(*axis + 1));
  if (failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getData()))))
    return failure();
  return verifyShape(*this, "result", getResult(), expected,
                     "data.shape[:axis] + indices.shape + data.shape[axis+1:]");
}

/// GatherElements and ScatterElements: a valid axis, and indices of the
/// data's rank.
static LogicalResult verifyElementIndices(Operation *op, Value data,
                                          Value indices, int64_t axis) {
  int64_t rank = shapeOf(data).size();
  if (failed(resolveAxis(op, "axis", axis, rank)))
    return failure();
  if (static_cast<int64_t>(shapeOf(indices).size()) != rank) {
    return op->emitOpError()
           << "indices have rank " << shapeOf(indices).size()
           << " but data has rank " << rank << "; they must be equal";
  }
  return success();
}

LogicalResult GatherElementsOp::verify() {
  if (failed(verifyElementIndices(*this, getData(), getIndices(), getAxis())))
    return failure();
  if (failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getData()))))
    return failure();
  return verifyShape(*this, "result", getResult(), shapeOf(getIndices()),
                     "the indices shape");
}

LogicalResult ScatterElementsOp::verify() {
  ArrayRef<int64_t> data = shapeOf(getData());
  if (failed(verifyElementIndices(*this, getData(), getIndices(), getAxis())))
    return failure();
  if (failed(verifyShape(*this, "updates", getUpdates(), shapeOf(getIndices()),
                         "the indices shape")) ||
      failed(verifySameElementType(*this, "updates", getUpdates(),
                                   elementTypeOf(getData()))) ||
      failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getData()))))
    return failure();
  return verifyShape(*this, "result", getResult(), data, "the data shape");
}

LogicalResult ScatterNDOp::verify() {
  ArrayRef<int64_t> data = shapeOf(getData());
  ArrayRef<int64_t> indices = shapeOf(getIndices());
  if (indices.empty() || isDynamic(indices.back())) {
    return emitOpError() << "indices must have a static last dimension (the "
                            "index tuple length), got "
                         << formatShape(indices);
  }
  int64_t q = indices.back();
  if (q < 1 || q > static_cast<int64_t>(data.size())) {
    return emitOpError() << "index tuples have length " << q
                         << " but data has rank " << data.size()
                         << "; the length must be in [1, rank]";
  }
  SmallVector<int64_t> expected(indices.drop_back());
  llvm::append_range(expected, data.drop_front(q));
  if (failed(verifyShape(*this, "updates", getUpdates(), expected,
                         "indices.shape[:-1] + data.shape[q:]")) ||
      failed(verifySameElementType(*this, "updates", getUpdates(),
                                   elementTypeOf(getData()))) ||
      failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getData()))))
    return failure();
  return verifyShape(*this, "result", getResult(), data, "the data shape");
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::verify() {
  auto input = cast<RankedTensorType>(getInput().getType());
  auto result = cast<RankedTensorType>(getResult().getType());
  if (input.getElementType() != result.getElementType())
    return emitOpError() << "reshape cannot change the element type";
  if (!result.hasStaticShape() && !getShape()) {
    return emitOpError() << "result " << result
                         << " has dynamic dimensions; pass the runtime shape "
                            "as a second operand";
  }
  if (Value shape = getShape()) {
    ArrayRef<int64_t> shapeShape = shapeOf(shape);
    if (shapeShape.size() != 1 ||
        !dimsCompatible(shapeShape[0], result.getRank())) {
      return emitOpError() << "shape operand must be 1-D with "
                           << result.getRank() << " entries, got "
                           << formatShape(shapeShape);
    }
  }
  if (input.hasStaticShape() && result.hasStaticShape() &&
      input.getNumElements() != result.getNumElements()) {
    return emitOpError() << "cannot reshape " << input.getNumElements()
                         << " elements (" << formatShape(input.getShape())
                         << ") into " << result.getNumElements() << " ("
                         << formatShape(result.getShape()) << ")";
  }
  return success();
}

LogicalResult TransposeOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  ArrayRef<int64_t> permutation = getPermutation();
  if (permutation.size() != input.size()) {
    return emitOpError() << "permutation has " << permutation.size()
                         << " entries but the input has rank " << input.size();
  }
  SmallVector<bool> seen(input.size(), false);
  SmallVector<int64_t> expected;
  for (int64_t index : permutation) {
    if (index < 0 || index >= static_cast<int64_t>(input.size()) ||
        seen[index]) {
      return emitOpError() << "permutation [" << llvm::interleaved(permutation)
                           << "] must list each of 0 to " << input.size() - 1
                           << " exactly once";
    }
    seen[index] = true;
    expected.push_back(input[index]);
  }
  if (failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getInput()))))
    return failure();
  return verifyShape(*this, "result", getResult(), expected,
                     "the permuted input shape");
}

LogicalResult ExpandOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  ArrayRef<int64_t> result = shapeOf(getResult());
  FailureOr<SmallVector<int64_t>> shape = broadcastShapes(input, result);
  bool matches = succeeded(shape) && shape->size() == result.size();
  for (size_t i = 0; matches && i < result.size(); ++i)
    matches = dimsCompatible((*shape)[i], result[i]);
  if (!matches) {
    return emitOpError() << "input shape " << formatShape(input)
                         << " does not broadcast to the result shape "
                         << formatShape(result);
  }
  return verifySameElementType(*this, "result", getResult(),
                               elementTypeOf(getInput()));
}

LogicalResult SliceOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  size_t count = getStarts().size();
  if (getEnds().size() != count || getAxes().size() != count ||
      getSteps().size() != count) {
    return emitOpError() << "starts, ends, axes and steps must have one entry "
                            "per sliced axis, got "
                         << count << ", " << getEnds().size() << ", "
                         << getAxes().size() << " and " << getSteps().size();
  }
  SmallVector<int64_t> expected(input);
  llvm::SmallSet<int64_t, 4> sliced;
  for (size_t i = 0; i < count; ++i) {
    FailureOr<int64_t> axis =
        resolveAxis(*this, "axis", getAxes()[i], input.size());
    if (failed(axis))
      return failure();
    if (!sliced.insert(*axis).second) {
      return emitOpError() << "axis " << getAxes()[i]
                           << " is listed twice (after resolving negative "
                              "axes); list each axis once";
    }
    int64_t step = getSteps()[i];
    if (step == 0)
      return emitOpError() << "step of axis " << getAxes()[i]
                           << " is 0; steps must be non-zero";
    int64_t dim = input[*axis];
    if (isDynamic(dim)) {
      expected[*axis] = ShapedType::kDynamic;
      continue;
    }
    expected[*axis] = sliceDimSize(dim, getStarts()[i], getEnds()[i], step);
  }
  if (failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getInput()))))
    return failure();
  return verifyShape(*this, "result", getResult(), expected,
                     "the sliced input shape");
}

LogicalResult ConcatOp::verify() {
  if (getInputs().empty())
    return emitOpError() << "needs at least one input";
  ArrayRef<int64_t> first = shapeOf(getInputs().front());
  FailureOr<int64_t> axis = resolveAxis(*this, "axis", getAxis(), first.size());
  if (failed(axis))
    return failure();
  SmallVector<int64_t> expected(first);
  expected[*axis] = 0;
  for (auto [index, input] : llvm::enumerate(getInputs())) {
    ArrayRef<int64_t> shape = shapeOf(input);
    bool compatible = shape.size() == first.size();
    for (size_t d = 0; compatible && d < shape.size(); ++d)
      compatible =
          d == static_cast<size_t>(*axis) || dimsCompatible(shape[d], first[d]);
    if (!compatible) {
      return emitOpError() << "input " << index << " has shape "
                           << formatShape(shape) << ", which differs from "
                           << formatShape(first)
                           << " outside the concatenation axis";
    }
    if (failed(verifySameElementType(*this, "input", input,
                                     elementTypeOf(getInputs().front()))))
      return failure();
    if (isDynamic(shape[*axis]) || isDynamic(expected[*axis]))
      expected[*axis] = ShapedType::kDynamic;
    else
      expected[*axis] += shape[*axis];
  }
  return verifyShape(*this, "result", getResult(), expected,
                     "the concatenated shape");
}

LogicalResult SplitOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  FailureOr<int64_t> axis = resolveAxis(*this, "axis", getAxis(), input.size());
  if (failed(axis))
    return failure();
  if (getResults().empty())
    return emitOpError() << "needs at least one result";
  int64_t total = 0;
  bool dynamic = false;
  for (Value result : getResults()) {
    SmallVector<int64_t> expected(input);
    expected[*axis] = shapeOf(result).size() == input.size()
                          ? shapeOf(result)[*axis]
                          : ShapedType::kDynamic;
    if (failed(verifyShape(*this, "result", result, expected,
                           "the input shape outside the split axis")) ||
        failed(verifySameElementType(*this, "result", result,
                                     elementTypeOf(getInput()))))
      return failure();
    dynamic |= isDynamic(expected[*axis]);
    if (!dynamic)
      total += expected[*axis];
  }
  if (!dynamic && !isDynamic(input[*axis]) && total != input[*axis]) {
    return emitOpError() << "result sizes along axis "
                         << static_cast<int64_t>(getAxis()) << " add up to "
                         << total << " but the input has " << input[*axis];
  }
  return success();
}

LogicalResult TriluOp::verify() {
  if (getInput().getType().getRank() < 2) {
    return emitOpError() << "input must have rank 2 or more (the triangle is "
                            "taken over the last two dimensions)";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of Experts
//===----------------------------------------------------------------------===//

namespace {

/// Expert FFN operands shared by moe.layer, moe.expert_ffn and moe.ffn.
/// `experts` is ShapedType::kDynamic-free only for the grouped forms; for the
/// dense moe.ffn it is std::nullopt and weights lose their leading dimension.
struct FFNWeights {
  Value gate, up, down, gateBias, upBias, downBias;
};

LogicalResult verifyFFNWeights(Operation *op, const FFNWeights &w,
                               ActivationKind activation,
                               std::optional<int64_t> experts, int64_t hidden,
                               StringRef prefix = "") {
  auto name = [&](StringRef base) { return (prefix + base).str(); };
  bool gated = isGatedActivation(activation);
  if (gated && !w.gate) {
    return op->emitOpError()
           << "activation " << stringifyActivationKind(activation)
           << " is gated and needs a gate weight; add '" << name("gate")
           << "' or use an ungated activation";
  }
  if (!gated && w.gate) {
    return op->emitOpError()
           << "activation " << stringifyActivationKind(activation)
           << " is not gated but a gate weight is given; use swiglu or geglu, "
              "or drop the gate weight";
  }
  if (!gated && w.gateBias) {
    return op->emitOpError() << "a gate bias needs a gated activation";
  }

  // Leading expert dimension (grouped forms only).
  SmallVector<int64_t> lead;
  std::string leadName;
  if (experts) {
    lead.push_back(*experts);
    leadName = "experts, ";
  }
  ArrayRef<int64_t> upShape = shapeOf(w.up);
  int64_t inter =
      upShape.size() == lead.size() + 2 ? upShape.back() : ShapedType::kDynamic;
  auto shape = [&](int64_t a, int64_t b) {
    SmallVector<int64_t> s(lead);
    s.push_back(a);
    s.push_back(b);
    return s;
  };
  auto vec = [&](int64_t a) {
    SmallVector<int64_t> s(lead);
    s.push_back(a);
    return s;
  };
  std::string ioLayout = "[" + leadName + "hidden, inter]";
  std::string oiLayout = "[" + leadName + "inter, hidden]";
  if (failed(verifyShape(op, name("up_weight"), w.up, shape(hidden, inter),
                         ioLayout)) ||
      failed(verifyShape(op, name("down_weight"), w.down, shape(inter, hidden),
                         oiLayout)))
    return failure();
  if (w.gate && failed(verifyShape(op, name("gate_weight"), w.gate,
                                   shape(hidden, inter), ioLayout)))
    return failure();
  if (w.gateBias && failed(verifyShape(op, name("gate_bias"), w.gateBias,
                                       vec(inter), "[" + leadName + "inter]")))
    return failure();
  if (w.upBias && failed(verifyShape(op, name("up_bias"), w.upBias, vec(inter),
                                     "[" + leadName + "inter]")))
    return failure();
  if (w.downBias &&
      failed(verifyShape(op, name("down_bias"), w.downBias, vec(hidden),
                         "[" + leadName + "hidden]")))
    return failure();
  return success();
}

/// Router operands and attributes shared by moe.layer and moe.router.
/// Returns the number of experts.
FailureOr<int64_t> verifyRouter(Operation *op, Value input, Value routerWeight,
                                Value routerBias, Value correctionBias,
                                int64_t topK, int64_t numGroups,
                                int64_t topKGroups,
                                double routedScalingFactor) {
  ArrayRef<int64_t> x = shapeOf(input);
  if (x.size() != 2) {
    return op->emitOpError()
           << "input must be [tokens, hidden], got shape " << formatShape(x)
           << "; reshape leading dimensions into one";
  }
  int64_t hidden = x[1];
  ArrayRef<int64_t> wr = shapeOf(routerWeight);
  if (wr.size() != 2 || isDynamic(wr[1])) {
    return op->emitOpError()
           << "router_weight must be [hidden, experts] with a static expert "
              "count, got shape "
           << formatShape(wr);
  }
  int64_t experts = wr[1];
  if (failed(verifyShape(op, "router_weight", routerWeight, {hidden, experts},
                         "[hidden, experts]")))
    return failure();
  if (routerBias && failed(verifyShape(op, "router_bias", routerBias, {experts},
                                       "[experts]")))
    return failure();
  if (correctionBias &&
      failed(verifyShape(op, "correction_bias", correctionBias, {experts},
                         "[experts]")))
    return failure();
  if (topK < 1 || topK > experts) {
    return op->emitOpError() << "top_k = " << topK << " must be in [1, "
                             << experts << "], the number of experts";
  }
  if (numGroups < 1 || experts % numGroups != 0) {
    return op->emitOpError()
           << "num_groups = " << numGroups
           << " must be positive and divide the " << experts << " experts";
  }
  if (topKGroups < 1 || topKGroups > numGroups) {
    return op->emitOpError()
           << "top_k_groups = " << topKGroups
           << " must be in [1, num_groups = " << numGroups << "]";
  }
  if (topK > topKGroups * (experts / numGroups)) {
    return op->emitOpError() << "top_k = " << topK << " exceeds the "
                             << topKGroups * (experts / numGroups)
                             << " experts in the top_k_groups = " << topKGroups
                             << " selected groups";
  }
  if (!(routedScalingFactor > 0.0)) {
    return op->emitOpError() << "routed_scaling_factor " << routedScalingFactor
                             << " must be positive";
  }
  return experts;
}

} // namespace

LogicalResult LayerOp::verify() {
  FailureOr<int64_t> experts =
      verifyRouter(*this, getInput(), getRouterWeight(), getRouterBias(),
                   getCorrectionBias(), getTopK(), getNumGroups(),
                   getTopKGroups(), getRoutedScalingFactor().convertToDouble());
  if (failed(experts))
    return failure();
  int64_t hidden = shapeOf(getInput())[1];
  FFNWeights routed{getGateWeight(), getUpWeight(), getDownWeight(),
                    getGateBias(),   getUpBias(),   getDownBias()};
  if (failed(
          verifyFFNWeights(*this, routed, getActivation(), *experts, hidden)))
    return failure();

  bool hasSharedUp = getSharedUpWeight() != nullptr;
  bool hasSharedDown = getSharedDownWeight() != nullptr;
  if (hasSharedUp != hasSharedDown) {
    return emitOpError() << "shared experts need both 'shared_up' and "
                            "'shared_down' weights";
  }
  if (hasSharedUp) {
    FFNWeights shared{getSharedGateWeight(),
                      getSharedUpWeight(),
                      getSharedDownWeight(),
                      nullptr,
                      nullptr,
                      nullptr};
    if (failed(verifyFFNWeights(*this, shared, getActivation(), std::nullopt,
                                hidden, "shared_")))
      return failure();
  } else if (getSharedGateWeight() || getSharedExpertGateWeight()) {
    return emitOpError() << "'shared_gate' and 'shared_expert_gate' need "
                            "shared expert weights ('shared_up', "
                            "'shared_down')";
  }
  if (Value gate = getSharedExpertGateWeight()) {
    if (failed(verifyShape(*this, "shared_expert_gate_weight", gate,
                           {hidden, 1}, "[hidden, 1]")))
      return failure();
  }
  if (std::optional<APFloat> factor = getCapacityFactor()) {
    double value = factor->convertToDouble();
    if (!(value > 0.0 && std::isfinite(value))) {
      return emitOpError() << "capacity_factor " << value
                           << " must be positive and finite; omit it for "
                              "dropless routing";
    }
  }
  return verifyShape(*this, "result", getResult(), shapeOf(getInput()),
                     "the input shape");
}

LogicalResult RouterOp::verify() {
  if (failed(verifyRouter(*this, getInput(), getRouterWeight(), getRouterBias(),
                          getCorrectionBias(), getTopK(), getNumGroups(),
                          getTopKGroups(),
                          getRoutedScalingFactor().convertToDouble())))
    return failure();
  SmallVector<int64_t> expected = {shapeOf(getInput())[0],
                                   static_cast<int64_t>(getTopK())};
  if (failed(verifyShape(*this, "weights", getWeights(), expected,
                         "[tokens, top_k]")))
    return failure();
  return verifyShape(*this, "experts", getExperts(), expected,
                     "[tokens, top_k]");
}

LogicalResult DispatchOp::verify() {
  ArrayRef<int64_t> x = shapeOf(getInput());
  ArrayRef<int64_t> selected = shapeOf(getExperts());
  if (x.size() != 2)
    return emitOpError() << "input must be [tokens, hidden], got shape "
                         << formatShape(x);
  if (failed(verifyShape(*this, "experts", getExperts(),
                         {x[0], ShapedType::kDynamic}, "[tokens, top_k]")))
    return failure();
  int64_t numExperts = getNumExperts();
  if (numExperts < 1)
    return emitOpError() << "num_experts = " << numExperts
                         << " must be positive";
  int64_t rows = ShapedType::kDynamic;
  if (std::optional<int64_t> capacity = getCapacity()) {
    if (*capacity < 1)
      return emitOpError() << "capacity = " << *capacity
                           << " must be positive; omit it for dropless "
                              "dispatch";
    rows = numExperts * *capacity;
  } else if (!isDynamic(x[0]) && !isDynamic(selected[1])) {
    rows = x[0] * selected[1];
  }
  std::string layout = getCapacity() ? "[num_experts * capacity, hidden]"
                                     : "[tokens * top_k, hidden]";
  if (failed(verifyShape(*this, "rows", getRows(), {rows, x[1]}, layout)) ||
      failed(verifySameElementType(*this, "rows", getRows(),
                                   elementTypeOf(getInput()))) ||
      failed(verifyShape(*this, "counts", getCounts(), {numExperts},
                         "[num_experts]")))
    return failure();
  return verifyShape(*this, "sources", getSources(), {rows},
                     getCapacity() ? "[num_experts * capacity]"
                                   : "[tokens * top_k]");
}

LogicalResult ExpertFFNOp::verify() {
  ArrayRef<int64_t> rows = shapeOf(getRows());
  if (rows.size() != 2)
    return emitOpError() << "rows must be [rows, hidden], got shape "
                         << formatShape(rows);
  ArrayRef<int64_t> counts = shapeOf(getCounts());
  if (counts.size() != 1 || isDynamic(counts[0])) {
    return emitOpError() << "counts must be 1-D with one static entry per "
                            "expert, got shape "
                         << formatShape(counts);
  }
  if (failed(verifyFFNWeights(*this,
                              {getGateWeight(), getUpWeight(), getDownWeight(),
                               getGateBias(), getUpBias(), getDownBias()},
                              getActivation(), counts[0], rows[1])))
    return failure();
  if (std::optional<int64_t> capacity = getCapacity()) {
    if (*capacity < 1)
      return emitOpError() << "capacity = " << *capacity
                           << " must be positive; omit it for dropless "
                              "dispatch";
    if (failed(verifyShape(*this, "rows", getRows(),
                           {counts[0] * *capacity, rows[1]},
                           "[experts * capacity, hidden]")))
      return failure();
  }
  return verifyShape(*this, "result", getResult(), rows, "the rows shape");
}

LogicalResult CombineOp::verify() {
  ArrayRef<int64_t> out = shapeOf(getExpertOut());
  ArrayRef<int64_t> weights = shapeOf(getWeights());
  if (out.size() != 2)
    return emitOpError() << "expert_out must be [rows, hidden], got shape "
                         << formatShape(out);
  if (weights.size() != 2)
    return emitOpError() << "weights must be [tokens, top_k], got shape "
                         << formatShape(weights);
  if (failed(verifyShape(*this, "sources", getSources(), {out[0]}, "[rows]")))
    return failure();
  return verifyShape(*this, "result", getResult(), {weights[0], out[1]},
                     "[tokens, hidden]");
}

LogicalResult FFNOp::verify() {
  ArrayRef<int64_t> x = shapeOf(getInput());
  if (x.empty())
    return emitOpError() << "input must be [..., hidden], not a scalar";
  if (failed(verifyFFNWeights(*this,
                              {getGateWeight(), getUpWeight(), getDownWeight(),
                               getGateBias(), getUpBias(), getDownBias()},
                              getActivation(), std::nullopt, x.back())))
    return failure();
  return verifyShape(*this, "result", getResult(), x, "the input shape");
}

LogicalResult TransposeChunksOp::verify() {
  ArrayRef<int64_t> rows = shapeOf(getRows());
  if (rows.empty())
    return emitOpError() << "rows must have rank 1 or more (rows first)";
  ArrayRef<int64_t> counts = shapeOf(getChunkCounts());
  if (counts.size() != 2)
    return emitOpError() << "chunk_counts must be 2-D ([A, B] chunks), got "
                            "shape "
                         << formatShape(counts);
  if (failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getRows()))))
    return failure();
  return verifyShape(*this, "result", getResult(), rows, "the rows shape");
}

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

LogicalResult RaggedAllToAllOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  if (input.empty())
    return emitOpError() << "input must have rank 1 or more (rows first)";
  SmallVector<int64_t> expected(input);
  expected[0] = ShapedType::kDynamic;
  if (failed(verifyShape(*this, "result", getResult(), expected,
                         "[received rows, input trailing dimensions...]")) ||
      failed(verifySameElementType(*this, "result", getResult(),
                                   elementTypeOf(getInput()))))
    return failure();
  ArrayRef<int64_t> sendCounts = shapeOf(getSendCounts());
  if (sendCounts.size() != 1)
    return emitOpError() << "send_counts must be 1-D (one count per peer), "
                            "got shape "
                         << formatShape(sendCounts);
  return verifyShape(*this, "recv_counts", getRecvCounts(), sendCounts,
                     "the send_counts shape");
}

LogicalResult
RaggedAllToAllOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  shard::GridOp grid = shard::getGridOrNull(*this, getGridAttr(), symbolTable);
  if (!grid) {
    return emitOpError() << "'" << getGrid() << "' does not name a shard.grid";
  }
  int64_t groupSize = 1;
  llvm::SmallSet<int16_t, 4> seen;
  for (int16_t axis : getGridAxes()) {
    if (axis < 0 || axis >= grid.getRank()) {
      return emitOpError() << "grid axis " << axis << " is out of range for @"
                           << getGrid() << " of rank " << grid.getRank();
    }
    if (!seen.insert(axis).second)
      return emitOpError() << "grid axis " << axis << " is listed twice";
    int64_t size = grid.getShape()[axis];
    groupSize = isDynamic(size) || isDynamic(groupSize) ? ShapedType::kDynamic
                                                        : groupSize * size;
  }
  ArrayRef<int64_t> sendCounts = shapeOf(getSendCounts());
  if (!dimsCompatible(sendCounts[0], groupSize)) {
    return emitOpError() << "send_counts has " << sendCounts[0]
                         << " entries but the device group along grid_axes "
                            "has "
                         << groupSize << " devices";
  }
  return success();
}

LogicalResult StageTransferOp::verify() {
  if (getInput().getType() != getResult().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " differs from the input type "
                         << getInput().getType();
  if (getGridAxes().size() != 1)
    return emitOpError() << "needs exactly one grid axis (the stages), got "
                         << getGridAxes().size();
  if (getTo().empty())
    return emitOpError() << "sends to no stage";
  for (int64_t stage : getTo())
    if (stage == getFrom() || stage < 0)
      return emitOpError() << "sends from stage " << getFrom() << " to stage "
                           << stage << "; every receiver is another stage";
  return success();
}

LogicalResult
StageTransferOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  shard::GridOp grid = shard::getGridOrNull(*this, getGridAttr(), symbolTable);
  if (!grid)
    return emitOpError() << "'" << getGrid() << "' does not name a shard.grid";
  int16_t axis = getGridAxes().front();
  if (axis < 0 || axis >= grid.getRank())
    return emitOpError() << "grid axis " << axis << " is out of range for @"
                         << getGrid() << " of rank " << grid.getRank();
  int64_t stages = grid.getShape()[axis];
  for (int64_t stage : getTo())
    if (!ShapedType::isDynamic(stages) && stage >= stages)
      return emitOpError() << "sends to stage " << stage << " but @"
                           << getGrid() << " has " << stages << " along axis "
                           << axis;
  return success();
}

//===----------------------------------------------------------------------===//
// LaunchOp
//===----------------------------------------------------------------------===//

LogicalResult LaunchOp::verify() {
  for (int64_t bytes : getScratch())
    if (bytes <= 0)
      return emitOpError() << "has a scratch buffer of " << bytes
                           << " bytes; sizes must be positive";
  std::vector<rt::KernelLaunch> launches;
  std::string error = rt::parseKernelLaunches(
      getLaunches().str(), getInputs().size(), getResults().size(),
      getScratch().size(), launches);
  if (!error.empty())
    return emitOpError() << "has a malformed launch list: " << error;
  return success();
}

#define GET_OP_CLASSES
#include "moe/Dialect/MoE/IR/MoEOps.cpp.inc"
