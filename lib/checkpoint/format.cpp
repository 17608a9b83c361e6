#include "checkpoint/format.h"

#include <cstring>

#include <fmt/format.h>

namespace dtrain {

namespace {

// Names read from a damaged file may hold any byte: a control character
// (a newline, an escape) would break the one-line message or the terminal.
std::string printable(std::string s) {
  for (char& ch : s)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  return s;
}

}  // namespace

CheckpointError::CheckpointError(std::string checkpoint, std::string file, std::string tensor,
                                 std::string problem)
    : InputError(printable(fmt::format("checkpoint {}: {}{}{}", checkpoint, file.empty() ? "" : file + ": ",
                                       tensor.empty() ? "" : "tensor " + tensor + ": ", problem))),
      checkpoint_(std::move(checkpoint)),
      file_(std::move(file)),
      tensor_(std::move(tensor)),
      problem_(std::move(problem)) {}

}  // namespace dtrain

namespace dtrain::ckpt_format {

int64_t Box::volume() const {
  int64_t v = 1;
  for (int64_t c : count) v *= c;
  return v;
}

std::vector<Box> boxes_of(const Shard& shard) {
  const int rank = shard.full.rank();
  std::vector<int64_t> dims(shard.full.begin(), shard.full.end());
  std::vector<Box> out;
  if (rank == 0) return {Box{{}, {}, {}}};
  const int dim = shard.split() ? shard.dim : 0;
  for (const Shard::Run& r : shard.runs()) {
    Box b{std::vector<int64_t>(rank, 0), dims, std::vector<int64_t>(rank, 0)};
    b.full_start[dim] = r.full_start;
    b.local_start[dim] = r.local_start;
    b.count[dim] = r.count;
    out.push_back(std::move(b));
  }
  return out;
}

namespace {

// flat_boxes below dimension k: [begin, end) of the sub-array at index
// prefix `at` (dimensions < k fixed), begin < end.
void flat_boxes_from(const std::vector<int64_t>& dims, const std::vector<int64_t>& stride, size_t k,
                     std::vector<int64_t>& at, int64_t begin, int64_t end, std::vector<Box>& out) {
  const int64_t s = stride[k];
  const auto emit = [&](int64_t lo, int64_t hi) {  // indices [lo, hi) along k, everything below whole
    Box b{at, std::vector<int64_t>(dims.size(), 1), at};
    for (size_t d = k + 1; d < dims.size(); ++d) {
      b.local_start[d] = 0;
      b.count[d] = dims[d];
    }
    b.local_start[k] = lo;
    b.count[k] = hi - lo;
    b.full_start = b.local_start;
    out.push_back(std::move(b));
  };
  int64_t i0 = begin / s;
  const int64_t i1 = end / s;
  if (begin % s == 0 && end % s == 0) return emit(i0, i1);
  if (i0 == i1) {  // within one index along k
    at[k] = i0;
    flat_boxes_from(dims, stride, k + 1, at, begin - i0 * s, end - i0 * s, out);
    return;
  }
  if (begin % s != 0) {
    at[k] = i0;
    flat_boxes_from(dims, stride, k + 1, at, begin % s, s, out);
    ++i0;
  }
  if (i1 > i0) emit(i0, i1);
  if (end % s != 0) {
    at[k] = i1;
    flat_boxes_from(dims, stride, k + 1, at, 0, end % s, out);
  }
}

}  // namespace

std::vector<Box> flat_boxes(const std::vector<int64_t>& dims, int64_t begin, int64_t end) {
  std::vector<Box> out;
  if (begin >= end) return out;
  std::vector<int64_t> stride(dims.size(), 1), at(dims.size(), 0);
  for (size_t d = dims.size(); d-- > 1;) stride[d - 1] = stride[d] * dims[d];
  flat_boxes_from(dims, stride, 0, at, begin, end, out);
  return out;
}

PieceMap map_of(const Piece& p) {
  PieceMap m;
  if (!p.slice()) {
    m.shape.assign(p.local.shape().begin(), p.local.shape().end());
    m.boxes = boxes_of(p.shard);
    return m;
  }
  const Shape local = p.shard.local_shape();
  const std::vector<int64_t> dims(local.begin(), local.end());
  DTRAIN_CHECK(!dims.empty() && p.local.rank() == 1 && p.slice_begin + p.local.numel() <= local.numel(),
               "{}: a slice of {} elements from {} of a part of shape {}", p.key, p.local.numel(), p.slice_begin,
               local.str());
  // Rows along the first dimension longer than 1 (a shape (1, N) is stored
  // as the slice's N, not the whole row).
  size_t k = 0;
  while (k + 1 < dims.size() && dims[k] == 1) ++k;
  int64_t row = 1;
  for (size_t d = k + 1; d < dims.size(); ++d) row *= dims[d];
  const int64_t begin = p.slice_begin, end = begin + p.local.numel();
  const int64_t r0 = begin / row, r1 = (end + row - 1) / row;
  m.shape = dims;
  m.shape[k] = r1 - r0;
  m.offset = begin - r0 * row;
  const int dim = p.shard.split() ? p.shard.dim : 0;
  for (const Box& b : flat_boxes(dims, begin, end))
    for (const Shard::Run& r : p.shard.runs()) {  // local rows -> full rows along the split dimension
      const int64_t lo = std::max(b.local_start[dim], r.local_start);
      const int64_t hi = std::min(b.local_start[dim] + b.count[dim], r.local_start + r.count);
      if (lo >= hi) continue;
      Box o = b;
      o.local_start[dim] = lo;
      o.count[dim] = hi - lo;
      o.full_start[dim] = r.full_start + (lo - r.local_start);
      o.local_start[k] -= r0;
      m.boxes.push_back(std::move(o));
    }
  return m;
}

std::vector<int64_t> boxes_attr(const std::vector<Box>& boxes) {
  std::vector<int64_t> out;
  for (const Box& b : boxes) {
    out.insert(out.end(), b.full_start.begin(), b.full_start.end());
    out.insert(out.end(), b.local_start.begin(), b.local_start.end());
    out.insert(out.end(), b.count.begin(), b.count.end());
  }
  return out;
}

std::vector<Box> boxes_from_attr(const std::vector<int64_t>& flat, size_t rank) {
  std::vector<Box> out;
  if (rank == 0 || flat.size() % (3 * rank) != 0) return out;
  for (auto it = flat.begin(); it != flat.end(); it += static_cast<std::ptrdiff_t>(3 * rank)) {
    const auto r = static_cast<std::ptrdiff_t>(rank);
    out.push_back(Box{{it, it + r}, {it + 2 * r, it + 3 * r}, {it + r, it + 2 * r}});
  }
  return out;
}

std::string canonical(const CheckpointMeta& m) {
  return fmt::format(
      "format_version={}\nprogram_version={}\nmodel_type={}\noptimizer={}\nstep={}\n"
      "optimizer_steps={}\nsamples_seen={}\nitems_seen={}\nseed={}\ndp={}\ntp={}\npp={}\n"
      "world_size={}\nid={}\nwritten_at={}\nconfig={}",
      m.format_version, m.program_version, m.model_type, m.optimizer, m.step, m.optimizer_steps,
      m.samples_seen, m.items_seen, m.seed, m.layout.dp, m.layout.tp, m.layout.pp, m.layout.world(),
      m.id, m.written_at, m.config) +
         (m.run_id.empty() ? "" : "\nrun_id=" + m.run_id) +  // checkpoints without one keep their checksum
         // Only when sharded, so that checkpoints from before the field verify.
         (m.zero ? fmt::format("\nzero={}", m.zero) : std::string()) +
         (m.data.empty() ? "" : "\ndata=" + m.data);
}

void copy_box(const char* src, const std::vector<int64_t>& sshape,
              const std::vector<int64_t>& sstart, char* dst, const std::vector<int64_t>& dshape,
              const std::vector<int64_t>& dstart, const std::vector<int64_t>& count, size_t esize) {
  const int rank = static_cast<int>(count.size());
  if (rank == 0) {
    std::memcpy(dst, src, esize);
    return;
  }
  // Row-major strides in elements.
  std::vector<int64_t> ss(rank, 1), ds(rank, 1);
  for (int d = rank - 2; d >= 0; --d) {
    ss[d] = ss[d + 1] * sshape[d + 1];
    ds[d] = ds[d + 1] * dshape[d + 1];
  }
  // Merge the innermost dimensions that are copied whole on both sides into one run.
  int inner = rank - 1;
  int64_t run = count[inner];
  while (inner > 0 && count[inner] == sshape[inner] && count[inner] == dshape[inner] &&
         sstart[inner] == 0 && dstart[inner] == 0) {
    --inner;
    run *= count[inner];
  }
  std::vector<int64_t> idx(inner, 0);  // position in the outer dimensions [0, inner)
  while (true) {
    int64_t so = 0, doff = 0;
    for (int d = 0; d < inner; ++d) {
      so += (sstart[d] + idx[d]) * ss[d];
      doff += (dstart[d] + idx[d]) * ds[d];
    }
    so += sstart[inner] * ss[inner];
    doff += dstart[inner] * ds[inner];
    std::memcpy(dst + doff * static_cast<int64_t>(esize), src + so * static_cast<int64_t>(esize),
                static_cast<size_t>(run) * esize);
    int d = inner - 1;
    while (d >= 0 && ++idx[d] == count[d]) idx[d--] = 0;
    if (d < 0) break;
  }
}

}  // namespace dtrain::ckpt_format
