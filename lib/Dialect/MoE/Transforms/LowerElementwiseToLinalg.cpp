//===- LowerElementwiseToLinalg.cpp - element-wise moe ops to linalg ------===//
//
// Part of moe-compiler.
//
// The entry to the GPU kernel path (issue 6): element-wise moe ops,
// rms_norm, softmax, top_k and the router become linalg ops, which upstream
// MLIR fuses, maps onto GPU blocks and threads and compiles through NVVM.
// Bodies compute in f32: f16 and bf16 tensors are widened on load and narrowed
// on store, so the reduction of rms_norm accumulates in f32 whatever the
// storage type.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoE/IR/MoEOps.h"
#include "moe/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"

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

/// One parallel generic over `resultType` reading `inputs` through `maps`
/// (one per input) and yielding `compute` of their elements as they are.
Value buildMapped(
    OpBuilder &builder, Location loc, RankedTensorType resultType,
    ValueRange inputs, ArrayRef<AffineMap> maps,
    function_ref<Value(OpBuilder &, Location, ArrayRef<Value>)> compute) {
  SmallVector<AffineMap> allMaps(maps);
  allMaps.push_back(AffineMap::getMultiDimIdentityMap(resultType.getRank(),
                                                      builder.getContext()));
  SmallVector<utils::IteratorType> iterators(resultType.getRank(),
                                             utils::IteratorType::parallel);
  Value empty = tensor::EmptyOp::create(builder, loc, resultType.getShape(),
                                        resultType.getElementType());
  auto generic = linalg::GenericOp::create(
      builder, loc, TypeRange{resultType}, inputs, ValueRange{empty}, allMaps,
      iterators, [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
        SmallVector<Value> elements(args.drop_back());
        linalg::YieldOp::create(b, bodyLoc, compute(b, bodyLoc, elements));
      });
  return generic.getResult(0);
}

/// The maps that read each of `inputs` broadcast to `resultType`.
SmallVector<AffineMap> broadcastMaps(ValueRange inputs,
                                     RankedTensorType resultType) {
  SmallVector<AffineMap> maps;
  for (Value input : inputs)
    maps.push_back(
        broadcastMap(cast<RankedTensorType>(input.getType()).getShape(),
                     resultType.getShape(), resultType.getContext()));
  return maps;
}

