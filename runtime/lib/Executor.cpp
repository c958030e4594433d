//===- Executor.cpp - running a program on one rank -----------------------===//
//
// Part of moe-compiler's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Executor.h"
#include "moe/Runtime/MemoryPlan.h"

#include "ExpertMatrices.h"
#include "KernelSupport.h"
#include "WorkerPool.h"

#include <algorithm>
#include <cblas.h>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace moe::rt;

namespace {

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Where the elements of a static value lie in a weight or constant: element
/// (i_0, ..., i_r) at values[root] + offset + sum(i_d * strides[d]).
struct StridedView {
  int root = -1;
  int64_t offset = 0;
  Shape shape;
  std::vector<int64_t> strides;
};

/// Follows `value` back through the static transposes, slices and
/// all_slices that produced it to an f32 weight or constant. False when any
/// step is something else; every view it builds stays inside its root.
bool traceView(const Program &program, const std::vector<Tensor> &values,
               const std::vector<bool> &isStatic, const KernelContext &context,
               const std::vector<int> &producers, int value,
               StridedView &view) {
  if (value < 0 || !isStatic[value])
    return false;
  int producer = producers[value];
  if (producer < 0) {
    const Tensor &tensor = values[value];
    if (tensor.dtype() != DType::F32 || !tensor.data())
      return false;
    view = {value, 0, tensor.shape(),
            detail::contiguousStrides(tensor.shape())};
    return true;
  }
  const Operation &op = program.operations[producer];
  if (op.results.size() != 1 || op.operands.size() != 1 ||
      !traceView(program, values, isStatic, context, producers, op.operands[0],
                 view))
    return false;
  int64_t rank = static_cast<int64_t>(view.shape.size());
  auto resolve = [&](int64_t axis, int64_t &resolved) {
    resolved = axis < 0 ? axis + rank : axis;
    return resolved >= 0 && resolved < rank;
  };
  if (op.op == "transpose") {
    const std::vector<int64_t> *permutation = op.attrs.getArray("permutation");
    if (!permutation || static_cast<int64_t>(permutation->size()) != rank)
      return false;
    StridedView permuted = view;
    std::vector<bool> seen(rank, false);
    for (int64_t d = 0; d < rank; ++d) {
      int64_t from = (*permutation)[d];
      if (from < 0 || from >= rank || seen[from])
        return false;
      seen[from] = true;
      permuted.shape[d] = view.shape[from];
      permuted.strides[d] = view.strides[from];
    }
    view = permuted;
  } else if (op.op == "slice") {
    const std::vector<int64_t> *starts = op.attrs.getArray("starts"),
                               *ends = op.attrs.getArray("ends"),
                               *axes = op.attrs.getArray("axes"),
                               *steps = op.attrs.getArray("steps");
    if (!starts || !ends || !axes || !steps || ends->size() != starts->size() ||
        axes->size() != starts->size() || steps->size() != starts->size())
      return false;
    std::vector<bool> sliced(rank, false);
    for (size_t i = 0; i < starts->size(); ++i) {
      int64_t axis, first, count, step = (*steps)[i];
      if (!resolve((*axes)[i], axis) || sliced[axis] || step <= 0)
        return false;
      sliced[axis] = true;
      detail::sliceDim(view.shape[axis], (*starts)[i], (*ends)[i], step, first,
                       count);
      view.offset += first * view.strides[axis];
      view.strides[axis] = count > 1 ? view.strides[axis] * step : 0;
      view.shape[axis] = count;
    }
  } else if (op.op == "all_slice") {
    std::vector<int64_t> gridAxes;
    if (const std::vector<int64_t> *listed = op.attrs.getArray("grid_axes"))
      gridAxes = *listed;
    auto group =
        context.groups.find(groupKey(op.attrs.getString("grid"), gridAxes));
    int64_t axis;
    if (group == context.groups.end() || !group->second ||
        !op.attrs.has("slice_axis") ||
        !resolve(op.attrs.getInt("slice_axis"), axis) ||
        view.shape[axis] % group->second->size() != 0)
      return false;
    int64_t chunk = view.shape[axis] / group->second->size();
    view.offset += group->second->rank() * chunk * view.strides[axis];
    view.shape[axis] = chunk;
  } else {
    return false;
  }
  return view.shape == op.resultTypes[0].shape;
}

/// Drops the resident pages that lie wholly inside [data, data + bytes) of a
/// private read-only file mapping (anything else is left alone: the
/// executor only passes mapped weights).
void dropPages(const void *data, size_t bytes) {
  uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  uintptr_t end = begin + bytes;
  uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  begin = (begin + page - 1) / page * page;
  end = end / page * page;
  if (end > begin)
    ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_DONTNEED);
}

