// Reading a checkpoint into whatever layout the reader has. The master file's
// virtual-dataset mappings say which boxes of each full tensor live in which
// stored piece; a reader intersects them with the boxes it holds (a shard's
// rows, Shard::runs, or a ZeRO range's: format.h map_of), reads each
// overlapping piece whole, checks the piece's CRC-32, and copies the overlap. A piece that maps one to one onto what the reader holds (same
// layout) is read straight into the parameter memory. Every problem is a
// CheckpointError naming the checkpoint, the file and the tensor.
#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checksum.h"
#include "checkpoint/format.h"
#include "checkpoint/h5.h"
#include "checkpoint/h5_probe.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store.h"

namespace dtrain {

namespace fs = std::filesystem;
using namespace ckpt_format;

namespace {

// One mapping of a virtual dataset: a box of the full tensor from a box of a
// stored piece (same counts).
struct Mapping {
  std::vector<int64_t> vstart, count, sstart;
};

// A stored piece and the mappings that read from it.
struct Source {
  std::string file, dset;
  std::vector<Mapping> maps;
};

struct VTensor {
  std::string key;
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  std::vector<Source> sources;
};

std::string split_name(hid_t dcpl, size_t i, bool file) {
  const ssize_t n = file ? H5Pget_virtual_filename(dcpl, i, nullptr, 0)
                         : H5Pget_virtual_dsetname(dcpl, i, nullptr, 0);
  if (n < 0) return "";
  std::string s(static_cast<size_t>(n) + 1, '\0');
  if (file) H5Pget_virtual_filename(dcpl, i, s.data(), s.size());
  else H5Pget_virtual_dsetname(dcpl, i, s.data(), s.size());
  s.resize(static_cast<size_t>(n));
  return s;
}

bool bounds(hid_t space, int rank, std::vector<int64_t>& start, std::vector<int64_t>& count) {
  std::vector<hsize_t> lo(rank), hi(rank);
  if (H5Sget_select_bounds(space, lo.data(), hi.data()) < 0) return false;
  start.assign(lo.begin(), lo.end());
  count.resize(rank);
  for (int d = 0; d < rank; ++d) count[d] = static_cast<int64_t>(hi[d] - lo[d] + 1);
  // A box must be a single regular block: its point count is the box volume.
  int64_t vol = 1;
  for (int64_t c : count) vol *= c;
  return H5Sget_select_npoints(space) == vol;
}

// Every extent non-negative and their product representable (no overflow).
bool volume_ok(const std::vector<int64_t>& shape) {
  int64_t v = 1;
  for (int64_t x : shape)
    if (x < 0 || (x > 0 && v > INT64_MAX / x / 8)) return false;
    else v *= x;
  return true;
}

int64_t volume(const std::vector<int64_t>& shape) {
  int64_t v = 1;
  for (int64_t x : shape) v *= x;
  return v;
}

// The box (start, count) lies within `shape`.
bool inside(const std::vector<int64_t>& start, const std::vector<int64_t>& count,
            const std::vector<int64_t>& shape) {
  if (start.size() != shape.size() || count.size() != shape.size()) return false;
  for (size_t d = 0; d < shape.size(); ++d)
    if (start[d] < 0 || count[d] < 0 || start[d] > shape[d] || count[d] > shape[d] - start[d]) return false;
  return true;
}

class Reader {
 public:
  Reader(const std::string& dir, VerifyKey key) : dir_(dir), signed_(key != nullptr) {
    h5::Quiet q;
    const fs::path path = fs::path(dir) / store::kMasterFile;
    std::error_code ec;
    if (key) {  // the signature before anything else is read: unsigned bytes never reach HDF5's parser
      manifest_ = ckpt_manifest::read(dir);
      if (!manifest_)
        throw CheckpointSignatureError(dir, ckpt_manifest::kFile, "",
                                       fmt::format("missing, so the checkpoint is not signed, and a verify key is "
                                                   "configured ('{}', key {}): refused",
                                                   key->path, key->id()));
      ckpt_manifest::check_signature(dir, *manifest_, *key);
    }
    if (!fs::exists(path, ec)) fail(store::kMasterFile, "", "missing");
    if (!fs::is_regular_file(path, ec)) fail(store::kMasterFile, "", "not a regular file");
    if (!key) manifest_ = ckpt_manifest::read(dir);
    if (manifest_) ckpt_manifest::verify(dir, *manifest_, store::kMasterFile, signed_);
    else probe_unvouched();
    std::string why;
    master_ = h5::open_file(path.string(), why);
    if (!master_.valid()) fail(store::kMasterFile, "", "cannot open: " + why);
    read_meta();
    if (!manifest_ && meta_.format_version >= 2)
      fail(ckpt_manifest::kFile, "", fmt::format("missing (format {} checkpoints have one)", meta_.format_version));
    if (manifest_ && (manifest_->id != meta_.id || manifest_->step != meta_.step || manifest_->run != meta_.run_id))
      fail(ckpt_manifest::kFile, "",
           fmt::format("belongs to another checkpoint (step {}, id '{}', run '{}'; {} says step {}, id '{}', run '{}')",
                       manifest_->step, manifest_->id, manifest_->run, store::kMasterFile, meta_.step, meta_.id,
                       meta_.run_id));
    const auto named = store::parse_step_dir_name(fs::path(dir).lexically_normal().filename().string());
    if (named && *named != meta_.step)
      fail(store::kMasterFile, "",
           fmt::format("the directory's name says step {} but the checkpoint holds step {}", *named, meta_.step));
  }

