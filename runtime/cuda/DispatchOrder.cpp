//===- DispatchOrder.cpp - host side of the GPU permute -------------------===//
//
// Part of moe-compiler's runtime. Compiled by the host compiler so that it
// is tested on machines without a GPU.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/CudaPermute.h"

#include "../lib/KernelSupport.h"

namespace moe::rt::cuda {

Status invertDispatchOrder(const std::vector<int64_t> &sources, int64_t pairs,
                           std::vector<int64_t> &rowOfPair) {
  if (pairs < 0)
    return detail::fail("unpermute", "negative pair count ", pairs);
  rowOfPair.assign(pairs, -1);
  for (size_t row = 0; row < sources.size(); ++row) {
    int64_t pair = sources[row];
    if (pair == -1)
      continue;
    if (pair < -1 || pair >= pairs)
      return detail::fail("unpermute", "row ", row, " holds pair ", pair,
                          ", out of range for ", pairs, " pairs");
    if (rowOfPair[pair] != -1)
      return detail::fail("unpermute", "pair ", pair, " is held by rows ",
                          rowOfPair[pair], " and ", row);
    rowOfPair[pair] = static_cast<int64_t>(row);
  }
  return Status::success();
}

} // namespace moe::rt::cuda
