//===- EagerExpertLoop.cpp - the unrolled expert loop of HF exports -------===//
//
// Part of moe-compiler.
//
// transformers' `eager` experts, exported by the TorchScript exporter, are a
// Python loop over the experts the tracing example hit, unrolled
// (docs/design/hf-moe-export-patterns.md, section C): a hit-expert list
// from NonZero over a one-hot of the selected experts, then per iteration
// NonZero for the expert's tokens, Gather of their rows and of the expert's
// weights, the SwiGLU FFN, the routing weight, and an accumulation by
// ScatterElements + Add. Its shapes depend on the data (NonZero), so it
// cannot be imported op by op. It is recognised here, on the ONNX graph,
// and replaced by the same computation over every (token, slot) pair in the
// "gathered experts" form that moe-raise-layers turns into a moe.layer: for
// each pair, the slot's expert applied to the token, weighted, summed over
// the slots. That is equal to the loop wherever onnxruntime can run the loop
// (experts without tokens contribute nothing), and it also covers the
// experts the tracing example never hit.
//
// Recognition: starting at a OneHot of a TopK's indices, every node that
// depends on it belongs to the loop, up to the accumulation Add whose result
// no further accumulation consumes (the sink). The loop must leave through
// the sink alone; it must gather tokens from one [T, H] value, routing
// weights from Flatten(Unsqueeze(weights [T, K])), and expert weights from
// two 3-D initializers (gate and up rows stacked [E, 2I, H], down
// [E, H, I]); and each iteration must hold one Sigmoid (SiLU), one
// ScatterElements and one NonZero. Anything else leaves the graph alone.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "moe/Dialect/MoE/IR/MoEOps.h"

#include <deque>
#include <set>

using namespace mlir;
using namespace moe;
using namespace moe::onnx_import;

namespace {

bool isOp(const onnx::NodeProto *node, StringRef type) {
  return node && isDefaultDomain(node->domain()) && node->op_type() == type;
}

} // namespace