/// One parallel generic over `resultType` reading `inputs` (broadcast to
/// it) and computing `compute` on their widened elements.
Value buildElementwise(OpBuilder &builder, Location loc,
                       RankedTensorType resultType, ValueRange inputs,
                       function_ref<Value(Body &, ArrayRef<Value>)> compute) {
  return buildMapped(builder, loc, resultType, inputs,
                     broadcastMaps(inputs, resultType),
                     [&](OpBuilder &b, Location bodyLoc, ArrayRef<Value> args) {
                       Body body{b, bodyLoc};
                       SmallVector<Value> elements;
                       for (Value arg : args)
                         elements.push_back(body.widen(arg));
                       return body.narrow(compute(body, elements),
                                          resultType.getElementType());
                     });
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
/// element-wise generic.
Value lowerRMSNorm(OpBuilder &builder, RMSNormOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
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

/// softmax of `input` over its last axis: the row maximum, the sum of
/// exp(x - max), then exp(x - max) / sum, as `type`.
Value buildSoftmax(OpBuilder &builder, Location loc, RankedTensorType type,
                   Value input) {
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

/// softmax over the last axis.
Value lowerSoftmax(OpBuilder &builder, SoftmaxOp op) {
  return buildSoftmax(builder, op.getLoc(),
                      cast<RankedTensorType>(op.getResult().getType()),
                      op.getInput());
}

/// The k best elements of each row of `input` (the last axis), best first,
/// ties to the lower index (ONNX TopK): `values` (f32) and `indices` (i64),
/// each a list of k tensors of the leading dimensions.
///
/// Pass j is one reduction over the row that keeps the best element among
/// those ranked after pass j-1's pick in the order (value, then lower index
/// first). That order is total, so no mask of earlier picks is needed: a
/// GPU thread holds only the previous pick, and k reductions over a row of
/// E experts cost k x E compares, what a router's small k and E want.
void selectTopK(OpBuilder &builder, Location loc, Value input, int64_t k,
                bool smallest, SmallVectorImpl<Value> &values,
                SmallVectorImpl<Value> &indices) {
  auto type = cast<RankedTensorType>(input.getType());
  MLIRContext *context = builder.getContext();
  int64_t rank = type.getRank();
  int64_t width = type.getShape().back();
  ArrayRef<int64_t> rowShape = type.getShape().drop_back();
  Type f32 = builder.getF32Type(), i64 = builder.getI64Type();
  double worst = smallest ? std::numeric_limits<double>::infinity()
                          : -std::numeric_limits<double>::infinity();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, context);
  AffineMap rows = identity.dropResult(rank - 1);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  iterators.back() = utils::IteratorType::reduction;
  auto filled = [&](Type element, TypedAttr init) {
    Value start = arith::ConstantOp::create(builder, loc, init);
    Value empty = tensor::EmptyOp::create(builder, loc, rowShape, element);
    return linalg::FillOp::create(builder, loc, ValueRange{start},
                                  ValueRange{empty})
        .getResult(0);
  };
  for (int64_t pass = 0; pass < k; ++pass) {
    SmallVector<Value> inputs{input};
    if (pass > 0) {
      inputs.push_back(values.back());
      inputs.push_back(indices.back());
    }
    SmallVector<AffineMap> maps{identity};
    maps.append(inputs.size() + 1, rows);
    // An index past the row loses every tie, so the first eligible element
    // replaces the initial pick even when it equals the worst value.
    SmallVector<Value> inits{filled(f32, builder.getF32FloatAttr(worst)),
                             filled(i64, builder.getI64IntegerAttr(width))};
    auto generic = linalg::GenericOp::create(
        builder, loc, TypeRange{inits[0].getType(), inits[1].getType()}, inputs,
        inits, maps, iterators,
        [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
          Body body{b, bodyLoc};
          Value x = body.widen(args[0]);
          Value index = arith::IndexCastOp::create(
              b, bodyLoc, i64, linalg::IndexOp::create(b, bodyLoc, rank - 1));
          Value bestValue = args[args.size() - 2], bestIndex = args.back();
          auto ranksBefore = [&](Value value, Value valueIndex, Value other,
                                 Value otherIndex) {
            Value strictly =
                arith::CmpFOp::create(b, bodyLoc,
                                      smallest ? arith::CmpFPredicate::OLT
                                               : arith::CmpFPredicate::OGT,
                                      value, other);
            Value equal = arith::CmpFOp::create(
                b, bodyLoc, arith::CmpFPredicate::OEQ, value, other);
            Value lower = arith::CmpIOp::create(
                b, bodyLoc, arith::CmpIPredicate::slt, valueIndex, otherIndex);
            return arith::OrIOp::create(
                b, bodyLoc, strictly,
                arith::AndIOp::create(b, bodyLoc, equal, lower));
          };
          Value take = ranksBefore(x, index, bestValue, bestIndex);
          if (pass > 0) {
            Value after = ranksBefore(args[1], args[2], x, index);
            take = arith::AndIOp::create(b, bodyLoc, take, after);
          }
          linalg::YieldOp::create(
              b, bodyLoc,
              ValueRange{
                  arith::SelectOp::create(b, bodyLoc, take, x, bestValue),
                  arith::SelectOp::create(b, bodyLoc, take, index, bestIndex)});
        });
    values.push_back(generic.getResult(0));
    indices.push_back(generic.getResult(1));
  }
}

/// Stacks the per-row tensors `parts` (k of them, the leading dimensions)
/// into a [..., k] tensor of `resultType`, converting each element with
/// `convert`.
Value stackLastAxis(OpBuilder &builder, Location loc,
                    RankedTensorType resultType, ValueRange parts,
                    function_ref<Value(OpBuilder &, Location, Value)> convert) {
  MLIRContext *context = builder.getContext();
  int64_t rank = resultType.getRank();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, context);
  SmallVector<AffineMap> maps(parts.size(), identity.dropResult(rank - 1));
  maps.push_back(identity);
  SmallVector<utils::IteratorType> parallel(rank,
                                            utils::IteratorType::parallel);
  Value empty = tensor::EmptyOp::create(builder, loc, resultType.getShape(),
                                        resultType.getElementType());
  auto generic = linalg::GenericOp::create(
      builder, loc, TypeRange{resultType}, parts, ValueRange{empty}, maps,
      parallel, [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
        Value slot = linalg::IndexOp::create(b, bodyLoc, rank - 1);
        Value chosen = args[0];
        for (size_t j = 1; j < parts.size(); ++j) {
          Value isSlot = arith::CmpIOp::create(
              b, bodyLoc, arith::CmpIPredicate::eq, slot,
              arith::ConstantIndexOp::create(b, bodyLoc, j));
          chosen = arith::SelectOp::create(b, bodyLoc, isSlot, args[j], chosen);
        }
        linalg::YieldOp::create(b, bodyLoc, convert(b, bodyLoc, chosen));
      });
  return generic.getResult(0);
}

/// i64 to the integer type `type` (the indices' declared width).
Value convertIndex(OpBuilder &b, Location loc, Value index, Type type) {
  unsigned width = type.getIntOrFloatBitWidth();
  if (width == 64)
    return index;
  return arith::TruncIOp::create(b, loc, type, index);
}

/// top_k over the last axis of a float tensor: k selection passes, then the
/// values and indices stacked.
void lowerTopK(OpBuilder &builder, TopKOp op) {
  auto valuesType = cast<RankedTensorType>(op.getValues().getType());
  auto indicesType = cast<RankedTensorType>(op.getIndices().getType());
  Location loc = op.getLoc();
  SmallVector<Value> values, indices;
  selectTopK(builder, loc, op.getInput(), op.getK(), op.getSmallest(), values,
             indices);
  Type valueElement = valuesType.getElementType();
  Type indexElement = indicesType.getElementType();
  op.getValues().replaceAllUsesWith(stackLastAxis(
      builder, loc, valuesType, values, [&](OpBuilder &b, Location l, Value v) {
        return Body{b, l}.narrow(v, valueElement);
      }));
  op.getIndices().replaceAllUsesWith(
      stackLastAxis(builder, loc, indicesType, indices,
                    [&](OpBuilder &b, Location l, Value index) {
                      return convertIndex(b, l, index, indexElement);
                    }));
}

/// Group-limited routing: each of `groups` equal groups of experts is rated
/// by the sum of its two best choices, the best `keep` groups compete, and
/// the others' choices become -inf (so top-k never picks them).
Value maskUnselectedGroups(OpBuilder &builder, Location loc, Value choice,
                           int64_t groups, int64_t keep) {
  auto type = cast<RankedTensorType>(choice.getType());
  int64_t tokens = type.getDimSize(0), experts = type.getDimSize(1);
  int64_t size = experts / groups;
  Type f32 = builder.getF32Type();
  auto groupedType = RankedTensorType::get({tokens, groups, size}, f32);
  Value grouped = tensor::ExpandShapeOp::create(
      builder, loc, groupedType, choice,
      SmallVector<ReassociationIndices>{{0}, {1, 2}});
  SmallVector<Value> best, bestIndices;
  selectTopK(builder, loc, grouped, std::min<int64_t>(2, size),
             /*smallest=*/false, best, bestIndices);
  auto ratingsType = RankedTensorType::get({tokens, groups}, f32);
  Value ratings = best[0];
  if (best.size() > 1)
    ratings = buildElementwise(
        builder, loc, ratingsType, {best[0], best[1]},
        [](Body &body, ArrayRef<Value> e) { return body.add(e[0], e[1]); });
  SmallVector<Value> kept, keptGroups;
  selectTopK(builder, loc, ratings, keep, /*smallest=*/false, kept, keptGroups);
  MLIRContext *context = builder.getContext();
  SmallVector<Value> inputs{choice};
  llvm::append_range(inputs, keptGroups);
  SmallVector<AffineMap> maps{AffineMap::getMultiDimIdentityMap(2, context)};
  maps.append(keptGroups.size(),
              AffineMap::get(2, 0, getAffineDimExpr(0, context)));
  return buildMapped(
      builder, loc, type, inputs, maps,
      [&](OpBuilder &b, Location bodyLoc, ArrayRef<Value> e) -> Value {
        Value expert = arith::IndexCastOp::create(
            b, bodyLoc, b.getI64Type(), linalg::IndexOp::create(b, bodyLoc, 1));
        Value group = arith::DivSIOp::create(
            b, bodyLoc, expert,
            arith::ConstantOp::create(b, bodyLoc, b.getI64IntegerAttr(size)));
        Value selected;
        for (Value keptGroup : e.drop_front()) {
          Value same = arith::CmpIOp::create(
              b, bodyLoc, arith::CmpIPredicate::eq, group, keptGroup);
          selected =
              selected
                  ? arith::OrIOp::create(b, bodyLoc, selected, same).getResult()
                  : same;
        }
        Value excluded = arith::ConstantOp::create(
            b, bodyLoc,
            b.getF32FloatAttr(-std::numeric_limits<float>::infinity()));
        return arith::SelectOp::create(b, bodyLoc, selected, e[0], excluded);
      });
}

/// router: the logits (a matmul in f32, plus the bias), the scores (softmax
/// or sigmoid), top-k selection on the scores plus the correction bias
/// (among the best groups with expert groups), the selected plain scores
/// gathered, then normalised and scaled.
void lowerRouter(OpBuilder &builder, RouterOp op) {
  auto inputType = cast<RankedTensorType>(op.getInput().getType());
  auto routerType = cast<RankedTensorType>(op.getRouterWeight().getType());
  auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
  auto expertsType = cast<RankedTensorType>(op.getExperts().getType());
  Location loc = op.getLoc();
  Type f32 = builder.getF32Type();
  int64_t tokens = inputType.getDimSize(0);
  int64_t numExperts = routerType.getDimSize(1);
  int64_t topK = op.getTopK();
  auto scoresType = RankedTensorType::get({tokens, numExperts}, f32);

  Value zero =
      arith::ConstantOp::create(builder, loc, builder.getF32FloatAttr(0.0));
  Value empty =
      tensor::EmptyOp::create(builder, loc, scoresType.getShape(), f32);
  Value zeros =
      linalg::FillOp::create(builder, loc, ValueRange{zero}, ValueRange{empty})
          .getResult(0);
  Value logits =
      linalg::MatmulOp::create(builder, loc, TypeRange{scoresType},
                               ValueRange{op.getInput(), op.getRouterWeight()},
                               ValueRange{zeros})
          .getResult(0);
  if (Value bias = op.getRouterBias())
    logits = buildElementwise(
        builder, loc, scoresType, {logits, bias},
        [](Body &body, ArrayRef<Value> e) { return body.add(e[0], e[1]); });
  Value scores = op.getScore() == ScoreFunction::sigmoid
                     ? buildElementwise(builder, loc, scoresType, {logits},
                                        [](Body &body, ArrayRef<Value> e) {
                                          return body.sigmoid(e[0]);
                                        })
                     : buildSoftmax(builder, loc, scoresType, logits);
  // The correction bias steers selection only; weights use plain scores.
  Value choice = scores;
  if (Value correction = op.getCorrectionBias())
    choice = buildElementwise(
        builder, loc, scoresType, {scores, correction},
        [](Body &body, ArrayRef<Value> e) { return body.add(e[0], e[1]); });
  if (int64_t groups = op.getNumGroups(); groups > 1)
    choice =
        maskUnselectedGroups(builder, loc, choice, groups, op.getTopKGroups());
  SmallVector<Value> picked, indices;
  selectTopK(builder, loc, choice, topK, /*smallest=*/false, picked, indices);

  Type expertElement = expertsType.getElementType();
  Value experts =
      stackLastAxis(builder, loc, expertsType, indices,
                    [&](OpBuilder &b, Location l, Value index) {
                      return convertIndex(b, l, index, expertElement);
                    });

  // The plain score of each selected expert, read where its index points.
  auto pairsType = RankedTensorType::get({tokens, topK}, f32);
  AffineMap pairs = AffineMap::getMultiDimIdentityMap(2, builder.getContext());
  Value pairsEmpty =
      tensor::EmptyOp::create(builder, loc, pairsType.getShape(), f32);
  Value gathered =
      linalg::GenericOp::create(
          builder, loc, TypeRange{pairsType}, ValueRange{experts},
          ValueRange{pairsEmpty}, SmallVector<AffineMap>{pairs, pairs},
          SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
          [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
            Value token = linalg::IndexOp::create(b, bodyLoc, 0);
            Value column = arith::IndexCastOp::create(
                b, bodyLoc, b.getIndexType(), args[0]);
            linalg::YieldOp::create(
                b, bodyLoc,
                tensor::ExtractOp::create(b, bodyLoc, scores,
                                          ValueRange{token, column})
                    .getResult());
          })
          .getResult(0);

  double scaling = op.getRoutedScalingFactor().convertToDouble();
  Value weights;
  if (op.getNormalize()) {
    Value sums =
        reduceLastAxis(builder, loc, gathered, {}, 0.0,
                       [](Body &body, Value acc, Value w, ArrayRef<Value>) {
                         return body.add(acc, w);
                       });
    weights = mapWithRows(
        builder, loc, weightsType, gathered, {sums}, {},
        [&](Body &body, Value w, ArrayRef<Value> row, ArrayRef<Value>) {
          return body.mul(body.div(w, row[0]), body.f32(scaling));
        });
  } else {
    weights = buildElementwise(builder, loc, weightsType, {gathered},
                               [&](Body &body, ArrayRef<Value> e) {
                                 return body.mul(e[0], body.f32(scaling));
                               });
  }
  op.getWeights().replaceAllUsesWith(weights);
  op.getExperts().replaceAllUsesWith(experts);
}

//===----------------------------------------------------------------------===//
// Data movement and element-wise ops of any element type
//===----------------------------------------------------------------------===//

/// `x`, an element of type `from`, converted as moe.cast converts: float
/// to float rounds, float to integer truncates toward zero, anything to i1
/// compares with zero, i1 and u8 widen unsigned.
Value convertElement(OpBuilder &b, Location loc, Value x, Type to) {
  Type from = x.getType();
  if (from == to)
    return x;
  bool fromFloat = isa<FloatType>(from), toFloat = isa<FloatType>(to);
  if (to.isInteger(1)) {
    if (fromFloat)
      return arith::CmpFOp::create(
          b, loc, arith::CmpFPredicate::UNE, x,
          arith::ConstantOp::create(b, loc, b.getFloatAttr(from, 0.0)));
    return arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne, x,
        arith::ConstantOp::create(b, loc, b.getIntegerAttr(from, 0)));
  }
  bool unsignedSource = from.isInteger(1) || from.isUnsignedInteger();
  if (fromFloat && toFloat)
    return from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth()
               ? arith::ExtFOp::create(b, loc, to, x).getResult()
               : arith::TruncFOp::create(b, loc, to, x).getResult();
  if (toFloat)
    return unsignedSource ? arith::UIToFPOp::create(b, loc, to, x).getResult()
                          : arith::SIToFPOp::create(b, loc, to, x).getResult();
  if (fromFloat)
    return arith::FPToSIOp::create(b, loc, to, x);
  unsigned fromWidth = from.getIntOrFloatBitWidth();
  unsigned toWidth = to.getIntOrFloatBitWidth();
  if (fromWidth > toWidth)
    return arith::TruncIOp::create(b, loc, to, x);
  return unsignedSource ? arith::ExtUIOp::create(b, loc, to, x).getResult()
                        : arith::ExtSIOp::create(b, loc, to, x).getResult();
}

