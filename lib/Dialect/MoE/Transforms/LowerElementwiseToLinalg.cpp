//===- LowerElementwiseToLinalg.cpp - element-wise moe ops to linalg ------===//
//
// Part of moe-compiler.
//
// The entry to the GPU kernel path (issue 6): element-wise moe ops and
// rms_norm become linalg.generic ops, which upstream MLIR fuses, maps onto
// GPU blocks and threads and compiles through NVVM. Bodies compute in f32:
// f16 and bf16 tensors are widened on load and narrowed on store, so the
// reduction of rms_norm accumulates in f32 whatever the storage type.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

#include <limits>

namespace moe {
#define GEN_PASS_DEF_LOWERELEMENTWISETOLINALGPASS
#include "moe/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe

using namespace mlir;
using namespace moe;

namespace {

/// A statically shaped tensor of f32, f16 or bf16, or null.
RankedTensorType floatTensor(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor || !tensor.hasStaticShape())
    return {};
  Type element = tensor.getElementType();
  return element.isF32() || element.isF16() || element.isBF16() ? tensor
                                                                : nullptr;
}

/// Element computations in f32, the type every body works in.
struct Body {
  OpBuilder &b;
  Location loc;

  Value f32(double value) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
  }
  Value widen(Value value) {
    return value.getType().isF32()
               ? value
               : arith::ExtFOp::create(b, loc, b.getF32Type(), value);
  }
  Value narrow(Value value, Type type) {
    return type.isF32() ? value : arith::TruncFOp::create(b, loc, type, value);
  }
  Value add(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, loc, x, y); }
  /// 1 / (1 + exp(-x)).
  Value sigmoid(Value x) {
    Value negated = arith::NegFOp::create(b, loc, x);
    return div(f32(1.0), add(f32(1.0), math::ExpOp::create(b, loc, negated)));
  }

  /// The unary moe op `op` applied to `x`, or null for another op.
  Value unary(Operation *op, Value x) {
    if (isa<NegOp>(op))
      return arith::NegFOp::create(b, loc, x);
    if (isa<AbsOp>(op))
      return math::AbsFOp::create(b, loc, x);
    if (isa<ExpOp>(op))
      return math::ExpOp::create(b, loc, x);
    if (isa<LogOp>(op))
      return math::LogOp::create(b, loc, x);
    if (isa<SqrtOp>(op))
      return math::SqrtOp::create(b, loc, x);
    if (isa<ReciprocalOp>(op))
      return div(f32(1.0), x);
    if (isa<TanhOp>(op))
      return math::TanhOp::create(b, loc, x);
    if (isa<ErfOp>(op))
      return math::ErfOp::create(b, loc, x);
    if (isa<CosOp>(op))
      return math::CosOp::create(b, loc, x);
    if (isa<SinOp>(op))
      return math::SinOp::create(b, loc, x);
    if (isa<SigmoidOp>(op))
      return sigmoid(x);
    if (isa<ReluOp>(op))
      return arith::MaximumFOp::create(b, loc, x, f32(0.0));
    if (isa<SiluOp>(op))
      return mul(x, sigmoid(x));
    if (auto gelu = dyn_cast<GeluOp>(op)) {
      Value inner;
      if (gelu.getTanh()) {
        // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        Value cube = mul(mul(x, x), x);
        Value poly = add(x, mul(f32(0.044715), cube));
        inner =
            math::TanhOp::create(b, loc, mul(f32(0.79788456080286536), poly));
      } else {
        // 0.5 x (1 + erf(x / sqrt(2)))
        inner = math::ErfOp::create(b, loc, mul(x, f32(0.70710678118654752)));
      }
      return mul(mul(f32(0.5), x), add(f32(1.0), inner));
    }
    return {};
  }

  /// The binary moe op `op` applied to `x` and `y`, or null for another op.
  Value binary(Operation *op, Value x, Value y) {
    if (isa<AddOp>(op))
      return add(x, y);
    if (isa<SubOp>(op))
      return arith::SubFOp::create(b, loc, x, y);
    if (isa<MulOp>(op))
      return mul(x, y);
    if (isa<DivOp>(op))
      return div(x, y);
    if (isa<PowOp>(op))
      return math::PowFOp::create(b, loc, x, y);
    if (isa<MaxOp>(op))
      return arith::MaximumFOp::create(b, loc, x, y);
    if (isa<MinOp>(op))
      return arith::MinimumFOp::create(b, loc, x, y);
    return {};
  }
};

/// How an operand of shape `shape` is read at the indices of `result`
/// under numpy broadcasting: aligned at the back, a size-1 dimension that
/// the result stretches is read at index 0.
AffineMap broadcastMap(ArrayRef<int64_t> shape, ArrayRef<int64_t> result,
                       MLIRContext *context) {
  SmallVector<AffineExpr> exprs;
  size_t lead = result.size() - shape.size();
  for (size_t i = 0; i < shape.size(); ++i)
    exprs.push_back(shape[i] == 1 && result[lead + i] != 1
                        ? getAffineConstantExpr(0, context)
                        : getAffineDimExpr(lead + i, context));
  return AffineMap::get(result.size(), 0, exprs, context);
}

