// Layout equivalence, the heart of dtrain's promise: the same config trained
// on any data x tensor x pipeline layout gives the one-process losses at every
// step (fp32, 1e-5 relative) and the same final parameters. Runs under
// `mpirun -np 8`: rank 0 trains the one-process reference and sends it to the
// others, then the first dp*tp*pp ranks train each layout together while the
// others wait (asleep: see quiet_barrier). Each rank compares the parameters
// it holds (a tensor-parallel shard, a pipeline stage's subset) with its slice
// of the reference's.
#include <doctest/doctest.h>

#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <thread>

#include "../data/data_files.h"
#include "config/config.h"
#include "dist/mesh_groups.h"
#include "parallel/auto_layout.h"
#include "parallel/cost_model.h"
#include "parallel/hardware.h"
#include "parallel/model_profile.h"
#include "train/comm_recorder.h"
#include "train/profiler.h"
#include "train/trainer.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// A barrier over every rank that sleeps while it waits. Open MPI's blocking
// barrier polls, and under ctest 8 ranks share 2 cores: the ranks a layout
// leaves out, polling, took most of the cores from the ones training it.
void quiet_barrier() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0;;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Data files shared by every rank: rank 0 writes them, the others wait.
struct Data {
  std::string dir;
  Data() {
    dir = "/tmp/dtrain_layouts_" + std::to_string(::getppid());
    if (world_rank() == 0) {
      std::filesystem::create_directories(dir);
      std::vector<uint16_t> tokens(6000);
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>((i * 7 + i / 13 + (i * i) % 11) % 64);
      write_bytes(dir + "/tok_train.bin", token_file(tokens));
      write_bytes(dir + "/tok_val.bin", token_file(std::vector<uint16_t>(tokens.begin(), tokens.begin() + 600)));
      write_images(dir + "/img_train", dir + "/lbl_train", 256, 1, 8, 8, 4);
      write_images(dir + "/img_val", dir + "/lbl_val", 64, 1, 8, 8, 4);
    }
    quiet_barrier();
  }
};

std::string gpt_toml(const std::string& dir) {
  return fmt::format(R"(
[model]
type = "gpt"
vocab_size = 64
context_length = 16
n_layer = 2
n_head = 4
n_embd = 32
dropout = 0.1
[data]
train = "{0}/tok_train.bin"
val = "{0}/tok_val.bin"
[train]
steps = 20
seed = 7
micro_batch = 2
global_batch = 8
eval_every = 0
eval_batches = 2
threads = 1
[optim]
name = "adamw"
lr = 3e-3
warmup_steps = 2
grad_clip = 1.0
[parallel]
bucket_mb = 0.01
[log]
out_dir = "{0}/out"
every = 1000
)", dir);
}

std::string cnn_toml(const std::string& dir) {
  return fmt::format(R"(
[model]
type = "cnn"
in_channels = 1
image_size = 8
num_classes = 4
stem_channels = 4
channels = [4, 8]
blocks = [1, 1]
[data]
train_images = "{0}/img_train"
train_labels = "{0}/lbl_train"
val_images = "{0}/img_val"
val_labels = "{0}/lbl_val"
mean = [0.5]
std = [0.25]
[train]
steps = 20
seed = 7
micro_batch = 4
global_batch = 16
eval_every = 0
eval_batches = 2
threads = 1
[optim]
name = "sgd"
lr = 0.05
warmup_steps = 0
grad_clip = 0.0
[parallel]
bucket_mb = 0.001
[log]
out_dir = "{0}/out"
every = 1000
)", dir);
}

struct Run {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> params;  // full tensors (reference) or this rank's part
  std::map<std::string, Shard> shards;
};

Run train(const Config& cfg, const Groups& g, TrainerOptions opts = {}) {
  Trainer t(cfg, g, [](const std::string&) {}, std::move(opts));
  Run r;
  for (int64_t s = 0; s < cfg.train.steps; ++s) r.losses.push_back(t.train_step(s).loss);
  t.gather_full_params();  // ZeRO-3: each rank holds a shard only
  for (const auto& p : t.model().params.all()) {
    // Batch-norm running statistics too: under dp combined as one process updates them.
    const float* v = p->value.data<float>();
    r.params[p->name].assign(v, v + p->numel());
    r.shards[p->name] = p->shard;
  }
  t.release_full_params();
  return r;
}

// How close a layout must come to one process: fp32 by default.
struct Tolerance {
  double loss = 1e-5;   // relative, every step
  double param = 5e-5;  // absolute, final parameters (fp32, 20 AdamW/SGD steps; measured up to 1.1e-5)
  double param_rms = 1.0;  // root-mean-square difference over all parameters held, relative to their rms
};

// `schedule`: "1f1b", "gpipe" or "interleaved/v" (v model chunks per stage).
void check_layout(const std::string& toml, const Run& ref, Layout layout, int zero,
                  const std::string& schedule, Tolerance tol = {}, const std::vector<std::string>& sets = {}) {
  const int rank = world_rank();
  const bool member = rank < layout.world();
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED, rank, &sub);
  if (member) {
    // Same global batch and micro-batch as the reference: more dp ranks,
    // fewer accumulation steps.
    const Config ref_cfg = parse_config(toml, "layouts.toml");  // the batch (sets need not hold on one process)
    const int64_t accum = ref_cfg.train.global_batch / (ref_cfg.train.micro_batch * layout.dp);
    std::vector<std::string> all = sets;
    for (const std::string& s :
         {fmt::format("parallel.dp={}", layout.dp), fmt::format("parallel.tp={}", layout.tp),
          fmt::format("parallel.pp={}", layout.pp), fmt::format("parallel.zero={}", zero),
          fmt::format("parallel.schedule={}", schedule.substr(0, schedule.find('/'))),
          fmt::format("train.grad_accum={}", accum)})
      all.push_back(s);
    if (schedule.find('/') != std::string::npos)
      all.push_back("parallel.virtual_stages=" + schedule.substr(schedule.find('/') + 1));
    const Config cfg = parse_config(toml, "layouts.toml", all, layout.world());
    Mesh mesh(MeshLayout{layout.dp, layout.tp, layout.pp}, MpiCommOptions{}, sub);
    const Run run = train(cfg, mesh_groups(mesh));
    CAPTURE(layout.str());
    CAPTURE(zero);
    CAPTURE(schedule);
    CAPTURE(rank);
    REQUIRE(run.losses.size() == ref.losses.size());
    double worst_loss = 0;
    for (size_t s = 0; s < ref.losses.size(); ++s) {
      CAPTURE(s);
      CHECK(run.losses[s] == doctest::Approx(ref.losses[s]).epsilon(tol.loss));
      worst_loss = std::max(worst_loss, std::abs(run.losses[s] - ref.losses[s]) / std::abs(ref.losses[s]));
    }
    double worst = 0, sq_diff = 0, sq = 0;
    std::string worst_name;
    for (const auto& [name, mine] : run.params) {
      const auto& full = ref.params.at(name);
      const Shard& sh = run.shards.at(name);
      for (size_t i = 0; i < mine.size(); ++i) {
        const double want = full[static_cast<size_t>(sh.global_index(int64_t(i)))];
        const double d = std::abs(double(mine[i]) - want);
        sq_diff += d * d;
        sq += want * want;
        if (d > worst) worst = d, worst_name = name;
      }
    }
    CAPTURE(worst_name);
    CHECK(worst < tol.param);
    const double rms = std::sqrt(sq_diff / std::max(sq, 1e-30));
    CAPTURE(rms);
    CHECK(rms < tol.param_rms);
    if (rank == 0 && tol.param_rms < 1.0)
      MESSAGE(fmt::format("{} ZeRO-{} {}: loss within {:.2g} relative, parameters within {:.2g} ({}), "
                          "rms {:.2g}", layout.str(), zero, schedule, worst_loss, worst, worst_name, rms));
    MPI_Comm_free(&sub);
  }
  quiet_barrier();
}

