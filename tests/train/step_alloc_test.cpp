// "Everything allocated in plan(), nothing in a step": every tensor's storage
// comes from one place (Storage: std::aligned_alloc on the CPU, gpu::malloc
// on a GPU), and layers plan their buffers once whatever the device. This
// binary interposes aligned_alloc and counts the calls made for a tensor's
// Storage (the caller, found with dladdr: test_train exports its symbols)
// while steps and evaluations run on one process: GPT and CNN, fp32 and
// bf16, recomputation, SGD. (The CPU kernels' own scratch, e.g. the sgemm's
// packing buffers, is not device memory and is not counted.) Runs in
// test_train, rank 0.
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "../data/data_files.h"
#include "checkpoint/session.h"
#include "config/config.h"
#include "dist/mesh_groups.h"
#include "train/trainer.h"

namespace {
std::atomic<long> g_storage_allocs{0};  // test instrumentation, this binary only
std::atomic<long> g_storage_bytes{0};

bool for_storage() {
  void* frames[4];
  const int n = backtrace(frames, 4);
  for (int i = 1; i < n; ++i) {
    Dl_info d;
    if (dladdr(frames[i], &d) && d.dli_sname &&
        (std::strstr(d.dli_sname, "_ZN6dtrain7StorageC") || std::strstr(d.dli_sname, "_ZN6dtrain6Tensor5empty")))
      return true;
  }
  return false;
}
}  // namespace

// Every aligned_alloc of the process comes here; memalign does the work (not
// aligned_alloc: no recursion).
extern "C" void* aligned_alloc(size_t alignment, size_t size) {
  if (for_storage()) {
    g_storage_allocs.fetch_add(1, std::memory_order_relaxed);
    g_storage_bytes.fetch_add(static_cast<long>(size), std::memory_order_relaxed);
  }
  return memalign(alignment, size);
}

using namespace dtrain;
using namespace dtrain::testing;

namespace {

std::string gpt(const std::string& dir) {
  return fmt::format(R"(
[model]
type = "gpt"
vocab_size = 64
context_length = 16
n_layer = 2
n_head = 2
n_embd = 16
dropout = 0.1
[data]
train = "{0}/tok_train.bin"
val = "{0}/tok_val.bin"
[train]
steps = 4
micro_batch = 2
grad_accum = 2
eval_every = 0
eval_batches = 2
threads = 1
[log]
out_dir = "{0}/out"
)", dir);
}

std::string cnn(const std::string& dir) {
  return fmt::format(R"(
[model]
type = "cnn"
in_channels = 1
image_size = 8
num_classes = 10
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
steps = 4
micro_batch = 4
grad_accum = 2
eval_every = 0
eval_batches = 2
threads = 1
[log]
out_dir = "{0}/out"
)", dir);
}

}  // namespace

TEST_CASE("steps allocate no tensor: all storage is planned before the first step") {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) return;  // one process is the case; the other ranks wait in the next test
  const std::string dir = "/tmp/dtrain_step_alloc_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::vector<uint16_t> tokens(3000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>((i * 5 + i / 7) % 64);
  write_bytes(dir + "/tok_train.bin", token_file(tokens));
  write_bytes(dir + "/tok_val.bin", token_file(std::vector<uint16_t>(tokens.begin(), tokens.begin() + 300)));
  write_images(dir + "/img_train", dir + "/lbl_train", 64, 1, 8, 8);
  write_images(dir + "/img_val", dir + "/lbl_val", 16, 1, 8, 8);
  struct Case {
    std::string model;
    std::vector<std::string> sets;
  };
  for (const Case& k : {Case{"gpt", {}}, Case{"gpt", {"train.precision=bf16"}},
                        Case{"gpt", {"train.recompute=full"}}, Case{"gpt", {"train.recompute=selective"}},
                        Case{"gpt", {"optim.name=sgd"}}, Case{"cnn", {}}, Case{"cnn", {"train.precision=bf16"}}}) {
    const Config cfg = parse_config(k.model == "gpt" ? gpt(dir) : cnn(dir), "alloc.toml", k.sets);
    Trainer t(cfg, [](const std::string&) {});
    const long planned = g_storage_allocs.load();
    CAPTURE(k.model);
    CAPTURE(k.sets.empty() ? std::string("fp32") : k.sets[0]);
    CHECK(planned > 0);  // the count sees the planning
    for (int64_t s = 0; s < cfg.train.steps; ++s) t.train_step(s);
    (void)t.evaluate();
    CHECK(g_storage_allocs.load() - planned == 0);
  }
  std::filesystem::remove_all(dir);
}

