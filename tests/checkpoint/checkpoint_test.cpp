// Checkpoint round trips: every parameter and optimizer state tensor comes
// back bit for bit; tensor-parallel shards and pipeline stages written by
// several ranks (threads here, tests/model/thread_comm.h) read back into any other layout, and the
// master file's virtual datasets present the full tensors; damage (a flipped
// byte, a truncated or missing file, a file of another checkpoint) is found
// and reported with the file and tensor.
#include <doctest/doctest.h>

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <thread>

#include <sys/stat.h>

#include "checkpoint/format.h"
#include "checkpoint/h5_probe.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "helpers.h"
#include "model/thread_comm.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

void check_same(const Tensor& a, const Tensor& b, const std::string& what) {
  CAPTURE(what);
  REQUIRE(a.numel() == b.numel());
  REQUIRE(std::memcmp(a.raw(), b.raw(), a.bytes()) == 0);
}

struct Trained {
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
};

Trained make(const std::string& opt_name, uint64_t seed, int steps) {
  Trained t;
  t.model = build_model(tiny_gpt(), 8, DType::f32, Device::cpu(), seed);
  t.opt = make_optimizer(optim(opt_name), t.model->params);
  take_steps(*t.model, *t.opt, steps, seed);
  return t;
}

}  // namespace

TEST_CASE("round trip: every parameter and optimizer state tensor, bit for bit (AdamW and SGD)") {
  for (const char* name : {"adamw", "sgd"}) {
    CAPTURE(name);
    TempDir dir;
    Trained a = make(name, 11, 3);
    auto world = make_self_communicator("world");
    CheckpointMeta meta = test_meta(3);
    meta.optimizer = name;
    if (std::string(name) == "sgd") meta.run_id = "0123456789abcdef";  // adamw: none, as before run ids
    SaveResult r = save_checkpoint(dir.str(), meta, collect_pieces(*a.model, *a.opt), *world);
    CHECK(r.dir == (dir.path / "step_00000003").string());
    CHECK(r.bytes > 3 * a.model->params.num_trainable() * 4);

    Trained b = make(name, 99, 1);  // other values everywhere
    std::vector<Piece> pieces = collect_pieces(*b.model, *b.opt);
    load_pieces(r.dir, pieces);
    for (const auto& p : a.model->params.all())
      check_same(p->value, b.model->params.find(p->name)->value, p->name);
    auto sa = a.opt->state(), sb = b.opt->state();
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      // Compare each parameter's slice (the flat buffers' alignment padding is not stored).
      for (const auto& p : a.model->params.all())
        check_same(sa[i].second.flat_range(p->offset, p->numel()),
                   sb[i].second.flat_range(p->offset, p->numel()), sa[i].first + "/" + p->name);
    }

    const CheckpointMeta m = read_meta(r.dir);
    CHECK(m.step == 3);
    CHECK(m.optimizer == name);
    CHECK(m.samples_seen == 12);
    CHECK(m.items_seen == 96);
    CHECK(m.seed == 7);
    CHECK(m.config == meta.config);
    CHECK(m.layout.world() == 1);
    CHECK(m.program_version == "test");
    CHECK(m.id.size() == 16);
    CHECK(m.run_id == meta.run_id);  // in the master file and the manifest, which must agree
    CHECK(ckpt_manifest::read(r.dir)->run == meta.run_id);

    const auto tensors = list_tensors(r.dir);
    CHECK(tensors.size() == pieces.size());
    for (const auto& t : tensors) CHECK(t.pieces == 1);
    CHECK(verify_checkpoint(r.dir) > 0);
  }
}