// Rank 0's `v` on every rank.
template <class T>
void broadcast(std::vector<T>& v, MPI_Datatype type) {
  auto n = static_cast<int64_t>(v.size());
  MPI_Bcast(&n, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  v.resize(static_cast<size_t>(n));
  MPI_Bcast(v.data(), static_cast<int>(n), type, 0, MPI_COMM_WORLD);
}

// The one-process run, trained by rank 0 alone and sent to the others (every
// rank training it took 8 times the work on the test's 2 cores).
Run reference(const std::string& toml, const std::vector<std::string>& sets = {}) {
  Run r;
  if (world_rank() == 0) {
    SelfGroups self;
    r = train(parse_config(toml, "layouts.toml", sets), self.groups());
  }
  quiet_barrier();
  broadcast(r.losses, MPI_DOUBLE);
  std::vector<char> names;  // every name, each ended by '\0', in the map's order
  for (const auto& [name, v] : r.params) names.insert(names.end(), name.c_str(), name.c_str() + name.size() + 1);
  broadcast(names, MPI_CHAR);
  for (size_t at = 0; at < names.size(); at += std::strlen(names.data() + at) + 1) {
    std::vector<float>& v = r.params[std::string(names.data() + at)];
    broadcast(v, MPI_FLOAT);
  }
  return r;
}

}  // namespace

TEST_CASE("GPT: every layout in {1,2}^3 and 4-way dp, tp, pp trains like one process") {
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const Run ref = reference(toml);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const std::vector<Layout> layouts{{1, 1, 1}, {2, 1, 1}, {1, 2, 1}, {1, 1, 2}, {2, 2, 1}, {2, 1, 2},
                                    {1, 2, 2}, {2, 2, 2}, {4, 1, 1}, {1, 4, 1}, {1, 1, 4}};
  for (const Layout& l : layouts)
    if (l.world() <= world) check_layout(toml, ref, l, 0, "1f1b");
  // ZeRO-1 and the GPipe schedule.
  if (world >= 4) {
    check_layout(toml, ref, {4, 1, 1}, 1, "1f1b");
    check_layout(toml, ref, {2, 1, 2}, 1, "gpipe");
    check_layout(toml, ref, {1, 1, 4}, 0, "gpipe");
  }
}

TEST_CASE("CNN: data and pipeline layouts train like one process") {
  Data data;
  const std::string toml = cnn_toml(data.dir);
  const Run ref = reference(toml);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (const Layout& l : std::vector<Layout>{{2, 1, 1}, {1, 1, 2}, {2, 1, 2}, {4, 1, 1}, {1, 1, 4}})
    if (l.world() <= world) check_layout(toml, ref, l, 0, "1f1b");
  if (world >= 2) check_layout(toml, ref, {2, 1, 1}, 1, "1f1b");
}

TEST_CASE("GPT in bf16: dp, tp, pp and ZeRO-1 layouts train like one bf16 process") {
  // The tolerance, derived: a layout changes the order of fp32 sums (data-
  // parallel gradient reductions; tensor-parallel partial products, which
  // bf16 also rounds to bf16 before the all-reduce adds them: a half-ulp,
  // 2^-9 relative, per partial sum). Where such a difference crosses a
  // rounding boundary, an activation or a weight's bf16 copy moves by one
  // ulp (2^-8 relative). The loss is smooth in both, and such flips are rare
  // and of both signs: a few 2^-9 relative at worst over 20 steps, 2e-3
  // (measured: dp 4e-5, tp 1.5e-4, dp x tp x pp 1.6e-4). Parameters are not smooth in the gradient under AdamW:
  // an element whose gradient is near zero (a bias) can see m/sqrt(v) change
  // sign, and each step then moves it by up to lr, so the worst element is
  // bounded by lr * steps = 0.06 (measured 0.022, a qkv bias with tp 2) and
  // the bulk by the rms difference, 2e-2 of the parameters' rms (measured
  // dp 4.7e-4, tp 4.5e-3, dp x tp x pp 5e-3). Pipeline stages change no sum
  // (measured 7e-9).
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const std::vector<std::string> bf16{"train.precision=bf16"};
  const Run ref = reference(toml, bf16);
  const Run ref32 = reference(toml);
  double apart = 0;  // bf16 and fp32 are different computations: the test can fail
  for (size_t s = 0; s < ref.losses.size(); ++s) apart = std::max(apart, std::abs(ref.losses[s] - ref32.losses[s]));
  CHECK(apart > 0);
  const Tolerance tol{2e-3, 0.06, 2e-2};
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (const Layout& l : std::vector<Layout>{{1, 1, 1}, {2, 1, 1}, {1, 2, 1}, {1, 1, 2}, {2, 2, 2}})
    if (l.world() <= world) check_layout(toml, ref, l, 0, "1f1b", tol, bf16);
  if (world >= 4) check_layout(toml, ref, {4, 1, 1}, 1, "1f1b", tol, bf16);
}