  const CheckpointMeta& meta() const { return meta_; }
  const std::vector<std::string>& keys() const { return keys_; }

  [[noreturn]] void fail(const std::string& file, const std::string& tensor, const std::string& what) const {
    throw CheckpointError(dir_, file, tensor, what);
  }

  VTensor tensor(const std::string& key) {
    h5::Quiet q;
    VTensor t;
    t.key = key;
    if (H5Lexists(master_.get(), key.c_str(), H5P_DEFAULT) <= 0)
      fail(store::kMasterFile, key, "not in the checkpoint");
    if (std::find(keys_.begin(), keys_.end(), key) == keys_.end())  // the list was edited
      fail(store::kMasterFile, key, "stored, but not in the master file's list of tensors");
    h5::Handle d(H5Dopen2(master_.get(), key.c_str(), H5P_DEFAULT));
    if (!d.valid()) fail(store::kMasterFile, key, "cannot open: " + h5::last_error());
    h5::Handle type(H5Dget_type(d.get()));
    h5::Handle dcpl(H5Dget_create_plist(d.get()));
    if (!dcpl.valid() || !h5::dtype_of_type(type.get(), t.dtype))
      fail(store::kMasterFile, key, "has no readable type or layout");
    t.shape = h5::shape_of(d.get());
    if (t.shape.empty() || !volume_ok(t.shape))
      fail(store::kMasterFile, key, fmt::format("has an unusable shape ({})", fmt::join(t.shape, ", ")));
    size_t n = 0;
    if (H5Pget_layout(dcpl.get()) != H5D_VIRTUAL || H5Pget_virtual_count(dcpl.get(), &n) < 0)
      fail(store::kMasterFile, key, "not a virtual dataset over rank files");
    const int rank = static_cast<int>(t.shape.size());
    for (size_t i = 0; i < n; ++i) {
      const std::string file = split_name(dcpl.get(), i, true), dset = split_name(dcpl.get(), i, false);
      h5::Handle vs(H5Pget_virtual_vspace(dcpl.get(), i)), ss(H5Pget_virtual_srcspace(dcpl.get(), i));
      Mapping m;
      std::vector<int64_t> scount;
      if (file.empty() || file.find('/') != std::string::npos || dset.empty() || !vs.valid() ||
          !ss.valid() || H5Sget_simple_extent_ndims(ss.get()) != rank ||
          !bounds(vs.get(), rank, m.vstart, m.count) || !bounds(ss.get(), rank, m.sstart, scount) ||
          scount != m.count || !inside(m.vstart, m.count, t.shape))
        fail(store::kMasterFile, key, fmt::format("mapping {} is damaged", i));
      auto it = std::find_if(t.sources.begin(), t.sources.end(),
                             [&](const Source& s) { return s.file == file && s.dset == dset; });
      if (it == t.sources.end()) it = t.sources.insert(t.sources.end(), Source{file, dset, {}});
      it->maps.push_back(std::move(m));
    }
    return t;
  }