void GraphImporter::findEagerExpertLoops() {
  const onnx::GraphProto &graph = file.model.graph();
  llvm::StringMap<const onnx::NodeProto *> producer;
  llvm::StringMap<SmallVector<const onnx::NodeProto *>> consumers;
  for (const onnx::NodeProto &node : graph.node()) {
    for (const std::string &output : node.output())
      if (!output.empty())
        producer[output] = &node;
    for (const std::string &input : node.input())
      if (!input.empty())
        consumers[input].push_back(&node);
  }
  llvm::StringSet<> initializers;
  for (const onnx::TensorProto &tensor : graph.initializer())
    initializers.insert(tensor.name());
  auto producedBy = [&](StringRef name) -> const onnx::NodeProto * {
    auto it = producer.find(name);
    return it == producer.end() ? nullptr : it->second;
  };
  // An Add accumulating a ScatterElements result.
  auto isAccumulation = [&](const onnx::NodeProto *node) {
    if (!isOp(node, "Add") || node->input_size() != 2)
      return false;
    return isOp(producedBy(node->input(0)), "ScatterElements") ||
           isOp(producedBy(node->input(1)), "ScatterElements");
  };

  for (const onnx::NodeProto &oneHot : graph.node()) {
    if (!isOp(&oneHot, "OneHot") || oneHot.input_size() < 1)
      continue;
    const onnx::NodeProto *topK = producedBy(oneHot.input(0));
    if (!isOp(topK, "TopK") || topK->output_size() < 2 ||
        topK->output(1) != oneHot.input(0))
      continue;

    // Everything that depends on the one-hot, up to the last accumulation.
    std::set<const onnx::NodeProto *> loop;
    std::vector<const onnx::NodeProto *> sinks;
    std::deque<const onnx::NodeProto *> work{&oneHot};
    while (!work.empty()) {
      const onnx::NodeProto *node = work.front();
      work.pop_front();
      if (!loop.insert(node).second)
        continue;
      if (isAccumulation(node)) {
        bool feedsAnother = false;
        for (const onnx::NodeProto *user : consumers.lookup(node->output(0)))
          feedsAnother = feedsAnother || isAccumulation(user);
        if (!feedsAnother) {
          sinks.push_back(node);
          continue;
        }
      }
      for (const std::string &output : node->output())
        for (const onnx::NodeProto *user : consumers.lookup(output))
          work.push_back(user);
    }
    if (sinks.size() != 1)
      continue;
    const onnx::NodeProto *sink = sinks.front();

    EagerExpertLoop found;
    found.sink = sink;
    found.indices = oneHot.input(0);
    bool ok = true;
    int64_t nonZeros = 0, sigmoids = 0, scatters = 0;
    llvm::StringSet<> expertWeights;
    for (const onnx::NodeProto *node : loop) {
      // The loop leaves through the sink alone.
      if (node != sink)
        for (const std::string &output : node->output())
          for (const onnx::NodeProto *user : consumers.lookup(output))
            ok = ok && loop.count(user);
      if (node != sink)
        for (const std::string &output : node->output())
          for (const onnx::ValueInfoProto &graphOutput : graph.output())
            ok = ok && graphOutput.name() != output;
      nonZeros += isOp(node, "NonZero");
      sigmoids += isOp(node, "Sigmoid");
      scatters += isOp(node, "ScatterElements");
      ok = ok && !isOp(node, "Relu") && !isOp(node, "Gelu") &&
           !isOp(node, "Tanh") && !isOp(node, "Erf");
      if (!isOp(node, "Gather") || node->input_size() != 2 ||
          getIntAttr(*node, "axis", 0) != 0)
        continue;
      StringRef data = node->input(0);
      const onnx::NodeProto *source = producedBy(data);
      if (initializers.contains(data)) {
        expertWeights.insert(data);
      } else if (isOp(source, "Flatten") &&
                 isOp(producedBy(source->input(0)), "Unsqueeze")) {
        std::string weights = producedBy(source->input(0))->input(0);
        ok = ok && (found.weights.empty() || found.weights == weights);
        found.weights = weights;
      } else if (!loop.count(source)) {
        ok = ok && (found.tokens.empty() || found.tokens == data.str());
        found.tokens = data.str();
      }
    }
    found.iterations = scatters;
    if (!ok || found.tokens.empty() || found.weights.empty() ||
        expertWeights.size() != 2 || scatters < 1 || sigmoids != scatters ||
        nonZeros != scatters + 1)
      continue;
    for (const auto &entry : expertWeights)
      (found.gateUp.empty() ? found.gateUp : found.down) = entry.getKey().str();
    found.nodes = std::move(loop);
    eagerLoops.push_back(std::move(found));
  }
  for (const EagerExpertLoop &loop : eagerLoops)
    for (const onnx::NodeProto *node : loop.nodes)
      absorbedNodes.insert(node);
}