TEST_CASE("ZeRO-1 by reduce-scatter and ZeRO-2 on dp 2 and 4, with tp and pp, in fp32 and bf16, train like one process") {
  // ZeRO changes only the order of the gradient sums (reduce-scatter of
  // buckets or of each layer per micro-batch, the tied embedding summed over
  // pp before dp): the fp32 tolerance of every layout.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const Run ref = reference(toml);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 8) return;
  for (int zero : {1, 2}) {
    check_layout(toml, ref, {2, 1, 1}, zero, "1f1b");
    check_layout(toml, ref, {4, 1, 1}, zero, "1f1b");
  }
  check_layout(toml, ref, {2, 2, 1}, 2, "1f1b");
  check_layout(toml, ref, {2, 1, 2}, 2, "1f1b");
  check_layout(toml, ref, {2, 1, 2}, 1, "gpipe");
  check_layout(toml, ref, {2, 2, 2}, 2, "1f1b", {}, {"train.recompute=full"});
  // The CNN (batch-norm buffers stay replicated, averaged over dp).
  const std::string cnn = cnn_toml(data.dir);
  const Run cnn_ref = reference(cnn);
  check_layout(cnn, cnn_ref, {4, 1, 1}, 2, "1f1b");
  // bf16 within the bf16 layout tolerance (see the bf16 test above).
  const std::vector<std::string> bf16{"train.precision=bf16"};
  const Run ref16 = reference(toml, bf16);
  const Tolerance tol{2e-3, 0.06, 2e-2};
  check_layout(toml, ref16, {4, 1, 1}, 2, "1f1b", tol, bf16);
  check_layout(toml, ref16, {2, 2, 2}, 2, "1f1b", tol, bf16);
}

TEST_CASE("ZeRO-3 on dp 2 and 4, with tp 2, pp 2, full recomputation and the CNN, in fp32 and bf16, trains like one process") {
  // ZeRO-3 gathers each layer's parameters (the shards' values, unchanged)
  // before its forward and its backward and reduce-scatters its gradients
  // per micro-batch, as ZeRO-2: the same sums in the same order as ZeRO-2,
  // so the fp32 tolerance of every layout (and bf16's in bf16: the gathered
  // bf16 values are the optimizer's own rounding of the masters).
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const Run ref = reference(toml);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 8) return;
  const Tolerance tol{1e-5, 5e-5, 1e-5};  // (param_rms < 1: the worst differences are reported)
  check_layout(toml, ref, {2, 1, 1}, 3, "1f1b", tol);
  check_layout(toml, ref, {4, 1, 1}, 3, "1f1b", tol);
  check_layout(toml, ref, {2, 2, 1}, 3, "1f1b", tol);
  check_layout(toml, ref, {2, 1, 2}, 3, "1f1b", tol);
  check_layout(toml, ref, {2, 2, 2}, 3, "1f1b", tol, {"train.recompute=full"});
  check_layout(toml, ref, {2, 1, 2}, 3, "gpipe", tol, {"parallel.overlap=false"});
  const std::string cnn = cnn_toml(data.dir);
  const Run cnn_ref = reference(cnn);
  check_layout(cnn, cnn_ref, {4, 1, 1}, 3, "1f1b");
  const std::vector<std::string> bf16{"train.precision=bf16"};
  const Run ref16 = reference(toml, bf16);
  const Tolerance tol16{2e-3, 0.06, 2e-2};
  check_layout(toml, ref16, {2, 1, 1}, 3, "1f1b", tol16, bf16);
  check_layout(toml, ref16, {4, 1, 1}, 3, "1f1b", tol16, bf16);
  check_layout(toml, ref16, {2, 2, 2}, 3, "1f1b", tol16, bf16);
}

TEST_CASE("ZeRO-3 with the tied embedding the widest gather unit: dp 2, dp 2 x pp 2, dp 2 x tp 2, interleaved, fp32 and bf16") {
  // A vocabulary of 512 makes the embedding's unit (wte + wpe, 16896
  // elements) and the head's (wte) wider than a block's (12704): they take
  // the wide window, the blocks either, and a wide unit after one in the
  // wide window is gathered at its turn (no prefetch). The tied embedding's
  // gathers come from the 1/dp master shards like every layer's; its
  // gradient (head + embedding, + the other stage's with pp) is
  // reduce-scattered once per step.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 8) return;
  const std::vector<std::string> wide{"model.vocab_size=512"};
  const Run ref = reference(toml, wide);
  const Tolerance tol{1e-5, 5e-5, 1e-5};
  check_layout(toml, ref, {2, 1, 1}, 3, "1f1b", tol, wide);
  check_layout(toml, ref, {2, 1, 2}, 3, "1f1b", tol, wide);
  check_layout(toml, ref, {2, 2, 1}, 3, "1f1b", tol, wide);
  check_layout(toml, ref, {2, 2, 2}, 3, "1f1b", tol, {"model.vocab_size=512", "train.recompute=full"});
  // Interleaved (6 blocks: 9 layers over 2 stages x 2 chunks), and ZeRO-2's
  // tied gradient by reduce-scatter on the same model.
  const std::vector<std::string> deep{"model.vocab_size=512", "model.n_layer=6"};
  const Run ref_deep = reference(toml, deep);
  check_layout(toml, ref_deep, {2, 1, 2}, 3, "interleaved/2", tol, deep);
  check_layout(toml, ref, {2, 1, 2}, 2, "1f1b", tol, wide);
  std::vector<std::string> bf16 = wide;
  bf16.push_back("train.precision=bf16");
  const Run ref16 = reference(toml, bf16);
  const Tolerance tol16{2e-3, 0.06, 2e-2};
  check_layout(toml, ref16, {2, 1, 1}, 3, "1f1b", tol16, bf16);
  check_layout(toml, ref16, {2, 1, 2}, 3, "1f1b", tol16, bf16);
  check_layout(toml, ref16, {2, 2, 1}, 3, "1f1b", tol16, bf16);
}

TEST_CASE("ZeRO-3 prefetch: every gather but the step's first is prefetched or still held, across operations") {
  // Within a pass each layer starts the next one's gather; the last layer of
  // a forward or backward starts the gather of the layer the step's next
  // operation begins with (interleaved: another chunk's). The windows all fit
  // every unit here (vocabulary 64), so the step's first gather is the only
  // one a layer waits for in full (the update leaves the windows stale).
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const int rank = world_rank();
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 4) return;
  struct Case {
    Layout layout;
    std::string schedule;
    int accum;
  };
  for (const Case& c : std::vector<Case>{{{2, 1, 1}, "1f1b", 2}, {{2, 1, 2}, "1f1b", 2}, {{2, 1, 2}, "interleaved", 2},
                                         {{2, 1, 2}, "gpipe", 2}}) {
    const int n = c.layout.world();
    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank < n ? 0 : MPI_UNDEFINED, rank, &sub);
    if (rank < n) {
      std::vector<std::string> sets{"model.n_layer=6", fmt::format("parallel.dp={}", c.layout.dp),
                                    fmt::format("parallel.pp={}", c.layout.pp), "parallel.zero=3",
                                    "parallel.schedule=" + c.schedule, fmt::format("train.grad_accum={}", c.accum)};
      if (c.schedule == "interleaved") sets.push_back("parallel.virtual_stages=2");
      const Config cfg = parse_config(toml, "layouts.toml", sets, n);
      Mesh mesh(MeshLayout{c.layout.dp, c.layout.tp, c.layout.pp}, MpiCommOptions{}, sub);
      Trainer t(cfg, mesh_groups(mesh), [](const std::string&) {});
      const int steps = 3;
      for (int s = 0; s < steps; ++s) t.train_step(s);
      CAPTURE(c.layout.str());
      CAPTURE(c.schedule);
      CAPTURE(rank);
      CHECK(t.zero()->demand_gathers() == steps);
      if (rank == 0)
        MESSAGE(fmt::format("{} {}: {} gathers waited for in full in {} steps", c.layout.str(), c.schedule,
                            t.zero()->demand_gathers(), steps));
      MPI_Comm_free(&sub);
    }
    quiet_barrier();
  }
}

