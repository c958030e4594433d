//===- ExpertLoad.cpp - assumed and measured expert load ------------------===//
//
// Part of moe-compiler.
//
//===----------------------------------------------------------------------===//

#include "moe/Plan/ExpertLoad.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cmath>
#include <map>

using namespace llvm;
using namespace moe::plan;

ExpertLoadModel ExpertLoadModel::uniform() { return ExpertLoadModel(); }

ExpertLoadModel ExpertLoadModel::zipf(double exponent) {
  ExpertLoadModel load;
  load.kind = Kind::Zipf;
  load.zipfExponent = exponent;
  return load;
}

std::string ExpertLoadModel::describe() const {
  switch (kind) {
  case Kind::Uniform:
    return "uniform";
  case Kind::Zipf:
    return formatv("zipf:{0}", format("%g", zipfExponent)).str();
  case Kind::Histogram:
    return "histogram " + source;
  }
  llvm_unreachable("unknown expert load kind");
}

std::vector<double> moe::plan::zipfShares(int64_t numExperts, double exponent) {
  std::vector<double> shares(numExperts);
  double total = 0;
  for (int64_t expert = 0; expert < numExperts; ++expert)
    total += shares[expert] = std::pow(double(expert + 1), -exponent);
  for (double &share : shares)
    share /= total;
  return shares;
}

Expected<ExpertLoadModel>
moe::plan::parseExpertLoadHistogram(StringRef text, StringRef fileName) {
  // tokens[layer][rank] = counts; lines are summed over ranks at the end.
  std::map<int64_t, std::map<int64_t, std::vector<double>>> tokens;
  std::map<std::pair<int64_t, int64_t>, int64_t> lineOf;
  SmallVector<StringRef> lines;
  text.split(lines, '\n');
  for (auto [index, rawLine] : enumerate(lines)) {
    int64_t lineNumber = index + 1;
    auto fail = [&, lineNumber = lineNumber](const Twine &what) {
      return createStringError(
          inconvertibleErrorCode(),
          formatv("{0}:{1}: {2}", fileName, lineNumber, what.str()).str());
    };
    StringRef line = rawLine.trim();
    if (line.empty())
      continue;
    Expected<json::Value> value = json::parse(line);
    if (!value)
      return fail("not valid JSON: " + toString(value.takeError()));
    const json::Object *object = value->getAsObject();
    if (!object)
      return fail("expected one JSON object per line");
    std::optional<int64_t> layer = object->getInteger("layer");
    if (!layer || *layer < 0)
      return fail("field 'layer': expected a non-negative integer");
    std::optional<int64_t> rank = object->getInteger("rank");
    if (!rank || *rank < 0)
      return fail("field 'rank': expected a non-negative integer");
    const json::Array *counts = object->getArray("tokens_per_expert");
    if (!counts || counts->empty())
      return fail("field 'tokens_per_expert': expected a non-empty array of "
                  "token counts");
    std::vector<double> row;
    for (auto [expert, count] : enumerate(*counts)) {
      std::optional<double> number = count.getAsNumber();
      if (!number || !std::isfinite(*number) || *number < 0)
        return fail(formatv("field 'tokens_per_expert': entry {0} is not a "
                            "non-negative number",
                            expert));
      row.push_back(*number);
    }
    auto [previous, inserted] = lineOf.try_emplace({*layer, *rank}, lineNumber);
    if (!inserted)
      return fail(formatv("layer {0} rank {1} already appeared on line {2}",
                          *layer, *rank, previous->second));
    std::map<int64_t, std::vector<double>> &ranks = tokens[*layer];
    if (!ranks.empty() && ranks.begin()->second.size() != row.size())
      return fail(formatv("layer {0} has {1} experts here but {2} on line {3}",
                          *layer, row.size(), ranks.begin()->second.size(),
                          lineOf[{*layer, ranks.begin()->first}]));
    ranks[*rank] = std::move(row);
  }
  if (tokens.empty())
    return createStringError(
        inconvertibleErrorCode(),
        formatv("{0}: no expert-load lines (expected moe-run --expert-load "
                "output)",
                fileName)
            .str());

  ExpertLoadModel load;
  load.kind = ExpertLoadModel::Kind::Histogram;
  load.source = fileName.str();
  int64_t expectedLayer = 0;
  for (auto &[layer, ranks] : tokens) {
    if (layer != expectedLayer)
      return createStringError(
          inconvertibleErrorCode(),
          formatv("{0}: MoE layer {1} has no lines (layers must count from 0 "
                  "without gaps)",
                  fileName, expectedLayer)
              .str());
    ++expectedLayer;
    std::vector<double> sum(ranks.begin()->second.size(), 0.0);
    for (auto &entry : ranks)
      for (auto [expert, count] : enumerate(entry.second))
        sum[expert] += count;
    load.tokensPerExpert.push_back(std::move(sum));
  }
  return load;
}