/// A read-only mapping of a whole weight file.
struct Mapping {
  void *address = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (address != MAP_FAILED)
      ::munmap(address, size);
  }
};

/// Weight files must stay inside the weights directory (the same rule the
/// importer applies to ONNX external data).
bool isContainedRelativePath(const std::string &path) {
  if (path.empty() || path[0] == '/')
    return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos)
      end = path.size();
    if (path.compare(start, end - start, "..") == 0 && end - start == 2)
      return false;
    start = end + 1;
  }
  return true;
}

Status mapFile(const std::string &path, std::shared_ptr<Mapping> &mapping) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return Status::error("cannot open weight file '" + path +
                         "': " + std::strerror(errno));
  struct stat info;
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return Status::error("weight file '" + path + "' is not a regular file");
  }
  mapping = std::make_shared<Mapping>();
  mapping->size = info.st_size;
  if (mapping->size > 0)
    mapping->address =
        ::mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping->size > 0 && mapping->address == MAP_FAILED)
    return Status::error("cannot map weight file '" + path +
                         "': " + std::strerror(errno));
  return Status::success();
}

/// Copies the box `offsets` + `sizes` of a row-major tensor of `fullShape`.
void copyBox(const uint8_t *source, const Shape &fullShape,
             const Shape &offsets, const Shape &sizes, size_t elementSize,
             uint8_t *destination) {
  size_t rank = fullShape.size();
  if (rank == 0) {
    std::memcpy(destination, source, elementSize);
    return;
  }
  std::vector<int64_t> strides(rank, 1);
  for (size_t d = rank - 1; d > 0; --d)
    strides[d - 1] = strides[d] * fullShape[d];
  // Iterate over all but the last dimension; copy contiguous rows.
  std::vector<int64_t> index(rank, 0);
  int64_t rowBytes = sizes[rank - 1] * elementSize;
  int64_t rows = numElements(sizes) / std::max<int64_t>(sizes[rank - 1], 1);
  if (sizes[rank - 1] == 0)
    return;
  for (int64_t row = 0; row < rows; ++row) {
    int64_t element = 0;
    for (size_t d = 0; d < rank; ++d)
      element += (offsets[d] + index[d]) * strides[d];
    std::memcpy(destination + row * rowBytes, source + element * elementSize,
                rowBytes);
    for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
      if (++index[d] < sizes[d])
        break;
      index[d] = 0;
    }
  }
}

} // namespace

Status moe::rt::checkFitsInMemory(const Program &program) {
  // Every buffer is allocated up front (inputs twice: the caller's copy and
  // the executor's); refuse a program whose buffers cannot fit before
  // trying.
  double bytes = 0;
  for (const InputDecl &input : program.inputs)
    bytes += 2.0 * static_cast<double>(numElements(input.type.shape)) *
             dtypeSize(input.type.dtype);
  for (const Operation &op : program.operations)
    for (const ValueType &type : op.resultTypes)
      bytes +=
          static_cast<double>(numElements(type.shape)) * dtypeSize(type.dtype);
  double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                  static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (memory > 0 && bytes > memory)
    return Status::error("the program's buffers need " +
                         std::to_string(bytes / 1e9) +
                         " GB, more than this "
                         "machine's " +
                         std::to_string(memory / 1e9) + " GB");
  return Status::success();
}

int64_t Executor::ranksOf(const Program &program) {
  int64_t ranks = 1;
  for (const GridDecl &grid : program.grids)
    ranks = std::max(ranks, numElements(grid.shape));
  return ranks;
}