TEST_CASE("ZeRO: a misplaced reduce-scatter or all-gather shard is caught by the comparison") {
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const Run ref = reference(toml);
  const int rank = world_rank();
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 2) return;
  for (int zero : {1, 2, 3})
    for (int broken : {1, 2}) {
      MPI_Comm sub;
      MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &sub);
      if (rank < 2) {
        const Config cfg = parse_config(toml, "layouts.toml",
                                        {"parallel.dp=2", fmt::format("parallel.zero={}", zero), "train.grad_accum=2"}, 2);
        Mesh mesh(MeshLayout{2, 1, 1}, MpiCommOptions{}, sub);
        TrainerOptions opts;
        opts.zero_break = broken;
        const Run run = train(cfg, mesh_groups(mesh), opts);
        double worst = 0;
        for (size_t s = 0; s < ref.losses.size(); ++s)
          worst = std::max(worst, std::abs(run.losses[s] - ref.losses[s]) / std::abs(ref.losses[s]));
        CAPTURE(zero);
        CAPTURE(broken);
        CHECK(!(worst <= 1e-5));  // the equivalence check would fail (NaN counts as failing)
        if (rank == 0)
          MESSAGE(fmt::format("ZeRO-{} with a broken {}: worst loss difference {:.3g} relative", zero,
                              broken == 1 ? "reduce-scatter" : zero == 3 ? "parameter gather" : "all-gather", worst));
        MPI_Comm_free(&sub);
      }
      quiet_barrier();
    }
}

TEST_CASE("ZeRO memory per rank: the gradient and optimizer bytes fall as 1/dp, as the cost model counts them") {
  // A deeper GPT than the layout tests' so that the shard, not the two
  // layer windows, dominates. Predicted: ZeRO-2 holds ceil(P/dp) gradients +
  // two windows of the largest layer's (Cost::params, less the tied wte the
  // embedding keeps whole) + the tied wte's step gradient; ZeRO-1 the full
  // buffer + the shard; both a 1/dp share of the optimizer's states. ZeRO-3
  // holds the gradients of ZeRO-2 and, for parameters, the master shard (the
  // tied wte's 1/dp share included: no copy of it stays) + two gather
  // windows: the widest unit (every parameter a layer reads; the head's is
  // wte) and the widest of the units reading no tied parameter (fp32: all 4
  // bytes), the bytes lib/parallel's cost model predicts for the candidate.
  // Vocabulary 64: a block is the widest unit; 512: the embedding is (as in
  // GPT-2, where wte is the largest tensor).
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const int rank = world_rank();
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 4) return;
  for (int vocab : {64, 512}) {
    std::map<std::pair<int, int>, double> grads, params;  // (dp, zero) -> bytes on rank 0
    double windows = 0, tied = 0;  // ZeRO-3's two windows (elements), the tied wte's elements
    std::map<int, double> shards;  // dp -> rank 0's shard (elements)
    for (int dp : {1, 2, 4})
      for (int zero : {0, 1, 2, 3}) {
        MPI_Comm sub;
        MPI_Comm_split(MPI_COMM_WORLD, rank < dp ? 0 : MPI_UNDEFINED, rank, &sub);
        if (rank < dp) {
          const Config cfg = parse_config(toml, "layouts.toml",
                                          {"model.n_layer=8", fmt::format("model.vocab_size={}", vocab),
                                           fmt::format("parallel.dp={}", dp), fmt::format("parallel.zero={}", zero),
                                           fmt::format("train.grad_accum={}", 4 / dp)}, dp);
          Mesh mesh(MeshLayout{dp, 1, 1}, MpiCommOptions{}, sub);
          Trainer t(cfg, mesh_groups(mesh), [](const std::string&) {});
          Model& m = t.model();
          const double P = static_cast<double>(m.params.flat_numel());
          double largest = 0, opt = 0, wide = 0, narrow = 0;
          tied = 0;
          for (const auto& p : m.params.all())
            if (p->tied) tied += static_cast<double>(p->numel());
          const std::vector<Cost> costs = m.layer_costs(2);
          for (size_t i = 0; i < m.layers.size(); ++i) {
            largest = std::max(largest, static_cast<double>(costs[i].params) - (i == 0 ? tied : 0.0));
            const bool head = i + 1 == m.layers.size();  // reads wte, which the embedding's Cost counts
            const double unit = static_cast<double>(costs[i].params) + (head ? tied : 0.0);
            wide = std::max(wide, unit);
            if (i != 0 && !head) narrow = std::max(narrow, unit);
          }
          for (const auto& [name, s] : t.optimizer().state()) opt += static_cast<double>(s.numel());
          const double shard = std::ceil(P / (16.0 * dp)) * 16;  // rank 0's range (16-element multiples)
          CAPTURE(vocab);
          CAPTURE(dp);
          CAPTURE(zero);
          const int stage = dp > 1 ? zero : 0;
          CHECK(t.zero_stage() == stage);
          if (stage == 0) {
            CHECK(m.params.grads().numel() == P);
            CHECK(opt == 2 * P);
            if (rank == 0) grads[{dp, zero}] = 4 * P, params[{dp, zero}] = 4 * P;
          } else {
            CHECK(opt == 2 * shard);
            CHECK(t.optimizer_range().end - t.optimizer_range().begin == shard);
            const double want = stage == 1 ? 4 * (P + shard) : 4 * (shard + 2 * largest + tied);
            CHECK(t.zero()->grad_bytes() == doctest::Approx(want).epsilon(0.01));
            if (stage >= 2) CHECK(!m.params.grads().defined());  // the full buffer is gone
            if (stage == 3) {
              CHECK(!m.params.values().defined());  // so are the full masters
              // and every compute copy, the tied wte's too: gathered at its layers' turns only
              for (const auto& p : m.params.all())
                if (p->trainable) CHECK(!p->compute.defined());
              // Exactly (C = 32: no alignment padding): a resident wte would add 4 x tied.
              CHECK(t.zero()->param_bytes() == 4 * (shard + wide + narrow));
              // The cost model's prediction for this candidate (fp32, AdamW).
              const ModelProfile mp = profile_model(cfg.model, train_seq_len(cfg), 1);
              Workload w;
              w.global_batch = cfg.train.global_batch;
              Candidate c;
              c.dp = dp;
              c.micro_batch = cfg.train.micro_batch;
              c.micro_batches = cfg.train.grad_accum;
              c.zero = 3;
              const Prediction pr = predict(mp, profile_stages(mp, 1), load_hardware("cpu-local"), w, Features::this_trainer(), c);
              CHECK(t.zero()->param_bytes() == doctest::Approx(pr.memory.params).epsilon(0.001));
              CHECK(t.zero()->grad_bytes() == doctest::Approx(pr.memory.grads).epsilon(0.01));
              if (rank == 0)
                MESSAGE(fmt::format("vocabulary {} ZeRO-3 dp {}: parameter bytes {:.0f} (cost model {:.0f}; shard {:.0f} "
                                    "+ windows {:.0f} + {:.0f}; tied wte {:.0f}), gradient bytes {:.0f} (cost model {:.0f})",
                                    vocab, dp, t.zero()->param_bytes(), pr.memory.params, 4 * shard, 4 * wide,
                                    4 * narrow, 4 * tied, t.zero()->grad_bytes(), pr.memory.grads));
              windows = wide + narrow;
              shards[dp] = shard;
            }
            if (rank == 0) grads[{dp, zero}] = t.zero()->grad_bytes(), params[{dp, zero}] = t.zero()->param_bytes();
          }
          MPI_Comm_free(&sub);
        }
        quiet_barrier();
      }
    if (rank == 0) {
      CAPTURE(vocab);
      // ZeRO-2's gradient bytes less the fixed windows and tied wte halve from dp 2 to 4.
      const double fixed = grads[{2, 2}] - 2 * (grads[{2, 2}] - grads[{4, 2}]);
      CHECK(grads[{4, 2}] < grads[{2, 2}]);
      CHECK(grads[{2, 2}] < grads[{1, 0}]);
      CHECK((grads[{2, 2}] - fixed) / (grads[{4, 2}] - fixed) == doctest::Approx(2.0).epsilon(0.01));
      // ZeRO-3: the same for the gradients; the parameters less the two
      // windows are the 1/dp shard of every parameter, wte included: their
      // fixed part is the windows alone (a resident wte would add 4 x tied).
      CHECK(grads[{2, 3}] == grads[{2, 2}]);
      CHECK(grads[{4, 3}] == grads[{4, 2}]);
      const double pfixed = params[{2, 3}] - 2 * (params[{2, 3}] - params[{4, 3}]);
      CHECK(params[{4, 3}] < params[{2, 3}]);
      CHECK(params[{2, 3}] < params[{1, 0}]);
      CHECK(params[{2, 2}] == params[{1, 0}]);  // ZeRO-2 keeps every parameter
      CHECK((params[{2, 3}] - pfixed) / (params[{4, 3}] - pfixed) == doctest::Approx(2.0).epsilon(0.01));
      CHECK(pfixed == doctest::Approx(4 * windows).epsilon(0.01));
      CHECK(std::abs(pfixed - 4 * windows) < 4 * tied / 2);
      for (int dp : {2, 4}) CHECK(params[{dp, 3}] - 4 * windows == 4 * shards[dp]);
      MESSAGE(fmt::format("vocabulary {}: gradient bytes per rank: dp 1 {:.0f}; ZeRO-1 dp 2 {:.0f}, dp 4 {:.0f}; ZeRO-2 dp 2 "
                          "{:.0f}, dp 4 {:.0f}", vocab, grads[{1, 0}], grads[{2, 1}], grads[{4, 1}], grads[{2, 2}],
                          grads[{4, 2}]));
      MESSAGE(fmt::format("vocabulary {}: parameter bytes per rank: dp 1 {:.0f}; ZeRO-3 dp 2 {:.0f}, dp 4 {:.0f} (fixed: "
                          "the two windows {:.0f}; the tied wte {:.0f} is sharded)", vocab, params[{1, 0}],
                          params[{2, 3}], params[{4, 3}], pfixed, 4 * tied));
    }
  }
}