/// One parallel generic over `resultType` reading `inputs` (broadcast to
/// it) and computing `compute` on their widened elements.
Value buildElementwise(OpBuilder &builder, Location loc,
                       RankedTensorType resultType, ValueRange inputs,
                       function_ref<Value(Body &, ArrayRef<Value>)> compute) {
  MLIRContext *context = builder.getContext();
  SmallVector<AffineMap> maps;
  for (Value input : inputs)
    maps.push_back(
        broadcastMap(cast<RankedTensorType>(input.getType()).getShape(),
                     resultType.getShape(), context));
  maps.push_back(
      AffineMap::getMultiDimIdentityMap(resultType.getRank(), context));
  SmallVector<utils::IteratorType> iterators(resultType.getRank(),
                                             utils::IteratorType::parallel);
  Value empty = tensor::EmptyOp::create(builder, loc, resultType.getShape(),
                                        resultType.getElementType());
  auto generic = linalg::GenericOp::create(
      builder, loc, TypeRange{resultType}, inputs, ValueRange{empty}, maps,
      iterators, [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
        Body body{b, bodyLoc};
        SmallVector<Value> elements;
        for (Value arg : args.drop_back())
          elements.push_back(body.widen(arg));
        Value result = compute(body, elements);
        linalg::YieldOp::create(
            b, bodyLoc, body.narrow(result, resultType.getElementType()));
      });
  return generic.getResult(0);
}

/// Reduces the last axis of `input` into an f32 tensor of its leading
/// dimensions, from `init`: acc = combine(acc, x, row) with `row` the
/// elements of `rowInputs` (f32, the leading dimensions) at x's row.
Value reduceLastAxis(
    OpBuilder &builder, Location loc, Value input, ValueRange rowInputs,
    double init,
    function_ref<Value(Body &, Value, Value, ArrayRef<Value>)> combine) {
  auto type = cast<RankedTensorType>(input.getType());
  MLIRContext *context = builder.getContext();
  int64_t rank = type.getRank();
  auto resultType =
      RankedTensorType::get(type.getShape().drop_back(), builder.getF32Type());
  Value start =
      arith::ConstantOp::create(builder, loc, builder.getF32FloatAttr(init));
  Value empty = tensor::EmptyOp::create(builder, loc, resultType.getShape(),
                                        builder.getF32Type());
  Value filled =
      linalg::FillOp::create(builder, loc, ValueRange{start}, ValueRange{empty})
          .getResult(0);
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, context);
  AffineMap rows = identity.dropResult(rank - 1);
  SmallVector<Value> inputs{input};
  llvm::append_range(inputs, rowInputs);
  SmallVector<AffineMap> maps{identity};
  maps.append(rowInputs.size() + 1, rows);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  iterators.back() = utils::IteratorType::reduction;
  auto generic = linalg::GenericOp::create(
      builder, loc, TypeRange{resultType}, inputs, ValueRange{filled}, maps,
      iterators, [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
        Body body{b, bodyLoc};
        SmallVector<Value> row(args.drop_front().drop_back());
        linalg::YieldOp::create(
            b, bodyLoc, combine(body, args.back(), body.widen(args[0]), row));
      });
  return generic.getResult(0);
}

/// An element-wise generic over `input`'s shape, reading `input`, the
/// elements of `rowInputs` (the leading dimensions) at the row and of
/// `columnInputs` ([width]) at the column.
Value mapWithRows(
    OpBuilder &builder, Location loc, RankedTensorType resultType, Value input,
    ValueRange rowInputs, ValueRange columnInputs,
    function_ref<Value(Body &, Value, ArrayRef<Value>, ArrayRef<Value>)>
        compute) {
  MLIRContext *context = builder.getContext();
  int64_t rank = resultType.getRank();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, context);
  AffineMap rows = identity.dropResult(rank - 1);
  AffineMap column =
      AffineMap::get(rank, 0, getAffineDimExpr(rank - 1, context));
  SmallVector<Value> inputs{input};
  llvm::append_range(inputs, rowInputs);
  llvm::append_range(inputs, columnInputs);
  SmallVector<AffineMap> maps{identity};
  maps.append(rowInputs.size(), rows);
  maps.append(columnInputs.size(), column);
  maps.push_back(identity);
  SmallVector<utils::IteratorType> parallel(rank,
                                            utils::IteratorType::parallel);
  Value empty = tensor::EmptyOp::create(builder, loc, resultType.getShape(),
                                        resultType.getElementType());
  size_t numRows = rowInputs.size();
  auto generic = linalg::GenericOp::create(
      builder, loc, TypeRange{resultType}, inputs, ValueRange{empty}, maps,
      parallel, [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
        Body body{b, bodyLoc};
        SmallVector<Value> row, columns;
        for (size_t i = 0; i < numRows; ++i)
          row.push_back(args[1 + i]);
        for (Value value : args.drop_front(1 + numRows).drop_back())
          columns.push_back(body.widen(value));
        Value result = compute(body, body.widen(args[0]), row, columns);
        linalg::YieldOp::create(
            b, bodyLoc, body.narrow(result, resultType.getElementType()));
      });
  return generic.getResult(0);
}