TEST_CASE("a model built to be loaded draws nothing and has no gradients, and a checkpoint fills it or is refused") {
  TempDir dir;
  Trained a = make("adamw", 11, 2);
  auto world = make_self_communicator("world");
  const SaveResult r = save_checkpoint(dir.str(), test_meta(2), collect_pieces(*a.model, *a.opt), *world);

  std::unique_ptr<Model> b = build_inference_model(tiny_gpt(), 8);
  CHECK_FALSE(b->params.grads().defined());
  for (const auto& p : b->params.all()) {
    CAPTURE(p->name);
    CHECK_FALSE(p->grad.defined());
    const float* v = p->value.data<float>();
    CHECK(std::all_of(v, v + p->numel(), [](float x) { return x == 0.0f; }));  // nothing drawn
  }
  std::vector<Piece> pieces = collect_pieces(*b, NamedTensors{});
  load_pieces(r.dir, pieces);
  for (const auto& p : a.model->params.all()) check_same(p->value, b->params.find(p->name)->value, p->name);

  // A checkpoint without one of the parameters: refused by name, never left at zero.
  TempDir partial;
  std::vector<Piece> all = collect_pieces(*a.model, *a.opt), some;
  for (Piece& p : all)
    if (p.key != "model/ln_f.weight") some.push_back(p);
  const SaveResult rp = save_checkpoint(partial.str(), test_meta(2), some, *world);
  std::unique_ptr<Model> c = build_inference_model(tiny_gpt(), 8);
  std::vector<Piece> want = collect_pieces(*c, NamedTensors{});
  CHECK_THROWS_WITH_AS(load_pieces(rp.dir, want), doctest::Contains("model/ln_f.weight"), CheckpointError);
}