TEST_CASE("interleaved 1F1B: pp 2 and 4 with 2 model chunks per stage, with dp and tp, train like one process") {
  // Six blocks: 9 top-level layers, enough for 4 stages x 2 chunks.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const std::vector<std::string> deep{"model.n_layer=6"};
  const Run ref = reference(toml, deep);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const Tolerance tol{1e-5, 5e-5, 1.0};
  for (const Layout& l : std::vector<Layout>{{1, 1, 2}, {1, 1, 4}, {2, 1, 2}, {1, 2, 2}, {2, 2, 2}})
    if (l.world() <= world) check_layout(toml, ref, l, 0, "interleaved/2", tol, deep);
  if (world >= 4) check_layout(toml, ref, {1, 1, 2}, 0, "interleaved/3", tol, deep);
  // ZeRO-1/2/3 over the chunks (their shards are ranges of the owner's one
  // flat buffer; ZeRO-2/3 windows and gathers per layer of each chunk).
  if (world >= 4)
    for (int zero : {1, 2, 3}) check_layout(toml, ref, {2, 1, 2}, zero, "interleaved/2", tol, deep);
  // The CNN's chunks change shape (channels, resolution) between them.
  const std::string cnn = cnn_toml(data.dir);
  const Run cnn_ref = reference(cnn);
  if (world >= 2) check_layout(cnn, cnn_ref, {1, 1, 2}, 0, "interleaved/2");
  // bf16 within the bf16 tolerance (see the bf16 test above).
  std::vector<std::string> bf16 = deep;
  bf16.push_back("train.precision=bf16");
  const Run ref16 = reference(toml, bf16);
  if (world >= 4) check_layout(toml, ref16, {1, 1, 4}, 0, "interleaved/2", Tolerance{2e-3, 0.06, 2e-2}, bf16);
}

TEST_CASE("interleaved 1F1B: a broken chunk assignment is caught by the comparison") {
  // Stage s holding virtual stages s*v .. s*v+v-1 (contiguous) instead of
  // s, s+p, ...: the same shapes flow, the layers run out of order.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const std::vector<std::string> deep{"model.n_layer=6"};
  const Run ref = reference(toml, deep);
  const int rank = world_rank();
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 2) return;
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &sub);
  if (rank < 2) {
    std::vector<std::string> sets = deep;
    for (const char* s : {"parallel.pp=2", "parallel.schedule=interleaved", "parallel.virtual_stages=2"})
      sets.push_back(s);
    const Config cfg = parse_config(toml, "layouts.toml", sets, 2);
    Mesh mesh(MeshLayout{1, 1, 2}, MpiCommOptions{}, sub);
    TrainerOptions opts;
    opts.chunk_break = true;
    const Run run = train(cfg, mesh_groups(mesh), opts);
    REQUIRE(run.losses.size() == ref.losses.size());
    double worst = 0;
    for (size_t s = 0; s < ref.losses.size(); ++s)
      worst = std::max(worst, std::abs(run.losses[s] - ref.losses[s]) / std::abs(ref.losses[s]));
    CHECK(!(worst <= 1e-5));  // the equivalence check would fail (NaN counts as failing)
    if (rank == 0) MESSAGE(fmt::format("interleaved with a broken chunk assignment: worst loss difference {:.3g}", worst));
    MPI_Comm_free(&sub);
  }
  quiet_barrier();
}