Status
moe::rt::createDeviceGroups(const Program &program, Communicator *world,
                            std::map<std::string, Communicator *> &groups,
                            std::vector<std::unique_ptr<Communicator>> &owned) {
  if (program.grids.empty())
    return Status::success();
  for (const GridDecl &grid : program.grids) {
    int64_t ranks = numElements(grid.shape);
    int64_t worldSize = world ? world->size() : 1;
    if (ranks != worldSize)
      return Status::error("the program is partitioned for " +
                           std::to_string(ranks) + " ranks (grid '" +
                           grid.name + "' of shape " + formatShape(grid.shape) +
                           ") but runs on " + std::to_string(worldSize) +
                           "; run it with --ranks " + std::to_string(ranks) +
                           " or under mpirun -np " + std::to_string(ranks));
  }
  // A one-device grid still needs communicators for its collectives.
  if (!world) {
    std::vector<std::unique_ptr<Communicator>> group;
    if (Status status = createThreadGroup(1, CommunicatorOptions(), group);
        !status)
      return status;
    owned.push_back(std::move(group[0]));
    world = owned.back().get();
  }
  // Every rank walks the same operations in the same order, so the
  // collective splits match.
  for (const Operation &op : program.operations) {
    std::string gridName = op.attrs.getString("grid");
    if (gridName.empty())
      continue;
    std::vector<int64_t> axes;
    if (const std::vector<int64_t> *listed = op.attrs.getArray("grid_axes"))
      axes = *listed;
    std::string key = groupKey(gridName, axes);
    if (groups.count(key))
      continue;
    const GridDecl *grid = nullptr;
    for (const GridDecl &candidate : program.grids)
      if (candidate.name == gridName)
        grid = &candidate;
    if (!grid)
      return Status::error("line " + std::to_string(op.line) + ": operation '" +
                           op.op + "' names grid '" + gridName +
                           "', which the program does not declare");
    for (int64_t axis : axes)
      if (axis < 0 || axis >= static_cast<int64_t>(grid->shape.size()))
        return Status::error("line " + std::to_string(op.line) +
                             ": grid axis " + std::to_string(axis) +
                             " is out of range for grid '" + gridName + "'");
    std::unique_ptr<Communicator> group;
    if (Status status = world->splitGrid(grid->shape, axes, group); !status)
      return status;
    groups[key] = group.get();
    owned.push_back(std::move(group));
  }
  return Status::success();
}

Status moe::rt::selectStageOperations(const Program &p,
                                      const std::vector<bool> &isStatic,
                                      int64_t rank,
                                      std::vector<bool> &runsHere) {
  runsHere.assign(p.operations.size(), true);
  if (!p.pipeline)
    return Status::success();
  const GridDecl *grid = nullptr;
  for (const GridDecl &candidate : p.grids)
    if (candidate.name == p.pipeline->grid)
      grid = &candidate;
  if (!grid || p.pipeline->axis >= static_cast<int64_t>(grid->shape.size()))
    return Status::error("the pipeline names grid '" + p.pipeline->grid +
                         "' axis " + std::to_string(p.pipeline->axis) +
                         ", which the program does not declare");
  // This rank's coordinate along the pipeline axis (row-major ranks).
  int64_t stride = 1;
  for (size_t axis = p.pipeline->axis + 1; axis < grid->shape.size(); ++axis)
    stride *= grid->shape[axis];
  int64_t stage = rank / stride % grid->shape[p.pipeline->axis];

  // Backwards: an operation runs here when it belongs to this stage (a
  // transfer: when this stage sends or receives it), has no stage, or is
  // static and computes something that runs here needs.
  std::vector<bool> needed(p.numValues, false);
  for (const OutputDecl &output : p.outputs)
    needed[output.id] = true;
  for (size_t i = p.operations.size(); i-- > 0;) {
    const Operation &op = p.operations[i];
    bool runs;
    if (isStatic[op.results.front()]) {
      runs = false;
      for (int result : op.results)
        runs = runs || needed[result];
    } else if (op.op == "stage_transfer") {
      const std::vector<int64_t> *to = op.attrs.getArray("to");
      runs = op.attrs.getInt("from", -1) == stage ||
             (to && std::find(to->begin(), to->end(), stage) != to->end());
    } else {
      runs =
          !op.attrs.has("moe.stage") || op.attrs.getInt("moe.stage") == stage;
    }
    runsHere[i] = runs;
    if (!runs)
      continue;
    for (int operand : op.operands)
      if (operand >= 0)
        needed[operand] = true;
  }
  for (const OutputDecl &output : p.outputs) {
    bool computed = false;
    for (size_t i = 0; i < p.operations.size(); ++i)
      for (int result : p.operations[i].results)
        computed = computed || (result == output.id && runsHere[i]);
    bool isInput = false;
    for (const InputDecl &input : p.inputs)
      isInput = isInput || input.id == output.id;
    if (!computed && !isInput && !isStatic[output.id])
      return Status::error(
          "output '" + output.name + "' is not computed on pipeline stage " +
          std::to_string(stage) + "; the program must hand it to every stage");
  }
  return Status::success();
}