namespace {

// A stand-in for a tensor-parallel model: a fused Q|K|V weight split by rows
// in 3 blocks, a row-parallel weight split by columns, a replicated norm; with
// `gqa`, also grouped-query attention's fused weight, whose K and V blocks
// are half Q's (8 | 4 | 4 rows).
void declare(ParamStore& ps, int64_t parts, int64_t index, bool gqa = false) {
  ps.add_sharded("qkv.weight", Shard{.dim = 0, .parts = parts, .index = index, .blocks = {8, 8, 8}, .full = Shape{24, 5}},
                 Init::normal(1.0), true);
  if (gqa)
    ps.add_sharded("gqa.weight", Shard{.dim = 0, .parts = parts, .index = index, .blocks = {8, 4, 4}, .full = Shape{16, 5}},
                   Init::normal(1.0), true);
  ps.add_sharded("proj.weight", Shard{.dim = 1, .parts = parts, .index = index, .blocks = {}, .full = Shape{5, 8}},
                 Init::normal(1.0), true);
  ps.add("ln.weight", Shape{5}, Init::uniform(1.0), false);
}

std::vector<Piece> pieces_of(ParamStore& ps, bool first_tp) {
  std::vector<Piece> out;
  for (const auto& p : ps.all())
    out.push_back({"model/" + p->name, p->value, p->shard, p->primary && (first_tp || p->shard.split())});
  return out;
}

// The full tensor `name` as HDF5 reads it through the master file's virtual dataset.
std::vector<float> read_virtual(const std::string& dir, const std::string& key, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n), -1.0f);
  hid_t f = H5Fopen((fs::path(dir) / "checkpoint.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, key.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  REQUIRE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

}  // namespace

TEST_CASE("tensor-parallel shards written by 1, 2 or 4 ranks read back on 1, 2 or 4 ranks (blocks equal and not)") {
  ParamStore whole;
  declare(whole, 1, 0, /*gqa=*/true);
  whole.allocate(DType::f32, Device::cpu(), 7);
  for (int writers : {1, 2, 4}) {
    TempDir dir;
    run_ranks(writers, [&](Communicator& world, int r) {
      ParamStore ps;
      declare(ps, writers, r, /*gqa=*/true);
      ps.allocate(DType::f32, Device::cpu(), 7);  // each rank: its slice of the same full tensors
      CheckpointMeta meta = test_meta(5);
      meta.layout = {1, writers, 1};
      save_checkpoint(dir.str(), meta, pieces_of(ps, r == 0), world);
    });
    const std::string ck = (dir.path / "step_00000005").string();
    for (int w = 0; w < writers; ++w) CHECK(fs::exists(fs::path(ck) / store::rank_file_name(w)));
    CHECK(read_meta(ck).layout.tp == writers);
    // The master file shows each full tensor, as h5py and h5dump would read it.
    for (const auto& p : whole.all()) {
      const auto v = read_virtual(ck, "model/" + p->name, p->numel());
      CHECK(std::memcmp(v.data(), p->value.raw(), p->value.bytes()) == 0);
    }
    for (const auto& t : list_tensors(ck)) CHECK(t.pieces == (t.key == "model/ln.weight" ? 1 : writers));
    for (int readers : {1, 2, 4}) {
      for (int r = 0; r < readers; ++r) {
        CAPTURE(writers);
        CAPTURE(readers);
        CAPTURE(r);
        ParamStore ps;
        declare(ps, readers, r, /*gqa=*/true);
        ps.allocate(DType::f32, Device::cpu(), 99);
        std::vector<Piece> pieces = pieces_of(ps, r == 0);
        load_pieces(ck, pieces);
        for (const auto& p : ps.all()) {
          const float* full = whole.find(p->name)->value.data<float>();
          const float* mine = p->value.data<float>();
          for (int64_t i = 0; i < p->numel(); ++i) REQUIRE(mine[i] == full[p->shard.global_index(i)]);
        }
      }
    }
  }
}

TEST_CASE("flat ranges of any shape are tiled by boxes in order, at most 2 rank - 1 of them") {
  using ckpt_format::Box;
  std::mt19937 rng(5);
  for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{7}, {4, 5}, {3, 4, 5}, {2, 3, 1, 4}, {1, 1, 6}}) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    std::vector<int64_t> stride(dims.size(), 1);
    for (size_t d = dims.size(); d-- > 1;) stride[d - 1] = stride[d] * dims[d];
    for (int trial = 0; trial < 200; ++trial) {
      int64_t a = static_cast<int64_t>(rng() % static_cast<uint32_t>(n + 1)),
              b = static_cast<int64_t>(rng() % static_cast<uint32_t>(n + 1));
      if (a > b) std::swap(a, b);
      CAPTURE(a);
      CAPTURE(b);
      const std::vector<Box> boxes = ckpt_format::flat_boxes(dims, a, b);
      CHECK(boxes.size() <= 2 * dims.size() - 1);
      int64_t next = a;  // each box continues the range where the one before ended
      for (const Box& box : boxes) {
        REQUIRE(box.full_start == box.local_start);
        std::vector<int64_t> idx(dims.size(), 0);
        // Every element of the box, in row-major order, is the range's next.
        while (true) {
          int64_t flat = 0;
          for (size_t d = 0; d < dims.size(); ++d) flat += (box.local_start[d] + idx[d]) * stride[d];
          REQUIRE(flat == next);
          ++next;
          size_t d = dims.size();
          while (d > 0 && ++idx[d - 1] == box.count[d - 1]) idx[--d] = 0;
          if (d == 0) break;
        }
      }
      CHECK(next == b);
    }
  }
}