TEST_CASE("one layout combining them all: dp 2 x tp 2 x pp 2, ZeRO-3, sequence parallel, interleaved v = 2") {
  // Every feature of issue 12 at once on 8 ranks (and full recomputation),
  // in fp32 within the fp32 tolerance and in bf16 within bf16's.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 8) return;
  std::vector<std::string> sets{"model.n_layer=6", "parallel.sequence_parallel=true"};
  const Run ref = reference(toml, {"model.n_layer=6"});
  check_layout(toml, ref, {2, 2, 2}, 3, "interleaved/2", Tolerance{1e-5, 5e-5, 1e-5}, sets);
  sets.push_back("train.recompute=full");
  check_layout(toml, ref, {2, 2, 2}, 2, "interleaved/2", Tolerance{1e-5, 5e-5, 1e-5}, sets);
  sets.back() = "train.precision=bf16";
  const Run ref16 = reference(toml, {"model.n_layer=6", "train.precision=bf16"});
  check_layout(toml, ref16, {2, 2, 2}, 3, "interleaved/2", Tolerance{2e-3, 0.06, 2e-2}, sets);
}

TEST_CASE("GPT sequence parallel: tp 2 and 4, dp 2 x tp 2, tp 2 x pp 2 train like one process") {
  // parallel.sequence_parallel splits the norms, dropouts and residual stream
  // along the sequence (dropout 0.1: every rank must draw the one-process
  // masks of its slice); the layer norms' gradients are all-reduced over tp.
  // The same fp32 tolerance as every layout; recomputation (selective, full)
  // re-runs the gathers and scatters.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const Run ref = reference(toml);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const std::vector<std::string> sp{"parallel.sequence_parallel=true"};
  for (const Layout& l : std::vector<Layout>{{1, 2, 1}, {1, 4, 1}, {2, 2, 1}, {1, 2, 2}})
    if (l.world() <= world) check_layout(toml, ref, l, 0, "1f1b", {}, sp);
  for (const char* mode : {"selective", "full"}) {
    std::vector<std::string> sets = sp;
    sets.push_back(fmt::format("train.recompute={}", mode));
    if (world >= 4) check_layout(toml, ref, {1, 2, 2}, 0, "1f1b", {}, sets);
  }
  // GPipe over 3 stages: every stage keeps all 4 micro-batches in flight,
  // sharing one set of the blocks' (and sequence parallelism's) buffers; what
  // each sends is its own (the step loop refuses to send a shared buffer).
  if (world >= 6) {
    const std::vector<std::string> wide{"model.vocab_size=512"};
    std::vector<std::string> sets = sp;
    sets.push_back(wide[0]);
    check_layout(toml, reference(toml, wide), {1, 2, 3}, 0, "gpipe", {}, sets);
  }
  // bf16, within the bf16 layouts' tolerance (see the bf16 case above).
  const std::vector<std::string> bf16{"train.precision=bf16"};
  const Run ref16 = reference(toml, bf16);
  std::vector<std::string> sets = bf16;
  sets.push_back(sp[0]);
  for (const Layout& l : std::vector<Layout>{{1, 2, 1}, {2, 2, 2}})
    if (l.world() <= world) check_layout(toml, ref16, l, 0, "1f1b", Tolerance{2e-3, 0.06, 2e-2}, sets);
}

TEST_CASE("LLaMA's parts (RMSNorm, SwiGLU, rope, no biases, untied head): tp, pp, dp x tp x pp, sequence parallel, interleaved, ZeRO-3, bf16 train like one process") {
  // The SwiGLU's fused gate | up rows split per tp rank as Q | K | V are; the
  // rotary angles by position in the whole sequence (sequence parallelism
  // gathers it before the attention); RMSNorm's weight gradients all-reduced
  // over tp under sequence parallelism as LayerNorm's are; the untied head's
  // lm_head.weight split by vocabulary as wte is, with no gradient sum between
  // the first and last pipeline stages.
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const std::vector<std::string> llama{"model.norm=rmsnorm", "model.mlp=swiglu", "model.position=rope",
                                       "model.rope_theta=500", "model.bias=false", "model.ffn_hidden=48",
                                       "model.tie_embeddings=false"};
  const Run ref = reference(toml, llama);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (const Layout& l : std::vector<Layout>{{1, 2, 1}, {1, 1, 2}, {2, 2, 2}, {1, 4, 1}})
    if (l.world() <= world) check_layout(toml, ref, l, 0, "1f1b", {}, llama);
  std::vector<std::string> sp = llama;
  sp.push_back("parallel.sequence_parallel=true");
  sp.push_back("train.recompute=selective");
  if (world >= 4) check_layout(toml, ref, {1, 2, 2}, 0, "1f1b", {}, sp);
  sp.back() = "train.recompute=full";
  if (world >= 8) check_layout(toml, ref, {2, 2, 2}, 3, "interleaved/2", {}, sp);
  // bf16, within the bf16 layouts' tolerance (see "GPT in bf16" above).
  std::vector<std::string> bf16 = llama;
  bf16.push_back("train.precision=bf16");
  const Run ref16 = reference(toml, bf16);
  for (const Layout& l : std::vector<Layout>{{1, 2, 1}, {2, 2, 2}})
    if (l.world() <= world) check_layout(toml, ref16, l, 0, "1f1b", Tolerance{2e-3, 0.06, 2e-2}, bf16);
}

TEST_CASE("LLaMA with grouped-query attention (4 query heads, 2 key/value heads): tp, pp, dp x tp x pp, sequence parallel, ZeRO-3, bf16 train like one process") {
  // qkv's rows are Q | K | V blocks of unequal widths (C, C/2, C/2), each
  // split per tp rank, so that a rank's query heads find their key/value head
  // on the same rank (tp 2: one key/value head and its two query heads each).
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const std::vector<std::string> gqa{"model.norm=rmsnorm", "model.mlp=swiglu", "model.position=rope",
                                     "model.rope_theta=500", "model.bias=false", "model.ffn_hidden=48",
                                     "model.tie_embeddings=false", "model.n_kv_head=2"};
  const Run ref = reference(toml, gqa);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (const Layout& l : std::vector<Layout>{{1, 2, 1}, {1, 1, 2}, {2, 2, 2}})
    if (l.world() <= world) check_layout(toml, ref, l, 0, "1f1b", {}, gqa);
  std::vector<std::string> sp = gqa;
  sp.push_back("parallel.sequence_parallel=true");
  sp.push_back("train.recompute=selective");
  if (world >= 4) check_layout(toml, ref, {1, 2, 2}, 0, "1f1b", {}, sp);
  if (world >= 8) check_layout(toml, ref, {2, 2, 2}, 3, "interleaved/2", {}, gqa);
  std::vector<std::string> bf16 = gqa;
  bf16.push_back("train.precision=bf16");
  const Run ref16 = reference(toml, bf16);
  if (world >= 2) check_layout(toml, ref16, {1, 2, 1}, 0, "1f1b", Tolerance{2e-3, 0.06, 2e-2}, bf16);
}

