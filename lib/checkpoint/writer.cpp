// Writing a checkpoint, collectively: every writing rank stores the pieces it
// holds in its own rank file (no gather, no rank holds more than its share),
// then world rank 0 reads those files' piece descriptions back, checks that
// the pieces tile every tensor exactly once, writes the master file of
// virtual datasets over them, and publishes the directory atomically
// (store.h). Ranks agree on failure after each phase so that all of them
// throw together and nothing incomplete is ever published.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checksum.h"
#include "checkpoint/format.h"
#include "checkpoint/h5.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store.h"

namespace dtrain {

namespace fs = std::filesystem;
using namespace ckpt_format;

std::vector<Piece> collect_pieces(Model& model, Optimizer& opt, bool first_dp, bool first_tp) {
  const NamedTensors state = opt.state();
  for (const auto& [name, flat] : state)
    DTRAIN_CHECK(flat.numel() == model.params.values().numel(),
                 "optimizer state {} covers {} of the {} parameter elements (a ZeRO range: see range_pieces)", name,
                 flat.numel(), model.params.values().numel());
  return collect_pieces(model, state, first_dp, first_tp);
}

std::vector<Piece> collect_pieces(Model& model, const NamedTensors& optimizer_state, bool first_dp,
                                  bool first_tp) {
  std::vector<Piece> out;
  auto writes = [&](const Param& p) { return p.primary && first_dp && (first_tp || p.shard.split()); };
  for (const auto& p : model.params.all())
    out.push_back({"model/" + p->name, p->value, p->shard, writes(*p)});
  for (const auto& [state, flat] : optimizer_state)
    for (const auto& p : model.params.all())
      if (p->trainable)
        out.push_back({"optim/" + state + "/" + p->name,
                       flat.flat_range(p->offset, p->numel()).view(p->shape), p->shard, writes(*p)});
  return out;
}

namespace {

std::vector<int64_t> dims(const Shape& s) { return {s.begin(), s.end()}; }

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

// Every rank throws if any rank reported a problem (`err` non-empty).
void agree(Communicator& world, const std::string& err, int64_t step) {
  Tensor flag = Tensor::zeros(Shape{1}, DType::f32);
  flag.data<float>()[0] = err.empty() ? 0.0f : 1.0f;
  all_reduce(world, flag, ReduceOp::max);
  if (flag.data<float>()[0] > 0)
    throw RuntimeError(err.empty() ? fmt::format("checkpoint of step {}: another rank failed", step)
                                   : fmt::format("checkpoint of step {}: {}", step, err));
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void write_rank_file(const fs::path& path, const CheckpointMeta& meta, int world_rank,
                     const std::vector<const Piece*>& pieces, const store::FileOps& ops) {
  // Checksums (and the finiteness check) first, so nothing is written for a NaN.
  std::vector<uint32_t> crcs;
  for (const Piece* p : pieces) {
    DTRAIN_CHECK(p->local.device().is_cpu(), "{}: checkpoints read CPU tensors", p->key);
    const Digest d = digest(p->local.raw(), p->local.bytes(), p->local.dtype());
    if (!d.finite)
      throw RuntimeError(fmt::format("{} holds non-finite values; not writing a checkpoint", p->key));
    crcs.push_back(d.crc32);  // a slice's is taken again over the rows stored
  }
  const std::string name = path.filename().string();
  h5::Handle f = h5::create_file(path.string());
  ops.done("create " + name);
  std::vector<std::string> keys;
  for (const Piece* p : pieces) keys.push_back(p->key);
  h5::write_attr(f.get(), "format", std::string(kPartFormat));
  h5::write_attr(f.get(), "format_version", meta.format_version);
  h5::write_attr(f.get(), "checkpoint_id", meta.id);
  h5::write_attr(f.get(), "step", meta.step);
  h5::write_attr(f.get(), "world_rank", int64_t{world_rank});
  h5::write_attr(f.get(), "tensors", join(keys));
  h5::Handle lcpl = h5::intermediate_groups();
  std::vector<char> rows;  // a slice's rows
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = *pieces[i];
    DTRAIN_CHECK(p.shard.full.rank() >= 1, "{}: checkpoints store tensors of rank >= 1", p.key);
    const PieceMap m = map_of(p);
    const void* data = p.local.raw();
    size_t bytes = p.local.bytes();
    if (p.slice()) {
      int64_t n = 1;
      for (int64_t x : m.shape) n *= x;
      const size_t esize = dtype_size(p.local.dtype());
      bytes = static_cast<size_t>(n) * esize;
      rows.assign(bytes, 0);
      std::memcpy(rows.data() + static_cast<size_t>(m.offset) * esize, p.local.raw(), p.local.bytes());
      data = rows.data();
    }
    const uint32_t crc = p.slice() ? digest(data, bytes, DType::u8).crc32 : crcs[i];
    h5::Quiet q;
    h5::Handle sp = h5::space(m.shape);
    h5::Handle d(H5Dcreate2(f.get(), p.key.c_str(), h5::file_type(p.local.dtype()), sp.get(),
                            lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!d.valid() || H5Dwrite(d.get(), h5::memory_type(p.local.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
      throw RuntimeError(fmt::format("cannot write {} to '{}': {}", p.key, path.string(), h5::last_error()));
    h5::write_attr(d.get(), "full_shape", dims(p.shard.full));
    const std::vector<int64_t> boxes = boxes_attr(m.boxes);
    h5::write_attr(d.get(), "boxes", boxes,
                   {static_cast<int64_t>(m.boxes.size()), static_cast<int64_t>(3 * m.shape.size())});
    h5::write_attr(d.get(), "crc32", crc);
    ops.done(fmt::format("write {} {}", name, p.key));
  }
  if (!f.close()) throw RuntimeError(fmt::format("cannot close '{}': {}", path.string(), h5::last_error()));
  ops.done("close " + name);
  store::sync_path(path);
  ops.done("sync " + name);
}

// A stored piece, as the master file's builder reads it back from a rank file.
struct Stored {
  std::string file;
  std::vector<int64_t> local_shape, full_shape;
  std::vector<Box> boxes;  // full_start, count in the full tensor; local_start in the stored array
  DType dtype = DType::f32;
};

std::map<std::string, std::vector<Stored>> read_back(const fs::path& tmp) {
  std::map<std::string, std::vector<Stored>> out;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(tmp))
    if (e.path().filename().string().rfind("rank_", 0) == 0) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  h5::Quiet q;
  for (const fs::path& path : files) {
    const std::string name = path.filename().string();
    std::string why, keys;
    h5::Handle f = h5::open_file(path.string(), why);
    if (!f.valid() || !h5::read_attr(f.get(), "tensors", keys))
      throw RuntimeError(fmt::format("cannot read back '{}': {}", path.string(), why));
    size_t pos = 0;
    for (size_t nl; (nl = keys.find('\n', pos)) != std::string::npos; pos = nl + 1) {
      const std::string key = keys.substr(pos, nl - pos);
      h5::Handle d(H5Dopen2(f.get(), key.c_str(), H5P_DEFAULT));
      Stored s;
      s.file = name;
      std::vector<int64_t> boxes;
      h5::Handle t(d.valid() ? H5Dget_type(d.get()) : H5I_INVALID_HID);
      if (!d.valid() || !h5::dtype_of_type(t.get(), s.dtype) ||
          !h5::read_attr(d.get(), "full_shape", s.full_shape) || !h5::read_attr(d.get(), "boxes", boxes))
        throw RuntimeError(fmt::format("cannot read back {} from '{}'", key, path.string()));
      s.local_shape = h5::shape_of(d.get());
      s.boxes = boxes_from_attr(boxes, s.full_shape.size());
      out[key].push_back(std::move(s));
    }
  }
  return out;
}

// The pieces of `key` must agree on the full tensor and tile it exactly once:
// every box inside the tensor and its piece, no two overlapping (a sweep
// along dimension 0), and their volumes summing to the tensor's.
void check_tiling(const std::string& key, const std::vector<Stored>& parts) {
  const Stored& a = parts.front();
  const size_t rank = a.full_shape.size();
  struct At {
    const Box* box;
    const Stored* part;
  };
  std::vector<At> all;
  int64_t full = 1, covered = 0;
  for (int64_t x : a.full_shape) full *= x;
  for (const Stored& s : parts) {
    DTRAIN_CHECK(s.full_shape == a.full_shape && s.dtype == a.dtype && s.local_shape.size() == rank &&
                     !s.boxes.empty(),
                 "{}: {} and {} store it with different shapes or dtypes", key, a.file, s.file);
    for (const Box& b : s.boxes) {
      for (size_t d = 0; d < rank; ++d)
        DTRAIN_CHECK(b.count[d] > 0 && b.full_start[d] >= 0 && b.full_start[d] + b.count[d] <= a.full_shape[d] &&
                         b.local_start[d] >= 0 && b.local_start[d] + b.count[d] <= s.local_shape[d],
                     "{}: {} maps a box outside the tensor or its piece", key, s.file);
      covered += b.volume();
      all.push_back({&b, &s});
    }
  }
  std::sort(all.begin(), all.end(), [](const At& x, const At& y) { return x.box->full_start < y.box->full_start; });
  for (size_t i = 0; i < all.size(); ++i) {
    const Box& x = *all[i].box;
    for (size_t j = i + 1; j < all.size() && all[j].box->full_start[0] < x.full_start[0] + x.count[0]; ++j) {
      const Box& y = *all[j].box;
      bool overlap = true;
      for (size_t d = 0; d < rank && overlap; ++d)
        overlap = std::max(x.full_start[d], y.full_start[d]) <
                  std::min(x.full_start[d] + x.count[d], y.full_start[d] + y.count[d]);
      DTRAIN_CHECK(!overlap, "{}: the pieces of {} and {} overlap at ({})", key, all[i].part->file,
                   all[j].part->file, fmt::join(y.full_start, ", "));
    }
  }
  DTRAIN_CHECK(covered == full, "{}: the ranks' pieces cover {} of its {} elements", key, covered, full);
}

void write_master(const fs::path& path, const CheckpointMeta& meta,
                  const std::map<std::string, std::vector<Stored>>& tensors, const store::FileOps& ops) {
  h5::Handle f = h5::create_file(path.string());
  ops.done("create " + path.filename().string());
  const hid_t root = f.get();
  h5::write_attr(root, "format", std::string(kMasterFormat));
  h5::write_attr(root, "format_version", meta.format_version);
  h5::write_attr(root, "program_version", meta.program_version);
  h5::write_attr(root, "model_type", meta.model_type);
  h5::write_attr(root, "optimizer", meta.optimizer);
  h5::write_attr(root, "step", meta.step);
  h5::write_attr(root, "optimizer_steps", meta.optimizer_steps);
  h5::write_attr(root, "samples_seen", meta.samples_seen);
  h5::write_attr(root, "items_seen", meta.items_seen);
  h5::write_attr(root, "seed", meta.seed);
  h5::write_attr(root, "dp", int64_t{meta.layout.dp});
  h5::write_attr(root, "tp", int64_t{meta.layout.tp});
  h5::write_attr(root, "pp", int64_t{meta.layout.pp});
  h5::write_attr(root, "world_size", int64_t{meta.layout.world()});
  if (meta.zero) h5::write_attr(root, "zero", meta.zero);
  h5::write_attr(root, "checkpoint_id", meta.id);
  if (!meta.run_id.empty()) h5::write_attr(root, "run_id", meta.run_id);
  if (!meta.data.empty()) h5::write_attr(root, "data", meta.data);
  h5::write_attr(root, "written_at", meta.written_at);
  h5::write_attr(root, "config", meta.config);
  h5::write_attr(root, "meta_crc32", crc32_of(canonical(meta).data(), canonical(meta).size()));
  std::vector<std::string> keys, files;
  for (const auto& [key, parts] : tensors) {
    keys.push_back(key);
    for (const Stored& s : parts)
      if (std::find(files.begin(), files.end(), s.file) == files.end()) files.push_back(s.file);
  }
  std::sort(files.begin(), files.end());
  h5::write_attr(root, "tensors", join(keys));
  h5::write_attr(root, "files", join(files));

  h5::Handle lcpl = h5::intermediate_groups();
  h5::Quiet q;
  for (const auto& [key, parts] : tensors) {
    check_tiling(key, parts);
    const Stored& a = parts.front();
    h5::Handle vspace = h5::space(a.full_shape);
    h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    // A piece HDF5 cannot find reads as NaN in h5py, not as plausible zeros.
    if (a.dtype == DType::f32 || a.dtype == DType::f64) {
      const double nan = std::nan("");
      H5Pset_fill_value(dcpl.get(), H5T_NATIVE_DOUBLE, &nan);
    }
    for (const Stored& s : parts) {
      h5::Handle sspace = h5::space(s.local_shape);
      for (const Box& b : s.boxes) {
        const std::vector<hsize_t> vstart(b.full_start.begin(), b.full_start.end()),
            sstart(b.local_start.begin(), b.local_start.end()), count(b.count.begin(), b.count.end());
        if (H5Sselect_hyperslab(vspace.get(), H5S_SELECT_SET, vstart.data(), nullptr, count.data(), nullptr) < 0 ||
            H5Sselect_hyperslab(sspace.get(), H5S_SELECT_SET, sstart.data(), nullptr, count.data(), nullptr) < 0 ||
            H5Pset_virtual(dcpl.get(), vspace.get(), s.file.c_str(), key.c_str(), sspace.get()) < 0)
          throw RuntimeError(fmt::format("cannot map {} of {} into '{}': {}", key, s.file,
                                         path.string(), h5::last_error()));
      }
    }
    H5Sselect_all(vspace.get());
    h5::Handle d(H5Dcreate2(root, key.c_str(), h5::file_type(a.dtype), vspace.get(), lcpl.get(),
                            dcpl.get(), H5P_DEFAULT));
    if (!d.valid())
      throw RuntimeError(fmt::format("cannot write {} to '{}': {}", key, path.string(), h5::last_error()));
  }
  ops.done("write " + path.filename().string());
  if (!f.close()) throw RuntimeError(fmt::format("cannot close '{}': {}", path.string(), h5::last_error()));
  store::sync_path(path);
  ops.done("sync " + path.filename().string());
}

// The manifest of the complete temporary directory: every file's size and
// CRC-32; signed with `key` (and every file's BLAKE2b hash listed) if given.
void write_manifest(const fs::path& tmp, const CheckpointMeta& meta, const store::FileOps& ops,
                    const ckpt_sign::SecretKey* key) {
  ckpt_manifest::Manifest m;
  m.step = meta.step;
  m.id = meta.id;
  m.run = meta.run_id;
  for (const auto& e : fs::directory_iterator(tmp)) {
    const std::string name = e.path().filename().string();
    if (name == ckpt_manifest::kFile) continue;
    try {
      m.files[name] = ckpt_manifest::sum_file(e.path(), key != nullptr);
    } catch (const InputError& err) {
      throw RuntimeError(err.what());
    }
  }
  store::write_file_atomic(tmp / ckpt_manifest::kFile, ckpt_manifest::to_text(m, key), ops);
}

std::string new_id(Communicator& world) {
  Tensor id = Tensor::zeros(Shape{2}, DType::i32);
  if (world.rank() == 0) {
    std::random_device rd;
    id.data<int32_t>()[0] = static_cast<int32_t>(rd());
    id.data<int32_t>()[1] = static_cast<int32_t>(rd() ^ static_cast<uint32_t>(
        std::chrono::system_clock::now().time_since_epoch().count()));
  }
  world.broadcast(id, 0)->wait();
  return fmt::format("{:08x}{:08x}", static_cast<uint32_t>(id.data<int32_t>()[0]),
                     static_cast<uint32_t>(id.data<int32_t>()[1]));
}

}  // namespace

std::string new_run_id(Communicator& world) { return new_id(world); }

SaveResult save_checkpoint(const std::string& root_dir, CheckpointMeta meta,
                           const std::vector<Piece>& pieces, Communicator& world,
                           const SaveOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  const store::FileOps ops{opts.on_file_op};
  const fs::path root(root_dir);
  const fs::path final_dir = root / store::step_dir_name(meta.step);
  const fs::path tmp = final_dir.string() + ".tmp";
  const bool lead = world.rank() == 0;
  meta.id = new_id(world);
  meta.written_at = utc_now();
  meta.format_version = kCheckpointFormatVersion;

  std::string err;
  if (lead) {
    try {
      std::error_code ec;
      if (!fs::exists(root, ec)) {
        store::create_dir(root, opts.dir_mode);
        store::sync_path(fs::absolute(root).parent_path());  // the new directory's own entry
      }
      store::remove_leftovers(root, ops);
      if (!fs::create_directory(tmp, ec) || ec)
        throw RuntimeError(fmt::format("cannot create '{}': {}", tmp.string(), ec.message()));
      ops.done("mkdir " + tmp.filename().string());
    } catch (const Error& e) {
      err = e.what();
    }
  }
  agree(world, err, meta.step);

  std::vector<const Piece*> mine;
  for (const Piece& p : pieces)
    if (p.write) mine.push_back(&p);
  if (!mine.empty()) {
    try {
      const int wr = world.world_rank(world.rank());
      write_rank_file(tmp / store::rank_file_name(wr), meta, wr, mine, ops);
    } catch (const Error& e) {
      err = e.what();
    }
  }
  try {
    agree(world, err, meta.step);
  } catch (const Error&) {
    if (lead) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    }
    throw;
  }

  SaveResult res;
  res.dir = final_dir.string();
  if (lead) {
    try {
      write_master(tmp / store::kMasterFile, meta, read_back(tmp), ops);
      write_manifest(tmp, meta, ops, opts.sign_key.get());
      store::sync_path(tmp);
      ops.done("sync " + tmp.filename().string());
      store::publish(tmp, final_dir, ops, meta.run_id);
      res.pruned = store::prune(root, opts.keep, ops);
      res.bytes = store::dir_bytes(final_dir);
    } catch (const Error& e) {
      err = e.what();
    }
  }
  agree(world, err, meta.step);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}


// --- Asynchronous saves (checkpoint.async): the phases of save_checkpoint
// split so that only the first talks to the other ranks. The ranks' threads
// then say they are done through marker files in step_N.tmp instead of a
// collective, which the training thread may be using meanwhile.

namespace {

constexpr const char* kDoneMarker = "done_";  // done_<world rank>: empty, or why the rank failed

fs::path marker_path(const fs::path& tmp, int world_rank) {
  return tmp / fmt::format("{}{:05d}", kDoneMarker, world_rank);
}

}  // namespace

PendingSave begin_save(const std::string& root_dir, CheckpointMeta meta, Communicator& world,
                       const SaveOptions& opts) {
  const store::FileOps ops{opts.on_file_op};
  PendingSave s;
  const fs::path root(root_dir);
  const fs::path final_dir = root / store::step_dir_name(meta.step);
  s.root = root.string();
  s.final_dir = final_dir.string();
  s.tmp = final_dir.string() + ".tmp";
  s.world_size = world.size();
  s.world_rank = world.world_rank(world.rank());
  s.lead = world.rank() == 0;
  s.opts = opts;
  meta.id = new_id(world);
  meta.written_at = utc_now();
  meta.format_version = kCheckpointFormatVersion;
  s.meta = std::move(meta);
  std::string err;
  if (s.lead) {
    try {
      std::error_code ec;
      if (!fs::exists(root, ec)) {
        store::create_dir(root, opts.dir_mode);
        store::sync_path(fs::absolute(root).parent_path());
      }
      store::remove_leftovers(root, ops);
      if (!fs::create_directory(s.tmp, ec) || ec)
        throw RuntimeError(fmt::format("cannot create '{}': {}", s.tmp, ec.message()));
      ops.done("mkdir " + fs::path(s.tmp).filename().string());
    } catch (const Error& e) {
      err = e.what();
    }
  }
  agree(world, err, s.meta.step);
  return s;
}

std::string write_pending_part(const PendingSave& s, const std::vector<Piece>& pieces) {
  const store::FileOps ops{s.opts.on_file_op};
  std::string err;
  std::vector<const Piece*> mine;
  for (const Piece& p : pieces)
    if (p.write) mine.push_back(&p);
  try {
    if (!mine.empty())
      write_rank_file(fs::path(s.tmp) / store::rank_file_name(s.world_rank), s.meta, s.world_rank, mine, ops);
  } catch (const std::exception& e) {  // std::bad_alloc too: the marker below must still say so
    err = e.what();
  }
  try {  // the marker says "done" even for a failure: the lead must not wait for the timeout
    const fs::path m = marker_path(s.tmp, s.world_rank);
    std::ofstream f(m.string() + ".part");
    f << err;
    f.close();
    if (!f) throw RuntimeError(fmt::format("cannot write '{}'", m.string()));
    fs::rename(m.string() + ".part", m);
  } catch (const std::exception& e) {
    if (err.empty()) err = e.what();
  }
  return err;
}

SaveResult publish_pending(const PendingSave& s, double timeout_seconds) {
  DTRAIN_CHECK(s.lead, "publish_pending on world rank {}, not the lead", s.world_rank);
  const auto t0 = std::chrono::steady_clock::now();
  const store::FileOps ops{s.opts.on_file_op};
  const fs::path tmp(s.tmp);
  try {
    std::vector<std::string> failures;
    for (int r = 0; r < s.world_size; ++r) {
      const fs::path m = marker_path(tmp, r);
      while (!fs::exists(m)) {
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_seconds)
          throw RuntimeError(fmt::format("world rank {} did not finish its part of {} within {} s", r, s.tmp,
                                         timeout_seconds));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      std::ifstream f(m);
      std::string why((std::istreambuf_iterator<char>(f)), {});
      if (!why.empty()) failures.push_back(fmt::format("world rank {}: {}", r, why));
    }
    if (!failures.empty()) throw RuntimeError(fmt::format("{}", fmt::join(failures, "; ")));
    for (int r = 0; r < s.world_size; ++r) fs::remove(marker_path(tmp, r));
    SaveResult res;
    res.dir = s.final_dir;
    write_master(tmp / store::kMasterFile, s.meta, read_back(tmp), ops);
    write_manifest(tmp, s.meta, ops, s.opts.sign_key.get());  // as the synchronous save
    store::sync_path(tmp);
    ops.done("sync " + tmp.filename().string());
    store::publish(tmp, fs::path(s.final_dir), ops, s.meta.run_id);
    res.pruned = store::prune(fs::path(s.root), s.opts.keep, ops);
    res.bytes = store::dir_bytes(fs::path(s.final_dir));
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
  } catch (const Error&) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // nothing incomplete stays; the previous checkpoint is still `latest`
    throw;
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw RuntimeError(fmt::format("checkpoint {}: {}", s.tmp, e.what()));
  }
}

}  // namespace dtrain