namespace {

// Pieces of ZeRO's kind: data-parallel rank d of `dp` holds flat elements
// [cut[d], cut[d + 1]) of the flat buffer (anywhere: across parameters,
// inside rows), and writes that slice of every parameter it meets.
std::vector<Piece> slices_of(ParamStore& ps, bool first_tp, int64_t lo, int64_t hi) {
  std::vector<Piece> out;
  for (const auto& p : ps.all()) {
    const int64_t a = std::max(lo, p->offset), b = std::min(hi, p->offset + p->numel());
    if (a >= b) continue;
    Piece piece{"model/" + p->name, p->value.view(Shape{p->numel()}).flat_range(a - p->offset, b - a), p->shard,
                p->primary && (first_tp || p->shard.split())};
    piece.slice_begin = a - p->offset;
    out.push_back(std::move(piece));
  }
  return out;
}

std::vector<int64_t> cuts(int64_t total, int parts, int64_t skew) {
  std::vector<int64_t> c{0};
  for (int d = 1; d < parts; ++d) c.push_back(std::clamp<int64_t>(total * d / parts + skew * d, 0, total));
  c.push_back(total);
  return c;
}

void declare_more(ParamStore& ps, int64_t parts, int64_t index) {
  declare(ps, parts, index, /*gqa=*/true);
  ps.add("conv.weight", Shape{3, 2, 3, 3}, Init::normal(1.0), true);  // rows of 18: a slice cuts inside them
  ps.add("block.weight", Shape{3, 4, 5}, Init::normal(1.0), true);
  // Split by columns in two blocks (a fused gate|up weight laid out by columns).
  ps.add_sharded("up.weight", Shard{.dim = 1, .parts = parts, .index = index, .blocks = {4, 8}, .full = Shape{3, 12}},
                 Init::normal(1.0), true);
  ps.add("row.weight", Shape{1, 1, 40}, Init::normal(1.0), true);  // leading ones: stored without whole rows
}

}  // namespace

TEST_CASE("ZeRO slices: flat ranges cut anywhere, over tensor-parallel shards, read back whole, as shards and as other slices") {
  {  // What a slice stores: the rows it touches, along the first dimension longer than 1.
    Piece probe{"model/x", Tensor::zeros(Shape{7}, DType::f32), Shard{}, true};
    probe.slice_begin = 10;
    for (const auto& [full, stored, offset] :
         {std::tuple{Shape{1, 1, 40}, std::vector<int64_t>{1, 1, 7}, int64_t{0}},
          std::tuple{Shape{4, 6}, std::vector<int64_t>{2, 6}, int64_t{4}}, std::tuple{Shape{40}, std::vector<int64_t>{7}, int64_t{0}}}) {
      probe.shard.full = full;
      const ckpt_format::PieceMap m = ckpt_format::map_of(probe);
      CHECK(m.shape == stored);
      CHECK(m.offset == offset);
    }
  }
  ParamStore whole;
  declare_more(whole, 1, 0);
  whole.allocate(DType::f32, Device::cpu(), 7);
  for (const auto& layout : {std::tuple{1, 3, 0}, std::tuple{2, 3, 5}, std::tuple{2, 2, -7}, std::tuple{1, 5, 3}}) {
    const int tp = std::get<0>(layout), dp = std::get<1>(layout), skew = std::get<2>(layout);  // lambdas capture these
    CAPTURE(tp);
    CAPTURE(dp);
    TempDir dir;
    run_ranks(tp * dp, [&](Communicator& world, int r) {
      const int t = r % tp, d = r / tp;
      ParamStore ps;
      declare_more(ps, tp, t);
      ps.allocate(DType::f32, Device::cpu(), 7);
      const std::vector<int64_t> c = cuts(ps.flat_numel(), dp, skew);
      CheckpointMeta meta = test_meta(4);
      meta.layout = {dp, tp, 1};
      meta.zero = 3;
      save_checkpoint(dir.str(), meta, slices_of(ps, t == 0, c[d], c[d + 1]), world);
    });
    const std::string ck = (dir.path / "step_00000004").string();
    for (const auto& p : whole.all()) {  // as h5py reads it
      const auto v = read_virtual(ck, "model/" + p->name, p->numel());
      CHECK(std::memcmp(v.data(), p->value.raw(), p->value.bytes()) == 0);
    }
    CHECK(verify_checkpoint(ck) > 0);
    for (const auto& reader : {std::pair{1, 1}, std::pair{2, 1}, std::pair{1, 2}, std::pair{2, 4}}) {
      const int rtp = reader.first, rdp = reader.second;
      CAPTURE(rtp);
      CAPTURE(rdp);
      for (int r = 0; r < rtp * rdp; ++r) {
        const int t = r % rtp, d = r / rtp;
        ParamStore ps, before;
        declare_more(ps, rtp, t);
        ps.allocate(DType::f32, Device::cpu(), 99);
        declare_more(before, rtp, t);
        before.allocate(DType::f32, Device::cpu(), 99);
        const std::vector<int64_t> c = cuts(ps.flat_numel(), rdp, 1);
        std::vector<Piece> pieces = rdp == 1 ? pieces_of(ps, true) : slices_of(ps, true, c[d], c[d + 1]);
        load_pieces(ck, pieces);
        for (const auto& p : ps.all()) {
          const float* full = whole.find(p->name)->value.data<float>();
          const float* mine = p->value.data<float>();
          const float* untouched = before.find(p->name)->value.data<float>();
          for (int64_t i = 0; i < p->numel(); ++i) {  // the slice loaded, the rest as it was
            const bool in = c[d] <= p->offset + i && p->offset + i < c[d + 1];
            REQUIRE(mine[i] == (in ? full[p->shard.global_index(i)] : untouched[i]));
          }
        }
      }
    }
  }
  SUBCASE("slices that overlap or leave a gap are refused before anything is published") {
    for (const int64_t shift : {int64_t{1}, int64_t{-1}}) {
      TempDir dir;
      std::vector<std::string> errors(2);
      run_ranks(2, [&](Communicator& world, int r) {
        ParamStore ps;
        declare_more(ps, 1, 0);
        ps.allocate(DType::f32, Device::cpu(), 7);
        std::vector<int64_t> c = cuts(ps.flat_numel(), 2, 0);
        c[1] = whole.find("conv.weight")->offset + 20;  // inside conv.weight's second row
        const int64_t lo = r == 0 ? 0 : c[1] + shift;  // rank 1 starts one early (overlap) or late (gap)
        try {
          save_checkpoint(dir.str(), test_meta(4), slices_of(ps, true, lo, r == 0 ? c[1] : c[2]), world);
        } catch (const RuntimeError& e) {
          errors[static_cast<size_t>(r)] = e.what();
        }
      });
      CAPTURE(errors[0]);
      CHECK(errors[0].find("model/conv.weight") != std::string::npos);
      CHECK(errors[0].find(shift > 0 ? "cover" : "overlap") != std::string::npos);
      CHECK(!errors[1].empty());
      CHECK(store::list_complete(dir.path).empty());
    }
  }
}