// One step of tp 2 on the first two ranks, recorded: the activation bytes
// (measured: the heap's growth while the buffers were planned; predicted:
// Cost::act_bytes), and the tp group's collectives as wire bytes per rank
// (ring algorithms: an all-reduce of N bytes sends 2 (t-1)/t N, an
// all-gather or reduce-scatter of N bytes in all (t-1)/t N).
struct TpRecord {
  double plan_bytes = 0, predicted_act = 0, wire = 0, payload_cost = 0, regather_cost = 0;
  std::map<std::string, double> payload;  // by operation
};

TpRecord record_tp2(const std::string& toml, const std::vector<std::string>& sets, MPI_Comm sub) {
  std::vector<std::string> all = sets;
  for (const char* s : {"parallel.tp=2", "model.n_layer=6"}) all.push_back(s);
  const Config cfg = parse_config(toml, "layouts.toml", all, 2);
  Mesh mesh(MeshLayout{1, 2, 1}, MpiCommOptions{}, sub);
  Profiler prof(true);
  RecordedGroups rec(mesh_groups(mesh), prof);
  TrainerOptions opts;
  opts.profiler = &prof;
  Trainer t(cfg, rec.groups(), [](const std::string&) {}, opts);
  t.train_step(0);
  TpRecord r;
  r.plan_bytes = prof.plan_bytes();
  const Cost c = t.model().cost(cfg.train.micro_batch);
  // The cost model's activation bytes: every layer's act_bytes, the blocks'
  // work buffers once (they share one set), the other layers' their own, and
  // the model-wide slots once (Cost::shared_bytes).
  {
    const Model& m = t.model();
    double block_work = 0, slots = 0;
    const std::vector<Cost> costs = m.layer_costs(cfg.train.micro_batch);
    for (size_t i = 0; i < costs.size(); ++i) {
      r.predicted_act += static_cast<double>(costs[i].act_bytes);
      slots = std::max(slots, static_cast<double>(costs[i].shared_bytes));
      if (i < m.layers.size() && m.layers[i]->name().rfind("blocks.", 0) == 0)
        block_work = std::max(block_work, static_cast<double>(costs[i].work_bytes));
      else
        r.predicted_act += static_cast<double>(costs[i].work_bytes);
    }
    r.predicted_act += block_work + slots;
  }
  const auto accum = static_cast<double>(cfg.train.grad_accum);
  // What the run sends (no recomputation: the regather too).
  r.payload_cost = static_cast<double>(c.tp_fwd_bytes + c.tp_bwd_bytes + c.tp_regather_bytes) * accum;
  r.regather_cost = static_cast<double>(c.tp_regather_bytes) * accum;
  for (const TraceEvent& e : prof.events()) {
    if (e.stream != TraceEvent::Stream::comm || e.name.rfind("tp ", 0) != 0) continue;
    const std::string op = e.name.substr(3);
    r.payload[op] += e.bytes;
    r.wire += (op == "all_reduce" ? 2.0 : 1.0) * 0.5 * e.bytes;  // t = 2
  }
  return r;
}

TEST_CASE("GPT sequence parallel: tp 2 keeps fewer activation bytes, moves plain tp's bytes and the regather") {
  Data data;
  const std::string toml = gpt_toml(data.dir);
  const int rank = world_rank();
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &sub);
  if (rank < 2) {
    const TpRecord plain = record_tp2(toml, {}, sub);
    const TpRecord sp = record_tp2(toml, {"parallel.sequence_parallel=true"}, sub);
    // Activations: the cost model predicts the fall (norm inputs and
    // outputs and dropout masks halved, the products' gathered inputs in the
    // blocks' shared work buffers), and the planned buffers fall.
    CAPTURE(plain.plan_bytes);
    CAPTURE(sp.plan_bytes);
    CAPTURE(plain.predicted_act);
    CAPTURE(sp.predicted_act);
    CHECK(sp.predicted_act < plain.predicted_act);
    CHECK(sp.plan_bytes < plain.plan_bytes);
    // Each run's planned bytes against the cost model's: within 8% at this
    // tiny size (the GPT-2 124M profile agrees within 1% without sequence
    // parallelism; the few KB left here, about 5%, are not accounted for yet).
    CHECK(std::abs(plain.plan_bytes - plain.predicted_act) <= 0.08 * plain.plan_bytes);
    CHECK(std::abs(sp.plan_bytes - sp.predicted_act) <= 0.08 * sp.plan_bytes);
    // Bytes: every all-reduce of plain tp became an all-gather + reduce-scatter
    // pair of the same payload, so the wire bytes are equal, but for the
    // layer norms' gradient all-reduce (once per step: 13 norms x (w, b) x C
    // fp32) and the backward's second all-gather of each product's input
    // (each block's qkv and fc: 2 x B T C fp32 per micro-batch; the cost
    // model counts it as half an all-reduce of its bytes, which at t = 2 is
    // its wire bytes).
    const double ln_sync = 13 * 2 * 32 * 4;
    const double regather = 6 * 2 * (2 * 16 * 32 * 4) * 0.5 * 4;  // 6 blocks, 4 micro-batches
    CAPTURE(plain.wire);
    CAPTURE(sp.wire);
    CHECK(sp.payload.at("all_reduce") < plain.payload.at("all_reduce"));
    CHECK(sp.payload.at("all_gather") == sp.payload.at("reduce_scatter") + 2 * regather);
    CHECK(sp.wire == doctest::Approx(plain.wire + ln_sync + regather).epsilon(1e-12));
    // The cost model's tp bytes (all-reduce equivalents) agree between the
    // two but for the regather, which it counts as such.
    CHECK(plain.regather_cost == 0);
    CHECK(sp.regather_cost == regather);
    CHECK(sp.payload_cost == plain.payload_cost + sp.regather_cost);
    if (rank == 0)
      MESSAGE(fmt::format("tp 2, one step: activations planned {:.0f} -> {:.0f} bytes (predicted {:.0f} -> {:.0f}); "
                          "tp wire bytes per rank {:.0f} (plain: all-reduce payload {:.0f}) -> {:.0f} (all-gather {:.0f} + "
                          "reduce-scatter {:.0f} + all-reduce {:.0f}); cost-model tp bytes {:.0f} and {:.0f}",
                          plain.plan_bytes, sp.plan_bytes, plain.predicted_act, sp.predicted_act, plain.wire,
                          plain.payload.at("all_reduce"), sp.wire, sp.payload.at("all_gather"),
                          sp.payload.at("reduce_scatter"), sp.payload.at("all_reduce"), plain.payload_cost,
                          sp.payload_cost));
    MPI_Comm_free(&sub);
  }
  quiet_barrier();
}