  // Reads the stored piece whole, straight into `into` if given and the
  // piece has shape `into_shape` (then sets in_place), else into `buf`
  // (resized); checks its CRC. Returns the piece's shape.
  std::vector<int64_t> read_source(const VTensor& t, const Source& s, std::vector<char>& buf,
                                   void* into, const std::vector<int64_t>& into_shape, bool& in_place) {
    h5::Quiet q;
    hid_t f = file(s.file, t.key);
    h5::Handle d(H5Dopen2(f, s.dset.c_str(), H5P_DEFAULT));
    if (!d.valid()) fail(s.file, t.key, "cannot open: " + h5::last_error());
    h5::Handle type(H5Dget_type(d.get()));
    DType dt = DType::f32;
    if (!h5::dtype_of_type(type.get(), dt) || dt != t.dtype)
      fail(s.file, t.key, "stored with another element type than the master file says");
    const std::vector<int64_t> shape = h5::shape_of(d.get());
    // The piece's extent must hold every box the mappings read from it, and be
    // no bigger than the full tensor: checked before any byte is read.
    if (shape.size() != t.shape.size() || !volume_ok(shape))
      fail(s.file, t.key, fmt::format("stored as ({}) but the master file maps a piece of rank {} of ({})",
                                      fmt::join(shape, ", "), t.shape.size(), fmt::join(t.shape, ", ")));
    for (const Mapping& m : s.maps)
      if (!inside(m.sstart, m.count, shape))
        fail(s.file, t.key, fmt::format("stored as ({}), too small for the rows the master file maps from it "
                                        "(from ({}) count ({}))",
                                        fmt::join(shape, ", "), fmt::join(m.sstart, ", "), fmt::join(m.count, ", ")));
    const int64_t n = volume(shape);
    if (n > volume(t.shape))
      fail(s.file, t.key, fmt::format("stored as ({}), bigger than the whole tensor ({})", fmt::join(shape, ", "),
                                      fmt::join(t.shape, ", ")));
    const size_t bytes = static_cast<size_t>(n) * dtype_size(dt);
    uint32_t want = 0;
    if (!h5::read_attr(d.get(), "crc32", want)) fail(s.file, t.key, "has no crc32 attribute");
    in_place = into && shape == into_shape;
    void* dst = into;
    if (!in_place) {
      buf.resize(bytes);
      dst = buf.data();
    }
    if (H5Dread(d.get(), h5::memory_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
      fail(s.file, t.key, "cannot read: " + h5::last_error());
    const uint32_t got = digest(dst, bytes, DType::u8).crc32;
    if (got != want)
      fail(s.file, t.key, fmt::format("checksum mismatch (stored crc32 {:08x}, data has {:08x})", want, got));
    bytes_read_ += static_cast<int64_t>(bytes);
    return shape;
  }

  int64_t bytes_read() const { return bytes_read_; }

  // Every tensor a rank file stores must be in the master file's list (an
  // emptied or shortened list would otherwise verify as nothing to check).
  void check_listed() {
    std::string files;
    if (!h5::read_attr(master_.get(), "files", files)) fail(store::kMasterFile, "", "missing attribute 'files'");
    std::vector<std::string> names = lines(files);
    if (names.empty() || keys_.empty()) fail(store::kMasterFile, "", "lists no files or no tensors");
    for (const std::string& name : names) {
      if (name.find('/') != std::string::npos) fail(store::kMasterFile, "", "damaged attribute 'files'");
      std::string stored;
      hid_t f = file(name, "");
      if (!h5::read_attr(f, "tensors", stored)) fail(name, "", "missing attribute 'tensors'");
      for (const std::string& key : lines(stored))
        if (std::find(keys_.begin(), keys_.end(), key) == keys_.end())
          fail(name, key, fmt::format("stored, but not in {}'s list of tensors", store::kMasterFile));
    }
  }

 private:
  hid_t file(const std::string& name, const std::string& key) {
    auto it = files_.find(name);
    if (it != files_.end()) return it->second.get();
    const fs::path path = fs::path(dir_) / name;
    std::error_code ec;
    // The file as a whole: not the tensor that happened to be read from it first.
    if (!fs::exists(path, ec)) fail(name, "", "the file is missing");
    if (!fs::is_regular_file(path, ec)) fail(name, "", "not a regular file");
    if (manifest_) {
      try {
        ckpt_manifest::verify(dir_, *manifest_, name, signed_);
      } catch (const CheckpointSignatureError& e) {
        throw CheckpointSignatureError(dir_, name, key, e.problem());
      } catch (const CheckpointError& e) {
        // The whole file's size and checksum, checked on its first use: not
        // the tensor that happened to be read first, but (when its bytes
        // changed and its size did not) the tensors damaged.
        const auto listed = manifest_->files.find(name);
        const bool changed = listed != manifest_->files.end() &&
                             static_cast<int64_t>(fs::file_size(path, ec)) == listed->second.bytes && !ec;
        fail(name, "", e.problem() + (changed ? damaged_tensors(path.string()) : ""));
      }
    }
    std::string why;
    h5::Handle f = h5::open_file(path.string(), why);
    if (!f.valid()) fail(name, key, "cannot open: " + why);
    std::string id;
    if (!h5::read_attr(f.get(), "checkpoint_id", id) || id != meta_.id)
      fail(name, key, fmt::format("belongs to another checkpoint (id '{}', this one is '{}')", id, meta_.id));
    return files_.emplace(name, std::move(f)).first->second.get();
  }

  // No manifest vouches for these bytes (a format-1 checkpoint; a format-2
  // one without its manifest is refused below, after its format is read):
  // HDF5 parses every file of the directory first in a child process, which
  // its crash on a damaged file ends instead of this one (h5_probe.h).
  void probe_unvouched() const {
    std::vector<std::string> paths;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec))
      if (e.path().extension() == ".h5" && e.is_regular_file(ec)) paths.push_back(e.path().string());
    std::sort(paths.begin(), paths.end());
    const h5::ProbeResult r = h5::probe_in_child(paths, 120);
    if (!r.what.empty())
      fail(r.file.empty() ? std::string(store::kMasterFile) : fs::path(r.file).filename().string(), "",
           "damaged: " + r.what + "; no manifest to check it against (format 1)");
  }