TEST_CASE("pipeline stages x tensor parallelism: each stage writes its own tensors, the tied copy once") {
  // 2 stages x 2 tensor-parallel ranks: world rank = 2 * stage + tp rank. Stage 0
  // holds qkv and ln; stage 1 holds proj and a second (non-primary) copy of qkv.
  ParamStore whole;
  declare(whole, 1, 0);
  whole.allocate(DType::f32, Device::cpu(), 7);
  TempDir dir;
  run_ranks(4, [&](Communicator& world, int rank) {
    const int stage = rank / 2, tp = rank % 2;
    ParamStore ps;
    if (stage == 0) {
      ps.add_sharded("qkv.weight", Shard{.dim = 0, .parts = 2, .index = tp, .blocks = {8, 8, 8}, .full = Shape{24, 5}},
                     Init::normal(1.0), true);
      ps.add("ln.weight", Shape{5}, Init::uniform(1.0), false);
    } else {
      ps.add_sharded("proj.weight", Shard{.dim = 1, .parts = 2, .index = tp, .blocks = {}, .full = Shape{5, 8}},
                     Init::normal(1.0), true);
      ps.add_sharded("qkv.weight", Shard{.dim = 0, .parts = 2, .index = tp, .blocks = {8, 8, 8}, .full = Shape{24, 5}},
                     Init::normal(1.0), true)
          .primary = false;
    }
    ps.allocate(DType::f32, Device::cpu(), 7);
    CheckpointMeta meta = test_meta(2);
    meta.layout = {1, 2, 2};
    save_checkpoint(dir.str(), meta, pieces_of(ps, tp == 0), world);
  });
  const std::string ck = (dir.path / "step_00000002").string();
  const auto tensors = list_tensors(ck);
  REQUIRE(tensors.size() == 3);
  CHECK(tensors[0].key == "model/ln.weight");
  CHECK(tensors[0].pieces == 1);
  CHECK(tensors[1].pieces == 2);  // proj: two tensor-parallel pieces of stage 1
  CHECK(tensors[2].pieces == 2);  // qkv: stage 0's pieces only
  ParamStore one;
  declare(one, 1, 0);
  one.allocate(DType::f32, Device::cpu(), 99);
  std::vector<Piece> pieces = pieces_of(one, true);
  load_pieces(ck, pieces);
  for (const auto& p : one.all()) check_same(p->value, whole.find(p->name)->value, p->name);
}