TEST_CASE("dtrain run's memory check: the cost model's memory for each layout is what its ranks allocate") {
  // What `dtrain run` compares with the device's free memory before it builds
  // anything (parallel/auto_layout.h: predict_layout) against what the
  // trainer then holds on its fullest rank: parameters, gradients, optimizer
  // state and the activations it plans (the heap's growth while it plans
  // them, as `dtrain profile` measures). The GPT's within 3% on every layout
  // and mode (measured: -1.7% to 0%: the heap's own bookkeeping, and fp32
  // statistics and scratch the model counts at bf16's half).
  Data data;
  const int rank = world_rank();
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const std::vector<std::string> bigger{"model.n_layer=4",      "model.n_embd=128",      "model.vocab_size=256",
                                        "model.context_length=128", "train.micro_batch=4", "train.global_batch=16",
                                        "model.dropout=0.0"};
  const std::vector<std::string> llama{"model.norm=\"rmsnorm\"", "model.mlp=\"swiglu\"", "model.position=\"rope\"",
                                       "model.bias=false",       "model.ffn_hidden=344", "model.tie_embeddings=false",
                                       "model.n_kv_head=2"};
  // The CNN's CPU kernels hold scratch that stops growing once each thread
  // has its share, which the cost model counts in full (as at a large
  // micro-batch): at 4 images of 8 x 8 that is most of the activations (+145%),
  // at these 64 +6.6%.
  const std::vector<std::string> cnn_bigger{"model.stem_channels=16", "model.channels=[16, 32]",
                                            "train.micro_batch=64", "train.global_batch=128"};
  struct Case {
    bool cnn;
    MeshLayout l;
    std::vector<std::string> sets;
  };
  const std::vector<Case> cases{
      {false, {1, 1, 1}, {}},
      {false, {1, 1, 1}, {"train.precision=\"bf16\"", "train.recompute=\"full\""}},
      {false, {1, 1, 1}, {"train.recompute=\"selective\""}},
      {false, {1, 1, 1}, {"llama", "train.precision=\"bf16\""}},
      {true, {1, 1, 1}, {}},
      {false, {2, 1, 1}, {"parallel.zero=1"}},
      {false, {2, 1, 1}, {"parallel.zero=1", "train.precision=\"bf16\""}},
      {false, {2, 1, 1}, {"parallel.zero=2", "train.precision=\"bf16\""}},
      {false, {2, 1, 1}, {"parallel.zero=3", "train.precision=\"bf16\""}},
      {false, {1, 2, 1}, {"parallel.sequence_parallel=true"}},
      {false, {1, 2, 1}, {"llama", "parallel.sequence_parallel=true", "train.recompute=\"full\""}},
      {false, {1, 1, 2}, {"train.micro_batch=2"}},
      {false, {1, 1, 2}, {"parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2", "train.micro_batch=2"}},
      {true, {2, 1, 2}, {"train.micro_batch=32"}},
      {false, {2, 2, 2},
       {"parallel.zero=2", "parallel.sequence_parallel=true", "train.recompute=\"full\"", "train.precision=\"bf16\"",
        "train.micro_batch=2"}},
  };
  for (const Case& k : cases) {
    const int n = k.l.dp * k.l.tp * k.l.pp;
    if (n > world) continue;
    std::vector<std::string> sets = k.cnn ? cnn_bigger : bigger;
    for (const std::string& s : k.sets)
      if (s == "llama")
        sets.insert(sets.end(), llama.begin(), llama.end());
      else
        sets.push_back(s);
    for (const auto& [key, v] : {std::pair{"dp", k.l.dp}, {"tp", k.l.tp}, {"pp", k.l.pp}})
      sets.push_back(fmt::format("parallel.{}={}", key, v));
    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank < n ? 0 : MPI_UNDEFINED, rank, &sub);
    if (rank < n) {
      const Config cfg = parse_config(k.cnn ? cnn_toml(data.dir) : gpt_toml(data.dir), "layouts.toml", sets, n);
      Mesh mesh(k.l, MpiCommOptions{}, sub);
      Profiler prof;
      TrainerOptions opts;
      opts.profiler = &prof;
      Trainer t(cfg, mesh_groups(mesh), [](const std::string&) {}, opts);
      Model& m = t.model();
      double held = t.zero() ? t.zero()->param_bytes() + t.zero()->grad_bytes()
                             : static_cast<double>(m.params.values().bytes() + m.params.grads().bytes() +
                                                   (m.params.mixed() ? m.params.compute_values().bytes() : 0));
      for (const auto& [name, s] : t.optimizer().state()) held += static_cast<double>(s.bytes());
      held += prof.plan_bytes();
      if (t.zero() && t.zero()->stage() < 3 && cfg.train.precision == "bf16") {
        // ZeRO-1/2 under bf16 keep the fp32 masters of their range only (the
        // whole bf16 copy stays): 4/dp + 2 bytes a parameter, not 6.
        CHECK(!m.params.values().defined());
        const auto count = static_cast<double>(t.zero()->range().end - t.zero()->range().begin);
        CHECK(t.zero()->param_bytes() == 4 * count + 2 * static_cast<double>(m.params.flat_numel()));
        CHECK(count < 0.6 * static_cast<double>(m.params.flat_numel()));
      }
      double fullest = 0;
      MPI_Allreduce(&held, &fullest, 1, MPI_DOUBLE, MPI_MAX, sub);
      const std::optional<Prediction> p = predict_layout(cfg, load_hardware("cpu-local"));
      CAPTURE(fmt::format("{}", fmt::join(sets, " ")));
      REQUIRE(p);
      CHECK(p->c.devices() == n);
      // Never short by more than 3% (a run the check passes must not run out);
      // the CNN over by its kernels' saturated scratch (above), up to 10%.
      const double ratio = p->memory.total() / fullest;
      CHECK(ratio > 0.97);
      CHECK(ratio < (k.cnn ? 1.10 : 1.03));
      if (rank == 0)
        MESSAGE(fmt::format("{} {}x{}x{} {}: predicted {:.0f} bytes, held {:.0f} on the fullest rank ({:+.2f}%)",
                            k.cnn ? "cnn" : "gpt", k.l.dp, k.l.tp, k.l.pp, fmt::join(k.sets, " "), p->memory.total(),
                            fullest, 100 * (p->memory.total() / fullest - 1)));
      MPI_Comm_free(&sub);
    }
    quiet_barrier();
  }
}