/// Signless or unsigned integers, floats and i1: what the generated code
/// handles.
bool isScalarElement(Type type) {
  return isa<FloatType>(type) || type.isSignlessInteger() ||
         type.isUnsignedInteger(8);
}

/// The result of a statically shaped op whose operands and results all are
/// statically shaped tensors of scalar elements, or null.
RankedTensorType staticResult(Operation *op) {
  auto isStatic = [](Type type) {
    auto tensor = dyn_cast<RankedTensorType>(type);
    return tensor && tensor.hasStaticShape() &&
           isScalarElement(tensor.getElementType());
  };
  if (op->getNumResults() != 1 ||
      !llvm::all_of(op->getOperandTypes(), isStatic) ||
      !isStatic(op->getResult(0).getType()))
    return {};
  return cast<RankedTensorType>(op->getResult(0).getType());
}

/// transpose: the input read at the permuted indices.
Value lowerTranspose(OpBuilder &builder, TransposeOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
  ArrayRef<int64_t> permutation = op.getPermutation();
  SmallVector<AffineExpr> exprs(permutation.size());
  for (auto [resultDim, inputDim] : llvm::enumerate(permutation))
    exprs[inputDim] = getAffineDimExpr(resultDim, builder.getContext());
  AffineMap map =
      AffineMap::get(type.getRank(), 0, exprs, builder.getContext());
  return buildMapped(
      builder, op.getLoc(), type, op.getInput(), map,
      [](OpBuilder &, Location, ArrayRef<Value> e) { return e[0]; });
}