LogicalResult
GraphImporter::convertEagerExpertLoop(const EagerExpertLoop &loop) {
  const onnx::NodeProto &sink = *loop.sink;
  Location loc = nodeLoc(sink);
  auto valueOf = [&](StringRef name) -> FailureOr<Value> {
    if (auto it = values.find(name); it != values.end())
      return it->second;
    if (pendingWeights.count(name))
      return materializeWeight(name);
    return nodeError(sink) << "the expert loop reads '" << name
                           << "', which is not available";
  };
  FailureOr<Value> tokens = valueOf(loop.tokens);
  FailureOr<Value> weights = valueOf(loop.weights);
  FailureOr<Value> indices = valueOf(loop.indices);
  FailureOr<Value> first = valueOf(loop.gateUp);
  FailureOr<Value> second = valueOf(loop.down);
  if (failed(tokens) || failed(weights) || failed(indices) || failed(first) ||
      failed(second))
    return failure();
  // Which 3-D weight is which: gate and up rows stacked [E, 2I, H], down
  // [E, H, I].
  Value gateUp = *first, down = *second;
  ArrayRef<int64_t> x = shapeOf(*tokens), w = shapeOf(*weights);
  if (x.size() != 2 || ShapedType::isDynamic(x[0]))
    return nodeError(sink) << "the expert loop needs static [tokens, hidden] "
                              "rows; bind the batch and sequence with "
                              "--dim-params";
  int64_t tokenCount = x[0], hidden = x[1];
  auto fits = [&](Value gu, Value d) {
    ArrayRef<int64_t> a = shapeOf(gu), b = shapeOf(d);
    return a.size() == 3 && b.size() == 3 && a[0] == b[0] && a[2] == hidden &&
           b[1] == hidden && a[1] == 2 * b[2];
  };
  if (!fits(gateUp, down))
    std::swap(gateUp, down);
  if (!fits(gateUp, down) || w.size() != 2 || w[0] != tokenCount ||
      shapeOf(*indices) != w)
    return nodeError(sink)
           << "the expert loop's tokens, routing weights and expert weights "
              "do not have the shapes of an MoE block";
  int64_t experts = shapeOf(gateUp)[0], inter = shapeOf(down)[2];
  int64_t topK = w[1], pairs = tokenCount * topK;
  if (loop.iterations < experts)
    emitWarning(loc) << "the exported expert loop ending at node '"
                     << sink.name() << "' holds " << loop.iterations
                     << " iterations for " << experts
                     << " experts: tracing dropped the experts its example "
                        "never routed to, and onnxruntime runs this graph only "
                        "when exactly "
                     << loop.iterations
                     << " experts receive tokens; the imported layer computes "
                        "all "
                     << experts << " experts";

  // Per (token, slot) pair: the slot's expert applied to the token.
  Type element = elementTypeOf(*tokens);
  auto tensor = [&](ArrayRef<int64_t> shape, Type type = Type()) {
    return RankedTensorType::get(shape, type ? type : element);
  };
  // Each token once per slot ([T, H] -> [T, K, H] -> [T*K, H, 1]).
  Value repeated = *tokens;
  if (topK > 1)
    repeated =
        ExpandOp::create(builder, loc, tensor({tokenCount, topK, hidden}),
                         emitReshape(loc, *tokens, {tokenCount, 1, hidden}));
  repeated = emitReshape(loc, repeated, {pairs, hidden, 1});
  Value expertOfPair = emitReshape(loc, *indices, {pairs});
  Value gateUpRows =
      GatherOp::create(builder, loc, tensor({pairs, 2 * inter, hidden}), gateUp,
                       expertOfPair, builder.getI64IntegerAttr(0));
  Value projected =
      emitReshape(loc,
                  MatMulOp::create(builder, loc, tensor({pairs, 2 * inter, 1}),
                                   gateUpRows, repeated),
                  {pairs, 2 * inter});
  auto halves = SplitOp::create(
      builder, loc, TypeRange{tensor({pairs, inter}), tensor({pairs, inter})},
      projected, builder.getI64IntegerAttr(1));
  Value gate = halves.getResult(0), up = halves.getResult(1);
  Value silu = MulOp::create(builder, loc, gate.getType(), gate,
                             SigmoidOp::create(builder, loc, gate));
  Value activated = MulOp::create(builder, loc, gate.getType(), silu, up);
  Value downRows =
      GatherOp::create(builder, loc, tensor({pairs, hidden, inter}), down,
                       expertOfPair, builder.getI64IntegerAttr(0));
  Value out = emitReshape(
      loc,
      MatMulOp::create(builder, loc, tensor({pairs, hidden, 1}), downRows,
                       emitReshape(loc, activated, {pairs, inter, 1})),
      {pairs, hidden});
  Value weighted = MulOp::create(builder, loc, out.getType(), out,
                                 emitReshape(loc, *weights, {pairs, 1}));
  Value summed = ReduceOp::create(
      builder, loc, tensor({tokenCount, hidden}), ReduceKind::sum,
      emitReshape(loc, weighted, {tokenCount, topK, hidden}),
      builder.getDenseI64ArrayAttr({1}), /*keep_dims=*/false);
  setResult(sink, 0, summed);
  return success();
}