/// Whether `axis` names the last dimension of `type`.
bool isLastAxis(RankedTensorType type, int64_t axis) {
  return type.getRank() >= 1 && (axis == -1 || axis == type.getRank() - 1);
}

/// rms_norm over the last axis: a sum-of-squares reduction (f32), then one
/// element-wise generic. Null when the op normalises over more axes.
Value lowerRMSNorm(OpBuilder &builder, RMSNormOp op) {
  RankedTensorType type = floatTensor(op.getResult().getType());
  RankedTensorType scaleType = floatTensor(op.getScale().getType());
  if (!type || !scaleType || !isLastAxis(type, op.getAxisAttr().getInt()) ||
      scaleType.getRank() != 1 ||
      scaleType.getDimSize(0) != type.getShape().back())
    return {};
  Location loc = op.getLoc();
  double width = static_cast<double>(type.getShape().back());
  double epsilon = op.getEpsilon().convertToDouble();
  Value sums =
      reduceLastAxis(builder, loc, op.getInput(), {}, 0.0,
                     [](Body &body, Value acc, Value x, ArrayRef<Value>) {
                       return body.add(acc, body.mul(x, x));
                     });
  return mapWithRows(
      builder, loc, type, op.getInput(), {sums}, {op.getScale()},
      [&](Body &body, Value x, ArrayRef<Value> row, ArrayRef<Value> column) {
        Value mean = body.div(row[0], body.f32(width));
        Value inverse = math::RsqrtOp::create(
            body.b, body.loc, body.add(mean, body.f32(epsilon)));
        return body.mul(body.mul(x, inverse), column[0]);
      });
}

/// softmax over the last axis: the row maximum, the sum of exp(x - max),
/// then exp(x - max) / sum. Null for another axis.
Value lowerSoftmax(OpBuilder &builder, SoftmaxOp op) {
  RankedTensorType type = floatTensor(op.getResult().getType());
  if (!type || !isLastAxis(type, op.getAxisAttr().getInt()))
    return {};
  Location loc = op.getLoc();
  Value input = op.getInput();
  Value maxima = reduceLastAxis(
      builder, loc, input, {}, -std::numeric_limits<double>::infinity(),
      [](Body &body, Value acc, Value x, ArrayRef<Value>) -> Value {
        return arith::MaximumFOp::create(body.b, body.loc, acc, x);
      });
  auto shifted = [](Body &body, Value x, Value maximum) -> Value {
    Value difference = arith::SubFOp::create(body.b, body.loc, x, maximum);
    return math::ExpOp::create(body.b, body.loc, difference);
  };
  Value sums =
      reduceLastAxis(builder, loc, input, {maxima}, 0.0,
                     [&](Body &body, Value acc, Value x, ArrayRef<Value> row) {
                       return body.add(acc, shifted(body, x, row[0]));
                     });
  return mapWithRows(
      builder, loc, type, input, {maxima, sums}, {},
      [&](Body &body, Value x, ArrayRef<Value> row, ArrayRef<Value>) {
        return body.div(shifted(body, x, row[0]), row[1]);
      });
}

struct LowerElementwiseToLinalgPass
    : moe::impl::LowerElementwiseToLinalgPassBase<
          LowerElementwiseToLinalgPass> {
  void runOnOperation() override {
    SmallVector<Operation *> candidates;
    getOperation()->walk([&](Operation *op) {
      if (isa<NegOp, AbsOp, ExpOp, LogOp, SqrtOp, ReciprocalOp, TanhOp, ErfOp,
              CosOp, SinOp, SigmoidOp, ReluOp, SiluOp, GeluOp, AddOp, SubOp,
              MulOp, DivOp, PowOp, MaxOp, MinOp, RMSNormOp, SoftmaxOp>(op))
        candidates.push_back(op);
    });
    for (Operation *op : candidates) {
      OpBuilder builder(op);
      Value replacement;
      if (auto norm = dyn_cast<RMSNormOp>(op)) {
        replacement = lowerRMSNorm(builder, norm);
      } else if (auto softmax = dyn_cast<SoftmaxOp>(op)) {
        replacement = lowerSoftmax(builder, softmax);
      } else {
        RankedTensorType type = floatTensor(op->getResult(0).getType());
        bool operandsOk = llvm::all_of(op->getOperandTypes(), [](Type t) {
          return static_cast<bool>(floatTensor(t));
        });
        if (!type || !operandsOk)
          continue;
        replacement = buildElementwise(
            builder, op->getLoc(), type, op->getOperands(),
            [&](Body &body, ArrayRef<Value> elements) {
              return elements.size() == 1
                         ? body.unary(op, elements[0])
                         : body.binary(op, elements[0], elements[1]);
            });
      }
      if (!replacement)
        continue;
      op->getResult(0).replaceAllUsesWith(replacement);
      op->erase();
    }
  }
};

} // namespace