  // Where in a file whose checksum failed the damage is: the tensors whose
  // own CRC-32 fails, or none (then the HDF5 structure around them).
  static std::string damaged_tensors(const std::string& path) {
    h5::Quiet q;
    std::string why, stored;
    h5::Handle f = h5::open_file(path, why);
    if (!f.valid()) return fmt::format("; HDF5 cannot open it ({})", why);
    if (!h5::read_attr(f.get(), "tensors", stored)) return "; its list of tensors is unreadable";
    std::vector<std::string> bad;
    std::vector<char> buf;
    for (const std::string& key : lines(stored)) {
      h5::Handle d(H5Dopen2(f.get(), key.c_str(), H5P_DEFAULT));
      h5::Handle type(d.valid() ? H5Dget_type(d.get()) : H5I_INVALID_HID);
      DType dt = DType::f32;
      uint32_t want = 0;
      bool ok = d.valid() && type.valid() && h5::dtype_of_type(type.get(), dt) && h5::read_attr(d.get(), "crc32", want);
      if (ok) {
        const std::vector<int64_t> shape = h5::shape_of(d.get());
        ok = volume_ok(shape);
        if (ok) {
          buf.resize(static_cast<size_t>(volume(shape)) * dtype_size(dt));
          ok = H5Dread(d.get(), h5::memory_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0 &&
               digest(buf.data(), buf.size(), DType::u8).crc32 == want;
        }
      }
      if (!ok) bad.push_back(key);
    }
    if (bad.empty()) return "; every tensor's own checksum matches: the damage is in the HDF5 structure around them";
    const size_t shown = std::min<size_t>(bad.size(), 3);
    return fmt::format(" in tensor{} {}{}", bad.size() > 1 ? "s" : "",
                       fmt::join(bad.begin(), bad.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                       bad.size() > shown ? fmt::format(" and {} more", bad.size() - shown) : "");
  }

  void read_meta() {
    const hid_t r = master_.get();
    CheckpointMeta& m = meta_;
    std::string format, tensors, files;
    auto need = [&](bool ok, const char* what) {
      if (!ok) fail(store::kMasterFile, "", fmt::format("missing or damaged attribute '{}'", what));
    };
    need(h5::read_attr(r, "format", format), "format");
    if (format != kMasterFormat) fail(store::kMasterFile, "", fmt::format("not a dtrain checkpoint (format '{}')", format));
    need(h5::read_attr(r, "format_version", m.format_version), "format_version");
    if (m.format_version > kCheckpointFormatVersion)
      fail(store::kMasterFile, "", fmt::format("written in format {} by dtrain {}; this dtrain reads format {}",
                                               m.format_version, m.program_version, kCheckpointFormatVersion));
    need(h5::read_attr(r, "program_version", m.program_version), "program_version");
    need(h5::read_attr(r, "model_type", m.model_type), "model_type");
    need(h5::read_attr(r, "optimizer", m.optimizer), "optimizer");
    need(h5::read_attr(r, "step", m.step), "step");
    need(h5::read_attr(r, "optimizer_steps", m.optimizer_steps), "optimizer_steps");
    need(h5::read_attr(r, "samples_seen", m.samples_seen), "samples_seen");
    need(h5::read_attr(r, "items_seen", m.items_seen), "items_seen");
    need(h5::read_attr(r, "seed", m.seed), "seed");
    int64_t dp = 0, tp = 0, pp = 0, world = 0;
    need(h5::read_attr(r, "dp", dp), "dp");
    need(h5::read_attr(r, "tp", tp), "tp");
    need(h5::read_attr(r, "pp", pp), "pp");
    need(h5::read_attr(r, "world_size", world), "world_size");
    m.layout = Layout{static_cast<int>(dp), static_cast<int>(tp), static_cast<int>(pp)};
    if (dp < 1 || tp < 1 || pp < 1 || m.layout.world() != world)
      fail(store::kMasterFile, "", fmt::format("inconsistent layout dp={} tp={} pp={} world_size={}", dp, tp, pp, world));
    if (!h5::read_attr(r, "zero", m.zero)) m.zero = 0;  // absent: unsharded, or written before ZeRO-2
    need(h5::read_attr(r, "checkpoint_id", m.id), "checkpoint_id");
    if (H5Aexists(r, "run_id") > 0) need(h5::read_attr(r, "run_id", m.run_id), "run_id");  // absent before run ids
    if (H5Aexists(r, "data") > 0) need(h5::read_attr(r, "data", m.data), "data");  // absent before data records
    need(h5::read_attr(r, "written_at", m.written_at), "written_at");
    need(h5::read_attr(r, "config", m.config), "config");
    need(h5::read_attr(r, "tensors", tensors), "tensors");
    uint32_t crc = 0;
    need(h5::read_attr(r, "meta_crc32", crc), "meta_crc32");
    const std::string c = canonical(m);
    if (crc32_of(c.data(), c.size()) != crc) fail(store::kMasterFile, "", "metadata checksum mismatch");
    keys_ = lines(tensors);
  }

  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    size_t pos = 0;
    for (size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1)
      out.push_back(text.substr(pos, nl - pos));
    return out;
  }

  std::string dir_;
  bool signed_ = false;  // a verify key was given and the manifest's signature checked
  std::optional<ckpt_manifest::Manifest> manifest_;
  h5::Handle master_;
  CheckpointMeta meta_;
  std::vector<std::string> keys_;
  std::map<std::string, h5::Handle> files_;  // rank files opened so far
  int64_t bytes_read_ = 0;
};

// The overlap of two boxes of the full tensor, or false if none.
bool intersect(const std::vector<int64_t>& a0, const std::vector<int64_t>& ac,
               const std::vector<int64_t>& b0, const std::vector<int64_t>& bc,
               std::vector<int64_t>& o0, std::vector<int64_t>& oc) {
  const size_t rank = a0.size();
  o0.resize(rank);
  oc.resize(rank);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t lo = std::max(a0[d], b0[d]), hi = std::min(a0[d] + ac[d], b0[d] + bc[d]);
    if (hi <= lo) return false;
    o0[d] = lo;
    oc[d] = hi - lo;
  }
  return true;
}

std::vector<int64_t> sub(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                         const std::vector<int64_t>& c) {  // a - b + c
  std::vector<int64_t> r(a.size());
  for (size_t d = 0; d < a.size(); ++d) r[d] = a[d] - b[d] + c[d];
  return r;
}

void load_one(Reader& rd, Piece& p) {
  VTensor t = rd.tensor(p.key);
  const std::vector<int64_t> full(p.shard.full.begin(), p.shard.full.end());
  if (t.shape != full)
    rd.fail(store::kMasterFile, p.key,
            fmt::format("is ({}) in the checkpoint but {} in the model", fmt::join(t.shape, ", "),
                        p.shard.full.str()));
  if (t.dtype != p.local.dtype())
    rd.fail(store::kMasterFile, p.key, fmt::format("is stored as {} but the model holds {}",
                                                   dtype_name(t.dtype), dtype_name(p.local.dtype())));
  // What this rank fills: its part, or for a slice the part's rows that the
  // slice touches (a scratch array, the slice copied out of it at the end).
  const PieceMap want = map_of(p);
  const std::vector<int64_t>& local = want.shape;
  const size_t esize = dtype_size(t.dtype);
  std::vector<char> rows(p.slice() ? static_cast<size_t>(volume(local)) * esize : 0);
  char* into = p.slice() ? rows.data() : static_cast<char*>(p.local.raw());
  int64_t covered = 0;
  std::vector<char> buf;
  for (const Source& s : t.sources) {
    // Is the source, as a whole, exactly what this rank holds? Then read it in place.
    bool direct = s.maps.size() == want.boxes.size();
    for (size_t i = 0; direct && i < want.boxes.size(); ++i)
      direct = s.maps[i].vstart == want.boxes[i].full_start && s.maps[i].count == want.boxes[i].count &&
               s.maps[i].sstart == want.boxes[i].local_start;
    bool overlaps = direct;
    std::vector<int64_t> o0, oc;
    for (const Mapping& m : s.maps)
      for (const Box& w : want.boxes)
        overlaps = overlaps || intersect(m.vstart, m.count, w.full_start, w.count, o0, oc);
    if (!overlaps) continue;
    bool in_place = false;
    const auto shape = rd.read_source(t, s, buf, direct ? into : nullptr, local, in_place);
    if (in_place) {
      covered += p.local.numel();
      continue;
    }
    for (const Mapping& m : s.maps)
      for (const Box& w : want.boxes) {
        if (!intersect(m.vstart, m.count, w.full_start, w.count, o0, oc)) continue;
        copy_box(buf.data(), shape, sub(o0, m.vstart, m.sstart), into, local, sub(o0, w.full_start, w.local_start),
                 oc, esize);
        covered += volume(oc);
      }
  }
  if (covered != p.local.numel())
    rd.fail(store::kMasterFile, p.key,
            fmt::format("the stored pieces cover {} of the {} elements this rank holds", covered, p.local.numel()));
  if (p.slice()) std::memcpy(p.local.raw(), rows.data() + static_cast<size_t>(want.offset) * esize, p.local.bytes());
}

}  // namespace

CheckpointMeta read_meta(const std::string& dir, VerifyKey key) { return Reader(dir, key).meta(); }

void load_pieces(const std::string& dir, std::vector<Piece>& pieces, VerifyKey key) {
  Reader rd(dir, key);
  for (Piece& p : pieces) load_one(rd, p);
}

std::vector<TensorInfo> list_tensors(const std::string& dir, VerifyKey key) {
  Reader rd(dir, key);
  std::vector<TensorInfo> out;
  for (const std::string& key : rd.keys()) {
    VTensor t = rd.tensor(key);
    out.push_back({key, t.shape, dtype_name(t.dtype), static_cast<int64_t>(t.sources.size())});
  }
  std::sort(out.begin(), out.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.key < b.key; });
  return out;
}

int64_t verify_checkpoint(const std::string& dir, VerifyKey key) {
  Reader rd(dir, key);
  std::vector<char> buf;
  for (const std::string& key : rd.keys()) {
    VTensor t = rd.tensor(key);
    int64_t full = 1, covered = 0;
    for (int64_t x : t.shape) full *= x;
    for (const Source& s : t.sources) {
      bool in_place = false;
      rd.read_source(t, s, buf, nullptr, {}, in_place);
      for (const Mapping& m : s.maps) {
        int64_t v = 1;
        for (int64_t c : m.count) v *= c;
        covered += v;
      }
    }
    if (covered != full)
      rd.fail(store::kMasterFile, key, fmt::format("the stored pieces cover {} of its {} elements", covered, full));
  }
  rd.check_listed();
  return rd.bytes_read();
}

}  // namespace dtrain