struct Executor::PreparedFFN {
  detail::PreparedExpertWeights weights;
  /// The weights and constants the matrices are read from.
  std::vector<int> roots;
  /// Whether create() packs the matrices (then the roots are released).
  bool pack = false;
};

Executor::~Executor() = default;

void Executor::prepareExpertWeights() {
  // Rows per expert from which packing pays off: below it (decoding) the
  // experts' weights are read in place, touching only the experts in use.
  constexpr int64_t packingRows = 8;
  const Program &p = program_;
  prepared_.clear();
  prepared_.resize(p.operations.size());
  std::vector<int> producers(p.numValues, -1);
  for (size_t i = 0; i < p.operations.size(); ++i)
    for (int result : p.operations[i].results)
      producers[result] = static_cast<int>(i);
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    if (op.op != "expert_ffn" || !runsHere_[i] ||
        isStatic_[op.results.front()] || op.operands.size() < 5 ||
        op.resultTypes[0].shape.size() != 2)
      continue;
    auto prepared = std::make_unique<PreparedFFN>();
    detail::PreparedExpertWeights &weights = prepared->weights;
    weights.gated = op.operands[2] >= 0;
    detail::ExpertMatrices *targets[] = {&weights.gate, &weights.up,
                                         &weights.down};
    bool traced = true, blasCompatible = true, contiguousColumns = true;
    for (int w = 0; w < 3 && traced; ++w) {
      int value = op.operands[2 + w];
      if (w == 0 && value < 0)
        continue;
      StridedView view;
      traced =
          traceView(p, values_, isStatic_, context_, producers, value, view) &&
          view.shape.size() == 3 && numElements(view.shape) > 0;
      if (!traced)
        break;
      detail::ExpertMatrices &matrices = *targets[w];
      matrices.data = values_[view.root].as<float>() + view.offset;
      matrices.experts = view.shape[0];
      matrices.k = view.shape[1];
      matrices.n = view.shape[2];
      matrices.expertStride = view.strides[0];
      matrices.kStride = view.strides[1];
      matrices.nStride = view.strides[2];
      blasCompatible = blasCompatible && matrices.blasCompatible();
      contiguousColumns = contiguousColumns && matrices.nStride == 1;
      if (std::find(prepared->roots.begin(), prepared->roots.end(),
                    view.root) == prepared->roots.end())
        prepared->roots.push_back(view.root);
    }
    if (!traced)
      continue;
    int64_t rows = op.resultTypes[0].shape[0];
    bool manyRows = rows >= packingRows * weights.up.experts;
    if (manyRows && detail::avx512KernelsAvailable()) {
      prepared->pack = true;
    } else if (!blasCompatible || (manyRows && !contiguousColumns)) {
      // OpenBLAS multiplies by transposed (out-major) weights slower than
      // by copies in its preferred layout (measured 47 vs 62 GFLOP/s for
      // 32 rows): keep the copies the layout changes make.
      continue;
    }
    prepared_[i] = std::move(prepared);
  }
}