namespace {

void sleepy_barrier() {  // Open MPI's barrier polls; the ranks a case leaves out sleep instead
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0; !done;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// The gpt() config's token files in a directory `prefix` + the launcher's
// pid, shared by the ranks: rank 0 writes them, every rank waits.
std::string shared_tokens(const std::string& prefix) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string dir = prefix + std::to_string(::getppid());
  if (rank == 0) {
    std::filesystem::create_directories(dir);
    std::vector<uint16_t> tokens(3000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>((i * 5 + i / 7) % 64);
    write_bytes(dir + "/tok_train.bin", token_file(tokens));
    write_bytes(dir + "/tok_val.bin", token_file(std::vector<uint16_t>(tokens.begin(), tokens.begin() + 300)));
  }
  sleepy_barrier();
  return dir;
}

}  // namespace

// A ZeRO checkpoint is saved and loaded with nothing gathered: each rank
// writes and reads its own range of the optimizer state and masters
// (lib/checkpoint/session.cpp), so no tensor storage (device memory on a GPU,
// where the save's host copies are of the range alone) is allocated beyond a
// few bytes of flags. Until 2026-12-07 a save gathered the other ranks'
// shards whole: the count sees such a gather (gather_full_params). ZeRO-1/2/3
// in fp32 and bf16 on dp 2.
TEST_CASE("a ZeRO checkpoint's save and load allocate no tensor storage: nothing is gathered") {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 2) return;
  const std::string dir = shared_tokens("/tmp/dtrain_zero_save_");
  for (const std::string precision : {"fp32", "bf16"})
    for (int zero : {1, 2, 3}) {
      MPI_Comm sub;
      MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &sub);
      if (rank < 2) {
        CAPTURE(precision);
        CAPTURE(zero);
        const std::string ck = fmt::format("{}/ck_{}_{}", dir, precision, zero);
        const Config cfg = parse_config(gpt(dir), "alloc.toml",
                                        {"parallel.dp=2", fmt::format("parallel.zero={}", zero),
                                         fmt::format("train.precision=\"{}\"", precision),
                                         fmt::format("checkpoint.dir=\"{}\"", ck), "log.out_dir=\"" + ck + "_out\""},
                                        2);
        Mesh mesh(MeshLayout{2, 1, 1}, MpiCommOptions{}, sub);
        Trainer t(cfg, mesh_groups(mesh), [](const std::string&) {});
        t.train_step(0);
        const int64_t params = t.model().params.num_trainable();
        const long before = g_storage_bytes.load();
        const SaveResult saved = save_trainer(t, 1, SaveOptions{}, "0123456789abcdef");
        const long save_bytes = g_storage_bytes.load() - before;
        (void)restore_trainer(t, saved.dir);
        const long load_bytes = g_storage_bytes.load() - before - save_bytes;
        CHECK(save_bytes < 1024);
        CHECK(load_bytes < 1024);
        // The count sees a gather: the full fp32 masters, where they are sharded.
        if (zero == 3 || precision == "bf16") {
          const long g0 = g_storage_bytes.load();
          t.gather_full_params();
          t.release_full_params();
          CHECK(g_storage_bytes.load() - g0 >= params * 4);
        }
        t.train_step(1);  // the load's compute copy refreshed first (ZeRO-1/2 under bf16: gathered)
        if (rank == 0)
          MESSAGE(fmt::format("ZeRO-{} {}: the save allocated {} bytes of tensor storage, the load {} ({} parameters)",
                              zero, precision, save_bytes, load_bytes, params));
        MPI_Comm_free(&sub);
      }
      sleepy_barrier();
    }
  if (rank == 0) std::filesystem::remove_all(dir);
}

// A checkpoint loaded by ranges on dp 2: each replica reads its half of what
// it holds whole (the masters without ZeRO-3 or bf16 ZeRO-1/2, the optimizer
// state without ZeRO) and the replicas all-gather the rest before the next
// step, here in windows of 37 elements (many, and cut anywhere). The resumed
// trainer's next step is the writer's, bit for bit: loss and parameters.
TEST_CASE("a checkpoint loaded by ranges and gathered in windows continues bit for bit on dp 2") {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 2) return;
  const std::string dir = shared_tokens("/tmp/dtrain_range_load_");
  struct Case {
    int zero;
    std::string precision;
  };
  for (const Case& k : {Case{0, "fp32"}, Case{0, "bf16"}, Case{1, "fp32"}, Case{2, "bf16"}, Case{3, "fp32"}}) {
    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &sub);
    if (rank < 2) {
      CAPTURE(k.zero);
      CAPTURE(k.precision);
      const std::string ck = fmt::format("{}/ck_{}_{}", dir, k.zero, k.precision);
      const Config cfg = parse_config(gpt(dir), "alloc.toml",
                                      {"parallel.dp=2", fmt::format("parallel.zero={}", k.zero),
                                       fmt::format("train.precision=\"{}\"", k.precision),
                                       fmt::format("checkpoint.dir=\"{}\"", ck), "log.out_dir=\"" + ck + "_out\""},
                                      2);
      Mesh mesh(MeshLayout{2, 1, 1}, MpiCommOptions{}, sub);
      const Groups groups = mesh_groups(mesh);
      Trainer a(cfg, groups, [](const std::string&) {});
      a.train_step(0);
      a.train_step(1);
      const SaveResult saved = save_trainer(a, 2, SaveOptions{}, "0123456789abcdef");
      const double la = a.train_step(2).loss;
      TrainerOptions o;
      o.load_gather_window = 37;
      Trainer b(cfg, groups, [](const std::string&) {}, o);
      (void)restore_trainer(b, saved.dir);
      const double lb = b.train_step(2).loss;
      CHECK(la == lb);
      a.gather_full_params();
      b.gather_full_params();
      const Tensor& va = a.model().params.values();
      const Tensor& vb = b.model().params.values();
      REQUIRE(va.bytes() == vb.bytes());
      CHECK(std::memcmp(va.raw(), vb.raw(), va.bytes()) == 0);
      a.release_full_params();
      b.release_full_params();
      MPI_Comm_free(&sub);
    }
    sleepy_barrier();
  }
  if (rank == 0) std::filesystem::remove_all(dir);
}