/// A box of `input` as `type`: element i of each dimension d read at
/// starts[d] + steps[d] * i, with tensor.extract (see lowerSlice).
Value extractBox(OpBuilder &builder, Location loc, RankedTensorType type,
                 Value input, ArrayRef<int64_t> starts,
                 ArrayRef<int64_t> steps) {
  return buildMapped(
      builder, loc, type, ValueRange(ArrayRef<Value>()), {},
      [&](OpBuilder &b, Location bodyLoc, ArrayRef<Value>) -> Value {
        SmallVector<Value> at;
        for (int64_t d = 0; d < type.getRank(); ++d) {
          Value index = linalg::IndexOp::create(b, bodyLoc, d);
          if (steps[d] != 1)
            index = arith::MulIOp::create(
                b, bodyLoc, index,
                arith::ConstantIndexOp::create(b, bodyLoc, steps[d]));
          if (starts[d] != 0)
            index = arith::AddIOp::create(
                b, bodyLoc, index,
                arith::ConstantIndexOp::create(b, bodyLoc, starts[d]));
          at.push_back(index);
        }
        return tensor::ExtractOp::create(b, bodyLoc, input, at);
      });
}

/// slice with static bounds: index start + step * i along each sliced axis,
/// the start clamped as ONNX clamps it. The input is read with
/// tensor.extract: as an indexing map, a sliced axis with step 1 would be
/// the loop dimension itself, and linalg would take the loop's size from
/// the input's.
Value lowerSlice(OpBuilder &builder, SliceOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto inputType = cast<RankedTensorType>(op.getInput().getType());
  SmallVector<int64_t> starts(type.getRank(), 0), steps(type.getRank(), 1);
  for (auto [i, axis] : llvm::enumerate(op.getAxes())) {
    int64_t dim = axis < 0 ? axis + type.getRank() : axis;
    int64_t size = inputType.getDimSize(dim);
    int64_t step = op.getSteps()[i], start = op.getStarts()[i];
    if (start < 0)
      start += size;
    starts[dim] = step > 0 ? std::clamp<int64_t>(start, 0, size)
                           : std::clamp<int64_t>(start, 0, size - 1);
    steps[dim] = step;
  }
  return extractBox(builder, op.getLoc(), type, op.getInput(), starts, steps);
}

/// split: each result a box of the input, one after another along `axis`.
SmallVector<Value> lowerSplit(OpBuilder &builder, SplitOp op) {
  auto inputType = cast<RankedTensorType>(op.getInput().getType());
  int64_t axis = op.getAxisAttr().getInt();
  if (axis < 0)
    axis += inputType.getRank();
  SmallVector<Value> parts;
  SmallVector<int64_t> starts(inputType.getRank(), 0),
      steps(inputType.getRank(), 1);
  for (Value result : op.getResults()) {
    auto type = cast<RankedTensorType>(result.getType());
    parts.push_back(
        extractBox(builder, op.getLoc(), type, op.getInput(), starts, steps));
    starts[axis] += type.getDimSize(axis);
  }
  return parts;
}

/// gather along `axis`: the result's indices dimensions read the index,
/// wrapped when negative and clamped into the axis (generated code cannot
/// report a bad index, and must not read outside the tensor; the CPU
/// backend reports it).
Value lowerGather(OpBuilder &builder, GatherOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto dataType = cast<RankedTensorType>(op.getData().getType());
  auto indicesType = cast<RankedTensorType>(op.getIndices().getType());
  int64_t axis = op.getAxisAttr().getInt() < 0
                     ? op.getAxisAttr().getInt() + dataType.getRank()
                     : op.getAxisAttr().getInt();
  int64_t indexRank = indicesType.getRank();
  int64_t size = dataType.getDimSize(axis);
  MLIRContext *context = builder.getContext();
  SmallVector<AffineExpr> indexExprs;
  for (int64_t d = 0; d < indexRank; ++d)
    indexExprs.push_back(getAffineDimExpr(axis + d, context));
  AffineMap indexMap = AffineMap::get(type.getRank(), 0, indexExprs, context);
  Value data = op.getData();
  return buildMapped(
      builder, op.getLoc(), type, op.getIndices(), indexMap,
      [&](OpBuilder &b, Location loc, ArrayRef<Value> e) -> Value {
        Type i64 = b.getI64Type();
        Value index = convertElement(b, loc, e[0], i64);
        auto constant = [&](int64_t value) -> Value {
          return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
        };
        Value negative = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, index, constant(0));
        index = arith::SelectOp::create(
            b, loc, negative,
            arith::AddIOp::create(b, loc, index, constant(size)), index);
        index = arith::MaxSIOp::create(b, loc, index, constant(0));
        index = arith::MinSIOp::create(b, loc, index, constant(size - 1));
        SmallVector<Value> at;
        for (int64_t d = 0; d < axis; ++d)
          at.push_back(linalg::IndexOp::create(b, loc, d));
        at.push_back(
            arith::IndexCastOp::create(b, loc, b.getIndexType(), index));
        for (int64_t d = axis + 1; d < dataType.getRank(); ++d)
          at.push_back(linalg::IndexOp::create(b, loc, d - 1 + indexRank));
        return tensor::ExtractOp::create(b, loc, data, at);
      });
}