Status Executor::planActivations(const std::vector<bool> &isOutput,
                                 std::vector<int64_t> &offsets) {
  const Program &p = program_;
  offsets.assign(p.numValues, -1);
  // Values that stay out of the arena: outputs (read after the run), what
  // collectives read or write (a peer may still be reading a buffer when
  // this rank moves on), and dispatch results (moe-run reads the counts
  // after the run for --expert-load).
  auto keepsOwnBuffer = [](const std::string &op) {
    static const char *names[] = {
        "ragged_all_to_all", "transpose_chunks", "stage_transfer", "all_slice",
        "all_gather",        "all_reduce",       "dispatch"};
    return std::find(std::begin(names), std::end(names), op) != std::end(names);
  };
  std::vector<int64_t> first(p.numValues, -1), last(p.numValues, -1);
  std::vector<bool> eligible(p.numValues, false);
  std::vector<const ValueType *> types(p.numValues, nullptr);
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    if (!runsHere_[i] || isStatic_[op.results.front()])
      continue;
    bool own = keepsOwnBuffer(op.op);
    for (int operand : op.operands) {
      if (operand < 0)
        continue;
      last[operand] = static_cast<int64_t>(i);
      if (own)
        eligible[operand] = false;
    }
    for (size_t r = 0; r < op.results.size(); ++r) {
      int id = op.results[r];
      first[id] = last[id] = static_cast<int64_t>(i);
      eligible[id] = !own && !isOutput[id];
      types[id] = &op.resultTypes[r];
    }
  }
  std::vector<BufferLifetime> buffers;
  std::vector<int> ids;
  for (int id = 0; id < p.numValues; ++id) {
    if (!eligible[id])
      continue;
    int64_t bytes = numElements(types[id]->shape) * dtypeSize(types[id]->dtype);
    buffers.push_back({bytes, first[id], last[id]});
    ids.push_back(id);
  }
  if (buffers.empty())
    return Status::success();
  constexpr int64_t alignment = 64;
  MemoryPlan plan = planMemory(buffers, alignment);
  int64_t arenaBytes = std::max<int64_t>(plan.arenaBytes, alignment);
  // Pages are committed as operations first touch them.
  void *memory = std::aligned_alloc(alignment, arenaBytes);
  if (!memory)
    return Status::error("out of memory allocating the " +
                         std::to_string(arenaBytes) + "-byte activation arena");
  arena_ = std::shared_ptr<void>(memory, std::free);
  for (size_t b = 0; b < ids.size(); ++b)
    offsets[ids[b]] = plan.offsets[b];
  return Status::success();
}

