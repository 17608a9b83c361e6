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

std::vector<int64_t> runs_attr(const Shard& shard) {
  std::vector<int64_t> out;
  for (const Shard::Run& r : shard.runs()) out.insert(out.end(), {r.full_start, r.local_start, r.count});
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