/// concat along `axis`: each element read from the input whose range of
/// the axis holds it (every input read at a clamped index, one selected).
Value lowerConcat(OpBuilder &builder, ConcatOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
  int64_t axis = op.getAxisAttr().getInt() < 0
                     ? op.getAxisAttr().getInt() + type.getRank()
                     : op.getAxisAttr().getInt();
  SmallVector<Value> inputs(op.getInputs());
  return buildMapped(
      builder, op.getLoc(), type, ValueRange(ArrayRef<Value>()), {},
      [&](OpBuilder &b, Location loc, ArrayRef<Value>) -> Value {
        SmallVector<Value> at;
        for (int64_t d = 0; d < type.getRank(); ++d)
          at.push_back(linalg::IndexOp::create(b, loc, d));
        Value position = at[axis];
        Value chosen;
        int64_t offset = 0;
        for (Value input : inputs) {
          int64_t extent =
              cast<RankedTensorType>(input.getType()).getDimSize(axis);
          if (extent == 0)
            continue;
          Value begin = arith::ConstantIndexOp::create(b, loc, offset);
          Value local = arith::SubIOp::create(b, loc, position, begin);
          local = arith::MaxSIOp::create(
              b, loc, local, arith::ConstantIndexOp::create(b, loc, 0));
          local = arith::MinSIOp::create(
              b, loc, local,
              arith::ConstantIndexOp::create(b, loc, extent - 1));
          SmallVector<Value> inputAt(at);
          inputAt[axis] = local;
          Value element = tensor::ExtractOp::create(b, loc, input, inputAt);
          if (!chosen) {
            chosen = element;
          } else {
            Value here = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::sge, position, begin);
            chosen = arith::SelectOp::create(b, loc, here, element, chosen);
          }
          offset += extent;
        }
        return chosen;
      });
}

/// reduce (floats) over `axes`: a generic that iterates the kept
/// dimensions first and the reduced ones last, accumulating in f32, then
/// a map that divides for the mean, narrows and restores kept dimensions.
Value lowerReduce(OpBuilder &builder, ReduceOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto inputType = cast<RankedTensorType>(op.getInput().getType());
  MLIRContext *context = builder.getContext();
  Location loc = op.getLoc();
  int64_t rank = inputType.getRank();
  SmallVector<bool> reduced(rank, false);
  for (int64_t axis : op.getAxes())
    reduced[axis < 0 ? axis + rank : axis] = true;
  SmallVector<int64_t> keptShape;
  SmallVector<AffineExpr> inputExprs(rank);
  int64_t kept = 0, count = 1;
  for (int64_t d = 0; d < rank; ++d)
    if (!reduced[d]) {
      keptShape.push_back(inputType.getDimSize(d));
      inputExprs[d] = getAffineDimExpr(kept++, context);
    }
  int64_t next = kept;
  for (int64_t d = 0; d < rank; ++d)
    if (reduced[d]) {
      inputExprs[d] = getAffineDimExpr(next++, context);
      count *= inputType.getDimSize(d);
    }
  ReduceKind kind = op.getKind();
  double init = 0.0;
  if (kind == ReduceKind::prod)
    init = 1.0;
  else if (kind == ReduceKind::max)
    init = -std::numeric_limits<double>::infinity();
  else if (kind == ReduceKind::min)
    init = std::numeric_limits<double>::infinity();
  Type f32 = builder.getF32Type();
  auto accType = RankedTensorType::get(keptShape, f32);
  Value start =
      arith::ConstantOp::create(builder, loc, builder.getF32FloatAttr(init));
  Value empty = tensor::EmptyOp::create(builder, loc, keptShape, f32);
  Value filled =
      linalg::FillOp::create(builder, loc, ValueRange{start}, ValueRange{empty})
          .getResult(0);
  SmallVector<utils::IteratorType> iterators(kept,
                                             utils::IteratorType::parallel);
  iterators.append(rank - kept, utils::IteratorType::reduction);
  SmallVector<AffineMap> maps{
      AffineMap::get(rank, 0, inputExprs, context),
      AffineMap::getMultiDimIdentityMap(rank, context).getMajorSubMap(kept)};
  Value acc = linalg::GenericOp::create(
                  builder, loc, TypeRange{accType}, op.getInput(), filled, maps,
                  iterators,
                  [&](OpBuilder &b, Location bodyLoc, ValueRange args) {
                    Body body{b, bodyLoc};
                    Value x = body.widen(args[0]), a = args[1];
                    Value combined;
                    switch (kind) {
                    case ReduceKind::sum:
                    case ReduceKind::mean:
                      combined = body.add(a, x);
                      break;
                    case ReduceKind::prod:
                      combined = body.mul(a, x);
                      break;
                    case ReduceKind::max:
                      combined = arith::MaximumFOp::create(b, bodyLoc, a, x);
                      break;
                    case ReduceKind::min:
                      combined = arith::MinimumFOp::create(b, bodyLoc, a, x);
                      break;
                    }
                    linalg::YieldOp::create(b, bodyLoc, combined);
                  })
                  .getResult(0);
  // The result's dimensions: the kept ones, and size-1 reduced ones with
  // keep_dims, which read nothing.
  SmallVector<AffineExpr> accExprs;
  for (int64_t d = 0, r = 0; d < rank; ++d) {
    if (!reduced[d])
      accExprs.push_back(getAffineDimExpr(r, context));
    if (!reduced[d] || op.getKeepDims())
      ++r;
  }
  AffineMap accMap = AffineMap::get(type.getRank(), 0, accExprs, context);
  return buildMapped(builder, loc, type, acc, accMap,
                     [&](OpBuilder &b, Location bodyLoc, ArrayRef<Value> e) {
                       Body body{b, bodyLoc};
                       Value value = e[0];
                       if (kind == ReduceKind::mean)
                         value = body.div(value,
                                          body.f32(static_cast<double>(count)));
                       return body.narrow(value, type.getElementType());
                     });
}

/// When the index tuples of a scatter_nd are its update positions shifted
/// by one offset (indices[p] = p + offset, positions of the same rank as
/// a tuple: the updates are a box of the data, as both DeepSeek-V3 exports
/// write RoPE's halves): that offset; else empty.
SmallVector<int64_t> boxOffset(ScatterNDOp op) {
  auto indicesType = cast<RankedTensorType>(op.getIndices().getType());
  auto data = cast<RankedTensorType>(op.getData().getType());
  ArrayRef<int64_t> positions = indicesType.getShape().drop_back();
  int64_t depth = indicesType.getShape().back();
  DenseIntElementsAttr indices;
  if (static_cast<int64_t>(positions.size()) != depth ||
      !matchPattern(op.getIndices(), m_Constant(&indices)))
    return {};
  SmallVector<int64_t> values;
  for (APInt value : indices.getValues<APInt>())
    values.push_back(value.getSExtValue());
  SmallVector<int64_t> offset(depth);
  SmallVector<int64_t> coordinate(depth, 0);
  for (size_t p = 0; p * depth < values.size(); ++p) {
    for (int64_t d = 0; d < depth; ++d) {
      int64_t index = values[p * depth + d];
      if (index < 0)
        index += data.getDimSize(d);
      if (p == 0)
        offset[d] = index;
      if (index != coordinate[d] + offset[d] || offset[d] < 0 ||
          offset[d] + positions[d] > data.getDimSize(d))
        return {};
    }
    // The next position's coordinates, row-major.
    for (int64_t d = depth - 1; d >= 0; --d) {
      if (++coordinate[d] < positions[d])
        break;
      coordinate[d] = 0;
    }
  }
  return offset;
}