Status Executor::create(Program program, const std::string &programDirectory,
                        int threads, std::unique_ptr<Executor> &executor,
                        Communicator *world) {
  executor.reset(new Executor());
  Executor &self = *executor;
  self.program_ = std::move(program);
  self.context_.threads = threads;
  if (threads > 1) {
    self.pool_ = std::make_unique<WorkerPool>(threads);
    self.context_.pool = self.pool_.get();
  }
  if (Status status = createDeviceGroups(self.program_, world,
                                         self.context_.groups, self.groups_);
      !status)
    return status;
  openblas_set_num_threads(threads);
  const Program &p = self.program_;
  self.values_.resize(p.numValues);
  self.isStatic_.assign(p.numValues, false);

  if (Status status = checkFitsInMemory(p); !status)
    return status;
  auto allocate = [&](int id, const ValueType &type) {
    self.values_[id] = Tensor(type.dtype, type.shape);
    if (!self.values_[id].data())
      return Status::error("out of memory allocating value " +
                           std::to_string(id) + " (" + formatShape(type.shape) +
                           ")");
    return Status::success();
  };
  for (const InputDecl &input : p.inputs)
    if (Status status = allocate(input.id, input.type); !status)
      return status;
  Status status =
      loadStaticValues(p, programDirectory, self.values_, &self.weightViews_);
  if (!status)
    return status;
  for (const ConstDecl &constant : p.constants)
    self.isStatic_[constant.id] = true;
  for (const WeightDecl &weight : p.weights)
    self.isStatic_[weight.id] = true;

  // Operations whose operands are all weights or constants (layout changes
  // of weights) are static: they run now, once. Every other result is
  // allocated once and reused by every run.
  self.kernels_.resize(p.operations.size());
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    self.kernels_[i] = findKernel(op.op);
    if (!self.kernels_[i] && op.op == "launch")
      return Status::error(
          "line " + std::to_string(op.line) +
          ": the program was compiled with --target cuda: its 'launch' "
          "operations run generated GPU kernels, which the CPU backend "
          "cannot run; compile the model with --target cpu for CPU ranks");
    if (!self.kernels_[i])
      return Status::error("line " + std::to_string(op.line) +
                           ": no kernel for operation '" + op.op + "'");
    bool isStatic = true;
    for (int operand : op.operands)
      if (operand >= 0 && !self.isStatic_[operand])
        isStatic = false;
    for (int result : op.results)
      self.isStatic_[result] = isStatic;
  }
  if (Status status = selectStageOperations(
          p, self.isStatic_, world ? world->rank() : 0, self.runsHere_);
      !status)
    return status;
  self.prepareExpertWeights();

  // Operands as this rank reads them: a prepared expert_ffn reads its
  // weights' roots (when it packs them, once, at load).
  auto operandsOf = [&](size_t i) {
    std::vector<int> operands = p.operations[i].operands;
    if (const auto &prepared = self.prepared_[i]) {
      for (int weight : {2, 3, 4})
        operands[weight] = -1;
      operands.insert(operands.end(), prepared->roots.begin(),
                      prepared->roots.end());
    }
    return operands;
  };
  // Static operations whose results nobody reads (the layout changes a
  // prepared expert_ffn replaced) do not run. Program order is topological,
  // so one backward sweep finds them.
  std::vector<bool> isOutput(p.numValues, false);
  for (const OutputDecl &output : p.outputs)
    isOutput[output.id] = true;
  std::vector<int> readers(p.numValues, 0);
  for (size_t i = p.operations.size(); i-- > 0;) {
    const Operation &op = p.operations[i];
    if (!self.runsHere_[i])
      continue;
    bool unread = self.isStatic_[op.results.front()];
    for (int result : op.results)
      unread = unread && !isOutput[result] && readers[result] == 0;
    if (unread) {
      self.runsHere_[i] = false;
      continue;
    }
    for (int operand : operandsOf(i))
      if (operand >= 0)
        ++readers[operand];
  }

  // A static value is kept when runs read it; otherwise it is released right
  // after its last static use, so the copies made while changing layouts
  // (and the mapped pages they were read from) never pile up.
  std::vector<bool> needed(p.numValues, false);
  std::vector<int> staticUses(p.numValues, 0);
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    if (!self.runsHere_[i])
      continue;
    // Packing reads the roots at load, like a static operation.
    bool readsAtLoad = self.isStatic_[op.results.front()] ||
                       (self.prepared_[i] && self.prepared_[i]->pack);
    for (int operand : operandsOf(i)) {
      if (operand < 0)
        continue;
      if (readsAtLoad)
        ++staticUses[operand];
      else
        needed[operand] = true;
    }
  }
  for (const OutputDecl &output : p.outputs)
    needed[output.id] = true;
  auto release = [&](int value) {
    if (!self.isStatic_[value] || needed[value] || staticUses[value] > 0)
      return;
    auto view = self.weightViews_.find(value);
    if (view != self.weightViews_.end()) {
      // Drop the resident pages of a mapped weight nobody reads any more.
      dropPages(view->second.first, view->second.second);
      self.weightViews_.erase(view);
    }
    self.values_[value] = Tensor();
  };
  std::vector<int64_t> arenaOffsets;
  if (Status status = self.planActivations(isOutput, arenaOffsets); !status)
    return status;
  int64_t packedBytes = 0;
  for (size_t i = 0; i < p.operations.size(); ++i) {
    const Operation &op = p.operations[i];
    // Another stage's operations need no buffers here.
    if (!self.runsHere_[i])
      continue;
    for (size_t r = 0; r < op.results.size(); ++r) {
      int id = op.results[r];
      if (arenaOffsets[id] >= 0) {
        self.values_[id] =
            Tensor(op.resultTypes[r].dtype, op.resultTypes[r].shape,
                   static_cast<char *>(self.arena_.get()) + arenaOffsets[id],
                   self.arena_);
      } else if (Status status = allocate(id, op.resultTypes[r]); !status) {
        return status;
      }
    }
    if (PreparedFFN *prepared = self.prepared_[i].get();
        prepared && prepared->pack) {
      std::vector<detail::ExpertMatrices *> matrices;
      for (detail::ExpertMatrices *m :
           {&prepared->weights.gate, &prepared->weights.up,
            &prepared->weights.down}) {
        if (!m->data)
          continue;
        if (Status status = m->allocatePacked("expert_ffn"); !status)
          return Status::error("line " + std::to_string(op.line) +
                               " (expert_ffn): " + status.message);
        packedBytes += m->packed.sizeInBytes();
        matrices.push_back(m);
      }
      // Expert by expert, dropping each expert's mapped pages once packed,
      // so that the file's pages and the packed copy never pile up. The
      // mapping is private and read-only: a later reader just faults the
      // pages in again.
      for (int64_t e = 0; e < prepared->weights.up.experts; ++e) {
        for (detail::ExpertMatrices *m : matrices)
          m->packExpert(e);
        for (detail::ExpertMatrices *m : matrices) {
          auto [begin, end] = m->expertExtent(e);
          // Only pages of a file: on owned memory (constants) MADV_DONTNEED
          // would zero them.
          for (const auto &[value, bytes] : self.weightViews_) {
            auto *first = static_cast<const char *>(bytes.first);
            auto *from = reinterpret_cast<const char *>(begin);
            auto *to = reinterpret_cast<const char *>(end);
            if (from >= first && to <= first + bytes.second)
              dropPages(from, to - from);
          }
        }
      }
      for (detail::ExpertMatrices *m : matrices)
        m->data = nullptr;
      for (int root : prepared->roots) {
        --staticUses[root];
        release(root);
      }
      continue;
    }
    if (!self.isStatic_[op.results.front()])
      continue;
    if (Status status = self.runOperation(i); !status)
      return status;
    for (int operand : op.operands) {
      if (operand >= 0) {
        --staticUses[operand];
        release(operand);
      }
    }
    for (int result : op.results)
      release(result);
  }
  for (int value = 0; value < p.numValues; ++value)
    release(value);
  self.weightBytes_ = packedBytes;
  for (int value = 0; value < p.numValues; ++value)
    if (self.isStatic_[value] && needed[value])
      self.weightBytes_ += self.values_[value].sizeInBytes();
  return Status::success();
}

