//===- CollectiveKernels.cpp - kernels that involve other ranks -----------===//
//
// Part of moe-compiler's runtime, which has no MLIR or LLVM dependency.
//
// The upstream shard collectives the partitioner emits (all_slice,
// all_gather, all_reduce), moe.ragged_all_to_all, and moe.transpose_chunks,
// the local reordering between the dispatch exchange and the experts. A
// collective finds its device group in KernelContext::groups by the
// operation's `grid` and `grid_axes` attributes.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"

#include "moe/Runtime/Collectives.h"

#include <algorithm>
#include <cstring>
#include <numeric>

using namespace moe::rt;
using namespace moe::rt::detail;

std::string moe::rt::groupKey(const std::string &grid,
                              const std::vector<int64_t> &axes) {
  std::string key = grid + "[";
  for (size_t i = 0; i < axes.size(); ++i)
    key += (i ? "," : "") + std::to_string(axes[i]);
  return key + "]";
}

namespace {

/// The communicator of the operation's device group.
Status findGroup(const char *op, const Attributes &attrs,
                 KernelContext &context, Communicator *&group) {
  std::string grid;
  if (Status status = requireString(op, attrs, "grid", grid); !status)
    return status;
  std::vector<int64_t> axes;
  if (const std::vector<int64_t> *listed = attrs.getArray("grid_axes"))
    axes = *listed;
  auto it = context.groups.find(groupKey(grid, axes));
  if (it == context.groups.end() || !it->second)
    return fail(op, "no device group for grid '", grid,
                "' along the listed axes; the program's grids were not set "
                "up for this run");
  group = it->second;
  return Status::success();
}

/// Splits `shape` around `axis` into (outer elements, axis size, inner
/// bytes) for block copies.
void blockLayout(const Tensor &tensor, int64_t axis, int64_t &outer,
                 int64_t &innerBytes) {
  outer = 1;
  for (int64_t i = 0; i < axis; ++i)
    outer *= tensor.dim(i);
  innerBytes = static_cast<int64_t>(dtypeSize(tensor.dtype()));
  for (int64_t i = axis + 1; i < tensor.rank(); ++i)
    innerBytes *= tensor.dim(i);
}

Status checkSplit(const char *op, const Tensor &whole, const Tensor &part,
                  int64_t axis, int64_t parts, const char *wholeName) {
  if (Status status = expectDType(op, "result", part, whole.dtype()); !status)
    return status;
  if (whole.rank() != part.rank())
    return fail(op, "result has rank ", part.rank(), "; expected ",
                whole.rank());
  if (axis < 0 || axis >= whole.rank())
    return fail(op, "axis ", axis, " is out of range for rank ", whole.rank());
  Shape expected = whole.shape();
  if (expected[axis] % parts != 0)
    return fail(op, wholeName, " dimension ", axis, " (", expected[axis],
                ") does not split into ", parts, " equal parts");
  expected[axis] /= parts;
  return expectShape(op, "the local part", part, expected);
}

/// The call, device group and tensor axis of all_slice and all_gather.
Status checkAlongAxis(const char *op, const Attributes &attrs,
                      const std::vector<const Tensor *> &inputs,
                      const std::vector<Tensor *> &outputs,
                      KernelContext &context, const char *axisName,
                      Communicator *&group, int64_t &axis) {
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  if (Status status = findGroup(op, attrs, context, group); !status)
    return status;
  return requireInt(op, attrs, axisName, axis);
}

Status allSliceKernel(const Attributes &attrs,
                      const std::vector<const Tensor *> &inputs,
                      const std::vector<Tensor *> &outputs,
                      KernelContext &context) {
  const char *op = "all_slice";
  Communicator *group;
  int64_t axis;
  if (Status status = checkAlongAxis(op, attrs, inputs, outputs, context,
                                     "slice_axis", group, axis);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  if (Status status =
          checkSplit(op, input, result, axis, group->size(), "input");
      !status)
    return status;
  int64_t outer, innerBytes;
  blockLayout(input, axis, outer, innerBytes);
  int64_t blockBytes = result.dim(axis) * innerBytes;
  const char *source = static_cast<const char *>(input.data());
  char *target = static_cast<char *>(result.data());
  for (int64_t i = 0; i < outer; ++i)
    std::memcpy(target + i * blockBytes,
                source + (i * group->size() + group->rank()) * blockBytes,
                blockBytes);
  return Status::success();
}

Status allGatherKernel(const Attributes &attrs,
                       const std::vector<const Tensor *> &inputs,
                       const std::vector<Tensor *> &outputs,
                       KernelContext &context) {
  const char *op = "all_gather";
  Communicator *group;
  int64_t axis;
  if (Status status = checkAlongAxis(op, attrs, inputs, outputs, context,
                                     "gather_axis", group, axis);
      !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  if (Status status =
          checkSplit(op, result, input, axis, group->size(), "result");
      !status)
    return status;
  int64_t outer, innerBytes;
  blockLayout(input, axis, outer, innerBytes);
  if (outer == 1)
    return group->allGather(input.data(), result.data(), input.sizeInBytes());
  // Gathered rank-major, then interleaved so every outer index holds the
  // pieces of all ranks in rank order.
  std::vector<char> gathered(input.sizeInBytes() * group->size());
  if (Status status =
          group->allGather(input.data(), gathered.data(), input.sizeInBytes());
      !status)
    return status;
  int64_t blockBytes = input.dim(axis) * innerBytes;
  char *target = static_cast<char *>(result.data());
  for (int64_t rank = 0; rank < group->size(); ++rank)
    for (int64_t i = 0; i < outer; ++i)
      std::memcpy(target + (i * group->size() + rank) * blockBytes,
                  gathered.data() + rank * input.sizeInBytes() + i * blockBytes,
                  blockBytes);
  return Status::success();
}

Status allReduceKernel(const Attributes &attrs,
                       const std::vector<const Tensor *> &inputs,
                       const std::vector<Tensor *> &outputs,
                       KernelContext &context) {
  const char *op = "all_reduce";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  Communicator *group;
  if (Status status = findGroup(op, attrs, context, group); !status)
    return status;
  std::string reduction = attrs.getString("reduction", "sum");
  ReduceOp reduceOp;
  if (reduction == "sum")
    reduceOp = ReduceOp::Sum;
  else if (reduction == "max")
    reduceOp = ReduceOp::Max;
  else if (reduction == "min")
    reduceOp = ReduceOp::Min;
  else
    return fail(op, "reduction '", reduction,
                "' is not supported (sum, max, min are)");
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  if (Status status = expectShape(op, "result", result, input.shape()); !status)
    return status;
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;
  return group->allReduce(input, result, reduceOp);
}

/// Counts as i64, checked non-negative.
Status readCounts(const char *op, const char *name, const Tensor &tensor,
                  std::vector<int64_t> &counts) {
  if (Status status = expectIndexDType(op, name, tensor); !status)
    return status;
  counts.resize(tensor.numElements());
  for (int64_t i = 0; i < tensor.numElements(); ++i) {
    counts[i] = loadIndex(tensor, i);
    if (counts[i] < 0)
      return fail(op, name, "[", i, "] is negative (", counts[i], ")");
  }
  return Status::success();
}

/// Zeroes the rows of `tensor` from `firstRow` on.
void zeroRowsFrom(Tensor &tensor, int64_t firstRow) {
  size_t rowBytes = tensor.dim(0) ? tensor.sizeInBytes() / tensor.dim(0) : 0;
  if (firstRow < tensor.dim(0))
    std::memset(static_cast<char *>(tensor.data()) + firstRow * rowBytes, 0,
                (tensor.dim(0) - firstRow) * rowBytes);
}

Status raggedAllToAllKernel(const Attributes &attrs,
                            const std::vector<const Tensor *> &inputs,
                            const std::vector<Tensor *> &outputs,
                            KernelContext &context) {
  const char *op = "ragged_all_to_all";
  if (Status status =
          checkCall(op, inputs, {"input", "send_counts"}, outputs, 2);
      !status)
    return status;
  Communicator *group;
  if (Status status = findGroup(op, attrs, context, group); !status)
    return status;
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  Tensor &recvCounts = *outputs[1];
  std::vector<int64_t> sendCounts;
  if (Status status = readCounts(op, "send_counts", *inputs[1], sendCounts);
      !status)
    return status;
  if (input.rank() < 1 || result.rank() != input.rank())
    return fail(op, "input and result must have the same rank, 1 or more");
  Shape trailing(input.shape().begin() + 1, input.shape().end());
  Shape resultTrailing(result.shape().begin() + 1, result.shape().end());
  if (trailing != resultTrailing)
    return fail(op, "result has shape ", formatShape(result.shape()),
                "; its trailing dimensions must be the input's (",
                formatShape(input.shape()), ")");
  if (Status status = expectDType(op, "result", result, input.dtype()); !status)
    return status;
  if (Status status = expectShape(op, "recv_counts", recvCounts,
                                  {static_cast<int64_t>(sendCounts.size())});
      !status)
    return status;
  if (Status status = expectDType(op, "recv_counts", recvCounts, DType::I64);
      !status)
    return status;
  int64_t sent =
      std::accumulate(sendCounts.begin(), sendCounts.end(), int64_t{0});
  if (sent > input.dim(0))
    return fail(op, "send_counts add up to ", sent, " rows but the input has ",
                input.dim(0));
  size_t rowBytes = dtypeSize(input.dtype());
  for (int64_t i = 1; i < input.rank(); ++i)
    rowBytes *= input.dim(i);
  if (Status status = group->raggedAllToAll(input.data(), sendCounts.data(),
                                            result.data(), result.dim(0),
                                            recvCounts.as<int64_t>(), rowBytes);
      !status)
    return status;
  const int64_t *received = recvCounts.as<int64_t>();
  zeroRowsFrom(result, std::accumulate(received, received + recvCounts.dim(0),
                                       int64_t{0}));
  return Status::success();
}

Status transposeChunksKernel(const Attributes &attrs,
                             const std::vector<const Tensor *> &inputs,
                             const std::vector<Tensor *> &outputs,
                             KernelContext &context) {
  const char *op = "transpose_chunks";
  if (Status status =
          checkCall(op, inputs, {"rows", "chunk_counts"}, outputs, 1);
      !status)
    return status;
  const Tensor &rows = *inputs[0];
  const Tensor &countsTensor = *inputs[1];
  Tensor &result = *outputs[0];
  if (rows.rank() < 1)
    return fail(op, "rows must have rank 1 or more");
  if (countsTensor.rank() != 2)
    return fail(op, "chunk_counts must be 2-D, got ",
                formatShape(countsTensor.shape()));
  if (Status status = expectShape(op, "result", result, rows.shape()); !status)
    return status;
  if (Status status = expectDType(op, "result", result, rows.dtype()); !status)
    return status;
  std::vector<int64_t> counts;
  if (Status status = readCounts(op, "chunk_counts", countsTensor, counts);
      !status)
    return status;
  int64_t a = countsTensor.dim(0), b = countsTensor.dim(1);
  int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  if (total > rows.dim(0))
    return fail(op, "chunk_counts add up to ", total, " rows but there are ",
                rows.dim(0));
  // Start row of chunk (i, j) in the input (row-major order).
  std::vector<int64_t> starts(counts.size());
  int64_t next = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    starts[c] = next;
    next += counts[c];
  }
  size_t rowBytes = rows.dim(0) ? rows.sizeInBytes() / rows.dim(0) : 0;
  const char *source = static_cast<const char *>(rows.data());
  char *target = static_cast<char *>(result.data());
  int64_t written = 0;
  for (int64_t j = 0; j < b; ++j) {
    for (int64_t i = 0; i < a; ++i) {
      int64_t chunk = i * b + j;
      std::memcpy(target + written * rowBytes,
                  source + starts[chunk] * rowBytes, counts[chunk] * rowBytes);
      written += counts[chunk];
    }
  }
  zeroRowsFrom(result, written);
  return Status::success();
}

Status stageTransferKernel(const Attributes &attrs,
                           const std::vector<const Tensor *> &inputs,
                           const std::vector<Tensor *> &outputs,
                           KernelContext &context) {
  const char *op = "stage_transfer";
  if (Status status = checkCall(op, inputs, {"input"}, outputs, 1); !status)
    return status;
  Communicator *stages;
  if (Status status = findGroup(op, attrs, context, stages); !status)
    return status;
  // The input exists on the sending stage only; receivers fill the result
  // with what the sender checked against it.
  const Tensor &input = *inputs[0];
  Tensor &result = *outputs[0];
  int64_t from = attrs.getInt("from", -1);
  const std::vector<int64_t> *to = attrs.getArray("to");
  if (from < 0 || from >= stages->size() || !to)
    return fail(op, "needs a sending stage in [0, ", stages->size(),
                ") and receiving stages");
  if (stages->rank() == from) {
    if (Status status = expectShape(op, "result", result, input.shape());
        !status)
      return status;
    if (Status status = expectDType(op, "result", result, input.dtype());
        !status)
      return status;
    // In stage order; each receiver waits in its own program order.
    for (int64_t stage : *to) {
      if (stage < 0 || stage >= stages->size() || stage == from)
        return fail(op, "cannot send from stage ", from, " to stage ", stage);
      if (Status status = stages->send(input, static_cast<int>(stage)); !status)
        return status;
    }
    if (result.data() != input.data())
      std::memcpy(result.data(), input.data(), input.sizeInBytes());
    return Status::success();
  }
  if (std::find(to->begin(), to->end(), stages->rank()) != to->end())
    return stages->recv(result, static_cast<int>(from));
  return Status::success();
}

} // namespace

void detail::addCollectiveKernels(KernelTable &table) {
  table["stage_transfer"] = stageTransferKernel;
  table["all_slice"] = allSliceKernel;
  table["all_gather"] = allGatherKernel;
  table["all_reduce"] = allReduceKernel;
  table["ragged_all_to_all"] = raggedAllToAllKernel;
  table["transpose_chunks"] = transposeChunksKernel;
}