/// When the written slots of `table` are one run [first, first + count)
/// holding updates 0, 1, ... in order: (first, count); else (0, 0).
std::pair<int64_t, int64_t> contiguousRun(ArrayRef<int64_t> table) {
  int64_t first = -1, count = 0;
  for (int64_t slot = 0; slot < static_cast<int64_t>(table.size()); ++slot) {
    if (table[slot] < 0)
      continue;
    if (first < 0)
      first = slot;
    if (slot != first + count || table[slot] != count)
      return {0, 0};
    ++count;
  }
  return {first, count};
}

/// For scatter_nd with constant indices: which update slice each slot of
/// `data`'s first q dimensions receives (the last writer's, as the CPU
/// kernel writes in order), -1 for none; empty when an index is out of
/// range, or when a reduction would combine two updates of one slot.
std::vector<int64_t> scatterTable(ScatterNDOp op) {
  auto data = cast<RankedTensorType>(op.getData().getType());
  auto indicesType = cast<RankedTensorType>(op.getIndices().getType());
  DenseIntElementsAttr indices;
  if (!matchPattern(op.getIndices(), m_Constant(&indices)))
    return {};
  int64_t depth = indicesType.getShape().back();
  int64_t slots = 1;
  for (int64_t d = 0; d < depth; ++d)
    slots *= data.getDimSize(d);
  std::vector<int64_t> table(slots, -1);
  SmallVector<int64_t> values;
  for (APInt value : indices.getValues<APInt>())
    values.push_back(value.getSExtValue());
  for (size_t p = 0; p * depth < values.size(); ++p) {
    int64_t slot = 0;
    for (int64_t d = 0; d < depth; ++d) {
      int64_t size = data.getDimSize(d), index = values[p * depth + d];
      if (index < 0)
        index += size;
      if (index < 0 || index >= size)
        return {};
      slot = slot * size + index;
    }
    if (table[slot] >= 0 && op.getReduction() != ScatterReduction::none)
      return {};
    table[slot] = static_cast<int64_t>(p);
  }
  // The kernels compute the table's entries instead of reading it (a
  // constant tensor would live in host memory): a contiguous run of slots
  // is arithmetic, a few scattered slots a chain of selects.
  if (contiguousRun(table).second == 0 && boxOffset(op).empty() &&
      llvm::count_if(table, [](int64_t p) { return p >= 0; }) > 64)
    return {};
  return table;
}

/// scatter_nd with constant indices as a gather: each element of the
/// result reads, through a table made while compiling, the update that
/// lands on it (combined with the data element by the reduction) or the
/// data element itself.
Value lowerScatterND(OpBuilder &builder, ScatterNDOp op) {
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto indicesType = cast<RankedTensorType>(op.getIndices().getType());
  Location loc = op.getLoc();
  std::vector<int64_t> table = scatterTable(op);
  int64_t depth = indicesType.getShape().back();
  ArrayRef<int64_t> positions = indicesType.getShape().drop_back();
  auto [first, count] = contiguousRun(table);
  SmallVector<int64_t> box = boxOffset(op);
  Value updates = op.getUpdates();
  ScatterReduction reduction = op.getReduction();
  // An update combined with the data element it lands on.
  auto combine = [reduction](OpBuilder &b, Location loc, Value x,
                             Value update) -> Value {
    bool isFloat = isa<FloatType>(x.getType());
    switch (reduction) {
    case ScatterReduction::none:
      return update;
    case ScatterReduction::add:
      return isFloat ? arith::AddFOp::create(b, loc, x, update).getResult()
                     : arith::AddIOp::create(b, loc, x, update).getResult();
    case ScatterReduction::mul:
      return isFloat ? arith::MulFOp::create(b, loc, x, update).getResult()
                     : arith::MulIOp::create(b, loc, x, update).getResult();
    case ScatterReduction::max:
      return isFloat ? arith::MaximumFOp::create(b, loc, x, update).getResult()
                     : arith::MaxSIOp::create(b, loc, x, update).getResult();
    case ScatterReduction::min:
      return isFloat ? arith::MinimumFOp::create(b, loc, x, update).getResult()
                     : arith::MinSIOp::create(b, loc, x, update).getResult();
    }
    return update;
  };
  SmallVector<AffineMap> maps{
      AffineMap::getMultiDimIdentityMap(type.getRank(), builder.getContext())};
  return buildMapped(
      builder, loc, type, op.getData(), maps,
      [&](OpBuilder &b, Location bodyLoc, ArrayRef<Value> e) -> Value {
        auto index = [&](int64_t value) -> Value {
          return arith::ConstantIndexOp::create(b, bodyLoc, value);
        };
        // The slot of this element's first `depth` coordinates.
        Value slot = index(0);
        for (int64_t d = 0; d < depth; ++d)
          slot = arith::AddIOp::create(
              b, bodyLoc,
              arith::MulIOp::create(b, bodyLoc, slot,
                                    index(type.getDimSize(d))),
              linalg::IndexOp::create(b, bodyLoc, d));
        if (!box.empty()) {
          // A box: written where every coordinate lies in it, read at the
          // coordinates less the offset.
          Value inside;
          SmallVector<Value> at;
          for (int64_t d = 0; d < depth; ++d) {
            Value local = arith::SubIOp::create(
                b, bodyLoc, linalg::IndexOp::create(b, bodyLoc, d),
                index(box[d]));
            Value within = arith::AndIOp::create(
                b, bodyLoc,
                arith::CmpIOp::create(b, bodyLoc, arith::CmpIPredicate::sge,
                                      local, index(0)),
                arith::CmpIOp::create(b, bodyLoc, arith::CmpIPredicate::slt,
                                      local, index(positions[d])));
            inside = inside ? arith::AndIOp::create(b, bodyLoc, inside, within)
                                  .getResult()
                            : within;
            // Clamped so that elements outside the box read in bounds.
            at.push_back(arith::MinSIOp::create(
                b, bodyLoc, arith::MaxSIOp::create(b, bodyLoc, local, index(0)),
                index(positions[d] - 1)));
          }
          for (int64_t d = depth; d < type.getRank(); ++d)
            at.push_back(linalg::IndexOp::create(b, bodyLoc, d));
          Value update = tensor::ExtractOp::create(b, bodyLoc, updates, at);
          return arith::SelectOp::create(
              b, bodyLoc, inside, combine(b, bodyLoc, e[0], update), e[0]);
        }
        auto i64 = [&](int64_t value) -> Value {
          return arith::ConstantOp::create(b, bodyLoc,
                                           b.getI64IntegerAttr(value));
        };
        Value slot64 =
            arith::IndexCastOp::create(b, bodyLoc, b.getI64Type(), slot);
        Value position = i64(-1);
        if (count > 0) {
          Value offset = arith::SubIOp::create(b, bodyLoc, slot64, i64(first));
          Value inside = arith::AndIOp::create(
              b, bodyLoc,
              arith::CmpIOp::create(b, bodyLoc, arith::CmpIPredicate::sge,
                                    offset, i64(0)),
              arith::CmpIOp::create(b, bodyLoc, arith::CmpIPredicate::slt,
                                    offset, i64(count)));
          position =
              arith::SelectOp::create(b, bodyLoc, inside, offset, position);
        } else {
          for (auto [at, update] : llvm::enumerate(table)) {
            if (update < 0)
              continue;
            Value here =
                arith::CmpIOp::create(b, bodyLoc, arith::CmpIPredicate::eq,
                                      slot64, i64(static_cast<int64_t>(at)));
            position = arith::SelectOp::create(b, bodyLoc, here, i64(update),
                                               position);
          }
        }
        Value written = arith::CmpIOp::create(
            b, bodyLoc, arith::CmpIPredicate::sge, position,
            arith::ConstantOp::create(b, bodyLoc, b.getI64IntegerAttr(0)));
        // Read update 0 where none lands, to stay in bounds.
        Value clamped = arith::IndexCastOp::create(
            b, bodyLoc, b.getIndexType(),
            arith::MaxSIOp::create(
                b, bodyLoc, position,
                arith::ConstantOp::create(b, bodyLoc, b.getI64IntegerAttr(0))));
        SmallVector<Value> at(positions.size());
        for (int64_t d = static_cast<int64_t>(positions.size()) - 1; d >= 0;
             --d) {
          at[d] =
              arith::RemSIOp::create(b, bodyLoc, clamped, index(positions[d]));
          clamped =
              arith::DivSIOp::create(b, bodyLoc, clamped, index(positions[d]));
        }
        for (int64_t d = depth; d < type.getRank(); ++d)
          at.push_back(linalg::IndexOp::create(b, bodyLoc, d));
        Value update = tensor::ExtractOp::create(b, bodyLoc, updates, at);
        return arith::SelectOp::create(b, bodyLoc, written,
                                       combine(b, bodyLoc, e[0], update), e[0]);
      });
}