Status moe::rt::loadStaticValues(
    const Program &program, const std::string &programDirectory,
    std::vector<Tensor> &values,
    std::map<int, std::pair<const void *, size_t>> *views) {
  for (const ConstDecl &constant : program.constants) {
    Tensor doubles(DType::F64, constant.type.shape);
    std::memcpy(doubles.data(), constant.values.data(),
                constant.values.size() * sizeof(double));
    Tensor tensor(constant.type.dtype, constant.type.shape);
    if (!doubles.data() || !tensor.data())
      return Status::error("out of memory allocating constant " +
                           std::to_string(constant.id));
    convert(doubles, tensor);
    values[constant.id] = std::move(tensor);
  }
  std::map<std::string, std::shared_ptr<Mapping>> mappings;
  for (const WeightDecl &weight : program.weights) {
    if (!isContainedRelativePath(weight.file))
      return Status::error("weight '" + weight.name + "' names file '" +
                           weight.file +
                           "'; weight files must be relative paths without "
                           "'..'");
    // weights-dir is relative to the program file unless it is absolute.
    std::string directory =
        !program.weightsDir.empty() && program.weightsDir[0] == '/'
            ? program.weightsDir
            : programDirectory + "/" + program.weightsDir;
    std::string path = directory + "/" + weight.file;
    std::shared_ptr<Mapping> &mapping = mappings[path];
    if (!mapping) {
      Status status = mapFile(path, mapping);
      if (!status)
        return status;
    }
    if (weight.offset > static_cast<int64_t>(mapping->size) ||
        weight.length > static_cast<int64_t>(mapping->size) - weight.offset)
      return Status::error("weight '" + weight.name + "': bytes [" +
                           std::to_string(weight.offset) + ", " +
                           std::to_string(weight.offset + weight.length) +
                           ") lie outside '" + path + "' of " +
                           std::to_string(mapping->size) + " bytes");
    const uint8_t *bytes =
        static_cast<const uint8_t *>(mapping->address) + weight.offset;
    size_t elementSize = dtypeSize(weight.type.dtype);
    bool aligned = reinterpret_cast<uintptr_t>(bytes) % 64 == 0;
    Tensor tensor;
    if (!weight.sliceOffsets && aligned) {
      // Zero copy: the kernels read the mapped pages directly.
      tensor = Tensor(weight.type.dtype, weight.type.shape,
                      const_cast<uint8_t *>(bytes), mapping);
      if (views)
        (*views)[weight.id] = {bytes, static_cast<size_t>(weight.length)};
    } else {
      // Sliced or misaligned (initializers inside a protobuf start anywhere):
      // copy only the box this rank owns.
      tensor = Tensor(weight.type.dtype, weight.type.shape);
      if (!tensor.data())
        return Status::error("out of memory reading weight '" + weight.name +
                             "'");
      Shape offsets = weight.sliceOffsets ? *weight.sliceOffsets
                                          : Shape(weight.fullShape.size(), 0);
      copyBox(bytes, weight.fullShape, offsets, weight.type.shape, elementSize,
              tensor.as<uint8_t>());
    }
    values[weight.id] = std::move(tensor);
  }
  return Status::success();
}