Expected<ExpertLoadModel> moe::plan::loadExpertLoadHistogram(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return createStringError(
        buffer.getError(), formatv("{0}: cannot read the expert-load file: {1}",
                                   path, buffer.getError().message())
                               .str());
  return parseExpertLoadHistogram((*buffer)->getBuffer(), path);
}

Expected<ExpertLoadModel> moe::plan::resolveExpertLoad(StringRef spec) {
  if (spec == "uniform")
    return ExpertLoadModel::uniform();
  if (spec.consume_front("zipf:")) {
    double exponent = 0;
    if (spec.getAsDouble(exponent) || !std::isfinite(exponent) || exponent <= 0)
      return createStringError(
          inconvertibleErrorCode(),
          formatv("expert load 'zipf:{0}': the exponent must be a positive "
                  "number",
                  spec)
              .str());
    return ExpertLoadModel::zipf(exponent);
  }
  return loadExpertLoadHistogram(spec);
}

Expected<std::vector<std::vector<double>>>
moe::plan::expertShares(const ExpertLoadModel &load,
                        const ModelDescription &model) {
  std::vector<std::vector<double>> shares;
  int64_t numMoELayers = model.numMoELayers();
  size_t rows = load.tokensPerExpert.size();
  if (load.kind == ExpertLoadModel::Kind::Histogram && rows != 1 &&
      rows != size_t(numMoELayers))
    return createStringError(
        inconvertibleErrorCode(),
        formatv("{0}: has {1} MoE layers but model '{2}' has {3}", load.source,
                rows, model.name, numMoELayers)
            .str());
  for (auto [layerIndex, layer] : enumerate(model.layers)) {
    if (!layer.isMoE())
      continue;
    int64_t moeLayer = shares.size();
    switch (load.kind) {
    case ExpertLoadModel::Kind::Uniform:
      shares.emplace_back(layer.numExperts, 1.0 / layer.numExperts);
      break;
    case ExpertLoadModel::Kind::Zipf:
      shares.push_back(zipfShares(layer.numExperts, load.zipfExponent));
      break;
    case ExpertLoadModel::Kind::Histogram: {
      const std::vector<double> &row =
          load.tokensPerExpert[rows == 1 ? 0 : moeLayer];
      if (row.size() != size_t(layer.numExperts))
        return createStringError(
            inconvertibleErrorCode(),
            formatv("{0}: MoE layer {1} has {2} experts but layer {3} of "
                    "model '{4}' has {5}",
                    load.source, moeLayer, row.size(), layerIndex, model.name,
                    layer.numExperts)
                .str());
      double total = 0;
      for (double count : row)
        total += count;
      if (total <= 0)
        return createStringError(
            inconvertibleErrorCode(),
            formatv("{0}: MoE layer {1} routed no tokens, so it says nothing "
                    "about the load",
                    load.source, moeLayer)
                .str());
      std::vector<double> normalised;
      for (double count : row)
        normalised.push_back(count / total);
      shares.push_back(std::move(normalised));
      break;
    }
    }
  }
  return shares;
}