TEST_CASE("a tensor with NaN or inf is never written") {
  TempDir dir;
  Trained a = make("adamw", 11, 1);
  a.model->params.find("ln_f.weight")->value.data<float>()[3] = std::nanf("");
  auto world = make_self_communicator("world");
  CHECK_THROWS_WITH_AS(save_checkpoint(dir.str(), test_meta(1), collect_pieces(*a.model, *a.opt), *world),
                       doctest::Contains("model/ln_f.weight holds non-finite values"), RuntimeError);
  CHECK(store::list_complete(dir.path).empty());
  CHECK(!fs::exists(dir.path / "step_00000001.tmp"));
}

namespace {

// The file offset of a dataset's contiguous data.
int64_t data_offset(const fs::path& file, const std::string& key) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, key.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  const haddr_t off = H5Dget_offset(d);
  H5Dclose(d);
  H5Fclose(f);
  REQUIRE(off != HADDR_UNDEF);
  return static_cast<int64_t>(off);
}

void expect_damage(const std::string& ck, const std::string& file, const std::string& tensor,
                   const std::string& problem) {
  Trained b = make("adamw", 99, 0);
  std::vector<Piece> pieces = collect_pieces(*b.model, *b.opt);
  try {
    if (file == "checkpoint.h5" && tensor.empty()) read_meta(ck);
    else load_pieces(ck, pieces);
    FAIL("no error for ", file, " ", tensor);
  } catch (const CheckpointError& e) {
    CAPTURE(e.what());
    CHECK(e.file() == file);
    CHECK(e.tensor() == tensor);
    CHECK(e.problem().find(problem) != std::string::npos);
    CHECK(std::string(e.what()).find(ck) != std::string::npos);
  }
}

// What one who edits the files and recomputes the manifest leaves: the checks
// behind the manifest's must still find the damage.
void remanifest(const std::string& dir) {
  auto m = ckpt_manifest::read(dir);
  REQUIRE(m);
  for (auto& [name, sum] : m->files)
    if (fs::exists(fs::path(dir) / name)) sum = ckpt_manifest::sum_file(fs::path(dir) / name);
  write_file(fs::path(dir) / ckpt_manifest::kFile, ckpt_manifest::to_text(*m));
}

// The manifest catches the damage first (naming `file`, no tensor: it sums the
// whole file, and says which tensors' own checksums fail, `located`); with it
// recomputed, `problem`, in `tensor`.
void expect_damage_behind_manifest(const std::string& ck, const std::string& file, const std::string& tensor,
                                   const std::string& problem, const std::string& located = "") {
  expect_damage(ck, file, "", "the manifest");
  if (!located.empty()) expect_damage(ck, file, "", located);
  remanifest(ck);
  expect_damage(ck, file, tensor, problem);
}

}  // namespace