Status Executor::runOperation(size_t index) {
  const Operation &op = program_.operations[index];
  std::vector<const Tensor *> operands;
  operands.reserve(op.operands.size());
  for (int operand : op.operands)
    operands.push_back(operand >= 0 ? &values_[operand] : nullptr);
  std::vector<Tensor *> results;
  results.reserve(op.results.size());
  for (int result : op.results)
    results.push_back(&values_[result]);
  Status status;
  if (const auto &prepared = prepared_[index]) {
    for (int weight : {2, 3, 4})
      operands[weight] = nullptr;
    status = detail::runPreparedExpertFFN(op.attrs, operands, prepared->weights,
                                          results, context_);
  } else {
    status = kernels_[index](op.attrs, operands, results, context_);
  }
  if (!status)
    return Status::error("line " + std::to_string(op.line) + " (" + op.op +
                         "): " + status.message);
  return status;
}

Status Executor::run(const std::vector<Tensor> &inputs,
                     std::vector<const Tensor *> &outputs,
                     std::vector<OpTiming> *timings) {
  const Program &p = program_;
  if (inputs.size() != p.inputs.size())
    return Status::error("the program takes " +
                         std::to_string(p.inputs.size()) + " inputs, got " +
                         std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputDecl &decl = p.inputs[i];
    const Tensor &given = inputs[i];
    if (given.shape() != decl.type.shape)
      return Status::error("input '" + decl.name + "' must have shape " +
                           formatShape(decl.type.shape) + ", got " +
                           formatShape(given.shape()));
    if (given.dtype() != decl.type.dtype)
      return Status::error("input '" + decl.name + "' must be " +
                           dtypeName(decl.type.dtype) + ", got " +
                           dtypeName(given.dtype()));
    std::memcpy(values_[decl.id].data(), given.data(), given.sizeInBytes());
  }
  double start = timings ? now() : 0.0;
  for (size_t i = 0; i < p.operations.size(); ++i) {
    if (isStatic_[p.operations[i].results.front()] || !runsHere_[i])
      continue;
    double opStart = timings ? now() : 0.0;
    Status status = runOperation(i);
    if (!status)
      return status;
    if (timings)
      timings->push_back(
          {static_cast<int>(i), opStart - start, now() - opStart});
  }
  outputs.clear();
  for (const OutputDecl &output : p.outputs)
    outputs.push_back(&values_[output.id]);
  return Status::success();
}