/// The comparison `predicate` of two elements of the same type.
Value compareElements(OpBuilder &b, Location loc, ComparePredicate predicate,
                      Value x, Value y) {
  if (isa<FloatType>(x.getType())) {
    arith::CmpFPredicate p = arith::CmpFPredicate::OEQ;
    switch (predicate) {
    case ComparePredicate::eq:
      p = arith::CmpFPredicate::OEQ;
      break;
    case ComparePredicate::ne:
      p = arith::CmpFPredicate::UNE;
      break;
    case ComparePredicate::lt:
      p = arith::CmpFPredicate::OLT;
      break;
    case ComparePredicate::le:
      p = arith::CmpFPredicate::OLE;
      break;
    case ComparePredicate::gt:
      p = arith::CmpFPredicate::OGT;
      break;
    case ComparePredicate::ge:
      p = arith::CmpFPredicate::OGE;
      break;
    }
    return arith::CmpFOp::create(b, loc, p, x, y);
  }
  bool isUnsigned = x.getType().isInteger(1) || x.getType().isUnsignedInteger();
  arith::CmpIPredicate p = arith::CmpIPredicate::eq;
  switch (predicate) {
  case ComparePredicate::eq:
    p = arith::CmpIPredicate::eq;
    break;
  case ComparePredicate::ne:
    p = arith::CmpIPredicate::ne;
    break;
  case ComparePredicate::lt:
    p = isUnsigned ? arith::CmpIPredicate::ult : arith::CmpIPredicate::slt;
    break;
  case ComparePredicate::le:
    p = isUnsigned ? arith::CmpIPredicate::ule : arith::CmpIPredicate::sle;
    break;
  case ComparePredicate::gt:
    p = isUnsigned ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::sgt;
    break;
  case ComparePredicate::ge:
    p = isUnsigned ? arith::CmpIPredicate::uge : arith::CmpIPredicate::sge;
    break;
  }
  return arith::CmpIOp::create(b, loc, p, x, y);
}

/// The data movement and typed element-wise ops: transpose, slice, expand,
/// gather, concat, where, compare, cast, is_nan, and, or, not, and reduce.
Value lowerDataOp(OpBuilder &builder, Operation *op) {
  Location loc = op->getLoc();
  auto type = cast<RankedTensorType>(op->getResult(0).getType());
  auto copy = [](OpBuilder &, Location, ArrayRef<Value> e) { return e[0]; };
  if (auto transpose = dyn_cast<TransposeOp>(op))
    return lowerTranspose(builder, transpose);
  if (auto slice = dyn_cast<SliceOp>(op))
    return lowerSlice(builder, slice);
  if (auto gather = dyn_cast<GatherOp>(op))
    return lowerGather(builder, gather);
  if (auto concat = dyn_cast<ConcatOp>(op))
    return lowerConcat(builder, concat);
  if (auto reduce = dyn_cast<ReduceOp>(op))
    return lowerReduce(builder, reduce);
  if (auto scatter = dyn_cast<ScatterNDOp>(op))
    return lowerScatterND(builder, scatter);
  if (isa<ExpandOp>(op))
    return buildMapped(builder, loc, type, op->getOperands(),
                       broadcastMaps(op->getOperands(), type), copy);
  auto mapped =
      [&](function_ref<Value(OpBuilder &, Location, ArrayRef<Value>)> compute) {
        return buildMapped(builder, loc, type, op->getOperands(),
                           broadcastMaps(op->getOperands(), type), compute);
      };
  if (isa<WhereOp>(op))
    return mapped([](OpBuilder &b, Location l, ArrayRef<Value> e) -> Value {
      return arith::SelectOp::create(b, l, e[0], e[1], e[2]);
    });
  if (auto compare = dyn_cast<CompareOp>(op))
    return mapped([&](OpBuilder &b, Location l, ArrayRef<Value> e) {
      return compareElements(b, l, compare.getPredicate(), e[0], e[1]);
    });
  if (isa<CastOp>(op))
    return mapped([&](OpBuilder &b, Location l, ArrayRef<Value> e) {
      return convertElement(b, l, e[0], type.getElementType());
    });
  if (isa<IsNaNOp>(op))
    return mapped([](OpBuilder &b, Location l, ArrayRef<Value> e) -> Value {
      return arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO, e[0], e[0]);
    });
  if (isa<AndOp>(op))
    return mapped([](OpBuilder &b, Location l, ArrayRef<Value> e) -> Value {
      return arith::AndIOp::create(b, l, e[0], e[1]);
    });
  if (isa<OrOp>(op))
    return mapped([](OpBuilder &b, Location l, ArrayRef<Value> e) -> Value {
      return arith::OrIOp::create(b, l, e[0], e[1]);
    });
  // not
  return mapped([](OpBuilder &b, Location l, ArrayRef<Value> e) -> Value {
    Value one = arith::ConstantOp::create(b, l, b.getBoolAttr(true));
    return arith::XOrIOp::create(b, l, e[0], one);
  });
}

