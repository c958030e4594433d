//===- DispatchOrder.cpp - host side of the GPU permute -------------------===//
//
// Part of moe-compiler's runtime. Compiled by the host compiler so that it
// is tested on machines without a GPU.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaPermute.h"

namespace moe::rt::cuda {

Status invertDispatchOrder(const std::vector<int64_t> &sources, int64_t pairs,
                           std::vector<int64_t> &rowOfPair) {
  if (pairs < 0)
    return Status::error("unpermute: negative pair count " +
                         std::to_string(pairs));
  rowOfPair.assign(pairs, -1);
  for (size_t row = 0; row < sources.size(); ++row) {
    int64_t pair = sources[row];
    if (pair == -1)
      continue;
    if (pair < -1 || pair >= pairs)
      return Status::error("unpermute: row " + std::to_string(row) +
                           " holds pair " + std::to_string(pair) +
                           ", out of range for " + std::to_string(pairs) +
                           " pairs");
    if (rowOfPair[pair] != -1)
      return Status::error(
          "unpermute: pair " + std::to_string(pair) + " is held by rows " +
          std::to_string(rowOfPair[pair]) + " and " + std::to_string(row));
    rowOfPair[pair] = static_cast<int64_t>(row);
  }
  return Status::success();
}

} // namespace moe::rt::cuda