TEST_CASE("damage is detected and named: flipped byte, truncated files, missing or foreign files") {
  TempDir dir;
  Trained a = make("adamw", 11, 2);
  auto world = make_self_communicator("world");
  CheckpointMeta meta = test_meta(1);
  meta.config = "# a config with a marker: 0123456789abcdef\n";
  const std::string one = save_checkpoint(dir.str(), meta, collect_pieces(*a.model, *a.opt), *world).dir;
  meta.step = 2;
  const std::string two = save_checkpoint(dir.str(), meta, collect_pieces(*a.model, *a.opt), *world).dir;
  const fs::path rank = fs::path(two) / "rank_00000.h5", master = fs::path(two) / "checkpoint.h5";
  const std::string rank_bytes = read_file(rank), master_bytes = read_file(master);

  SUBCASE("a flipped byte inside a tensor's data") {
    const std::string key = "optim/adamw.v/blocks.1.mlp.fc.weight";
    flip_byte(rank, data_offset(rank, key) + 17);
    expect_damage_behind_manifest(two, "rank_00000.h5", key, "checksum mismatch", "): damaged in tensor " + key);
    CHECK_THROWS_AS(verify_checkpoint(two), CheckpointError);
  }
  SUBCASE("a truncated rank file") {
    write_file(rank, rank_bytes.substr(0, rank_bytes.size() / 2));
    expect_damage_behind_manifest(two, "rank_00000.h5", "model/wte.weight", "cannot open");
  }
  SUBCASE("a rank file that lost only its last bytes") {
    write_file(rank, rank_bytes.substr(0, rank_bytes.size() - 8));
    expect_damage_behind_manifest(two, "rank_00000.h5", "model/wte.weight", "cannot open");
  }
  SUBCASE("a missing rank file") {
    fs::remove(rank);
    expect_damage(two, "rank_00000.h5", "", "the file is missing");  // the file, not the tensor read first
  }
  SUBCASE("a rank file of another checkpoint") {
    fs::copy_file(fs::path(one) / "rank_00000.h5", rank, fs::copy_options::overwrite_existing);
    expect_damage_behind_manifest(two, "rank_00000.h5", "model/wte.weight", "belongs to another checkpoint");
  }
  SUBCASE("a truncated master file") {
    write_file(master, master_bytes.substr(0, master_bytes.size() / 3));
    expect_damage_behind_manifest(two, "checkpoint.h5", "", "cannot open");
  }
  SUBCASE("damaged metadata (a flipped byte in the stored config)") {
    const size_t at = master_bytes.find("0123456789abcdef");
    REQUIRE(at != std::string::npos);
    flip_byte(master, static_cast<int64_t>(at) + 4);
    expect_damage_behind_manifest(two, "checkpoint.h5", "", "metadata checksum mismatch");
  }
  // The first checkpoint is untouched by all of it.
  Trained b = make("adamw", 99, 0);
  std::vector<Piece> pieces = collect_pieces(*b.model, *b.opt);
  load_pieces(one, pieces);
}

// The child process that parses files no manifest vouches for (h5_probe.h):
// a sound file passes, a file HDF5 refuses is passed over, a file whose
// parsing never ends is named after the timeout. A FIFO hangs HDF5 for good:
// its open(2) waits for a writer that never comes.
TEST_CASE("the format-1 probe: sound files pass, a hang is named after its timeout") {
  TempDir dir;
  Trained a = make("adamw", 5, 1);
  auto world = make_self_communicator("world");
  const std::string ck = save_checkpoint(dir.str(), test_meta(1), collect_pieces(*a.model, *a.opt), *world).dir;
  const std::string master = (fs::path(ck) / "checkpoint.h5").string(), rank = (fs::path(ck) / "rank_00000.h5").string();
  const std::string junk = (dir.path / "junk.h5").string();
  write_file(junk, "not an HDF5 file at all");

  const h5::ProbeResult sound = h5::probe_in_child({master, rank, junk}, 60);
  CHECK(sound.what.empty());
  CHECK(sound.file.empty());

  const std::string fifo = (dir.path / "hangs.h5").string();
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  const h5::ProbeResult hung = h5::probe_in_child({master, fifo, rank}, 0.5);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(hung.file == fifo);
  CHECK(hung.what == "HDF5 did not finish parsing its metadata within 0.5 s");
  CHECK(waited < 30);  // the child was killed, not waited for
}