/// Whether lowerDataOp rewrites `op`.
bool lowersDataOp(Operation *op) {
  if (!isa<TransposeOp, SliceOp, ExpandOp, GatherOp, ConcatOp, ReduceOp,
           WhereOp, CompareOp, CastOp, IsNaNOp, AndOp, OrOp, NotOp,
           ScatterNDOp>(op))
    return false;
  RankedTensorType type = staticResult(op);
  if (!type)
    return false;
  if (auto reduce = dyn_cast<ReduceOp>(op))
    return static_cast<bool>(floatTensor(reduce.getInput().getType())) &&
           static_cast<bool>(floatTensor(type));
  auto elementType = [](Value value) {
    return cast<RankedTensorType>(value.getType()).getElementType();
  };
  if (auto compare = dyn_cast<CompareOp>(op))
    return elementType(compare.getLhs()) == elementType(compare.getRhs());
  if (auto scatter = dyn_cast<ScatterNDOp>(op))
    return !scatterTable(scatter).empty();
  if (auto where = dyn_cast<WhereOp>(op))
    return elementType(where.getTrueValue()) ==
           elementType(where.getFalseValue());
  if (auto gather = dyn_cast<GatherOp>(op)) {
    auto data = cast<RankedTensorType>(gather.getData().getType());
    int64_t axis = gather.getAxisAttr().getInt();
    return data.getDimSize(axis < 0 ? axis + data.getRank() : axis) > 0;
  }
  return true;
}

struct LowerElementwiseToLinalgPass
    : moe::impl::LowerElementwiseToLinalgPassBase<
          LowerElementwiseToLinalgPass> {
  void runOnOperation() override {
    SmallVector<Operation *> candidates;
    getOperation()->walk([&](Operation *op) {
      if (lowersToLinalg(op))
        candidates.push_back(op);
    });
    for (Operation *op : candidates) {
      OpBuilder builder(op);
      if (auto split = dyn_cast<SplitOp>(op)) {
        for (auto [result, part] :
             llvm::zip_equal(split.getResults(), lowerSplit(builder, split)))
          result.replaceAllUsesWith(part);
      } else if (auto topK = dyn_cast<TopKOp>(op)) {
        lowerTopK(builder, topK);
      } else if (auto router = dyn_cast<RouterOp>(op)) {
        lowerRouter(builder, router);
      } else {
        Value replacement;
        if (auto norm = dyn_cast<RMSNormOp>(op))
          replacement = lowerRMSNorm(builder, norm);
        else if (auto softmax = dyn_cast<SoftmaxOp>(op))
          replacement = lowerSoftmax(builder, softmax);
        else if (lowersDataOp(op))
          replacement = lowerDataOp(builder, op);
        else
          replacement = buildElementwise(
              builder, op->getLoc(),
              cast<RankedTensorType>(op->getResult(0).getType()),
              op->getOperands(), [&](Body &body, ArrayRef<Value> elements) {
                return elements.size() == 1
                           ? body.unary(op, elements[0])
                           : body.binary(op, elements[0], elements[1]);
              });
        op->getResult(0).replaceAllUsesWith(replacement);
      }
      op->erase();
    }
  }
};

} // namespace

bool moe::lowersToLinalg(Operation *op) {
  if (lowersDataOp(op))
    return true;
  if (auto split = dyn_cast<SplitOp>(op)) {
    auto isStatic = [](Type type) {
      auto tensor = dyn_cast<RankedTensorType>(type);
      return tensor && tensor.hasStaticShape() &&
             isScalarElement(tensor.getElementType());
    };
    return isStatic(split.getInput().getType()) &&
           llvm::all_of(split.getResultTypes(), isStatic);
  }
  auto isFloat = [](Value value) {
    return static_cast<bool>(floatTensor(value.getType()));
  };
  auto isStatic = [](Value value) {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    return type && type.hasStaticShape();
  };
  if (auto norm = dyn_cast<RMSNormOp>(op)) {
    RankedTensorType type = floatTensor(norm.getResult().getType());
    RankedTensorType scaleType = floatTensor(norm.getScale().getType());
    return type && scaleType && isFloat(norm.getInput()) &&
           isLastAxis(type, norm.getAxisAttr().getInt()) &&
           scaleType.getRank() == 1 &&
           scaleType.getDimSize(0) == type.getShape().back();
  }
  if (auto softmax = dyn_cast<SoftmaxOp>(op)) {
    RankedTensorType type = floatTensor(softmax.getResult().getType());
    return type && isFloat(softmax.getInput()) &&
           isLastAxis(type, softmax.getAxisAttr().getInt());
  }
  if (auto topK = dyn_cast<TopKOp>(op)) {
    RankedTensorType type = floatTensor(topK.getInput().getType());
    return type && isFloat(topK.getValues()) && isStatic(topK.getIndices()) &&
           isLastAxis(type, topK.getAxisAttr().getInt());
  }
  if (auto router = dyn_cast<RouterOp>(op))
    return cast<RankedTensorType>(router.getInput().getType()).getRank() == 2 &&
           llvm::all_of(router->getOperands(), isFloat) &&
           isFloat(router.getWeights()) && isStatic(router.getExperts());
  if (isa<NegOp, AbsOp, ExpOp, LogOp, SqrtOp, ReciprocalOp, TanhOp, ErfOp,
          CosOp, SinOp, SigmoidOp, ReluOp, SiluOp, GeluOp, AddOp, SubOp, MulOp,
          DivOp, PowOp, MaxOp, MinOp>(op))
    return llvm::all_of(op->getOperands(), isFloat) &&
           isFloat(op->getResult(0));
  return false;
}
