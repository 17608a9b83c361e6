// Measures what a checkpoint costs on one rank for a config's model (GPT-2
// 124M with configs/bench/gpt2-124m.toml): the time to write one (checksums,
// HDF5 writes, fsync, rename), to load it from disk (page cache evicted with
// posix_fadvise) and from the page cache, and the bytes on disk. Parameters
// and AdamW state hold real values (one update from random gradients); the
// loaded copy is compared bit for bit. One JSON line per round on stdout;
// tools/bench/checkpoint_bench.py runs it and prints the table.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checksum.h"
#include "config/config.h"
#include "core/rng.h"
#include "kernels/cpu/gemm.h"

namespace fs = std::filesystem;
using namespace dtrain;

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void evict(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

struct State {
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
};

State build(const Config& cfg, uint64_t seed) {
  const int64_t seq = train_seq_len(cfg);
  State s;
  s.model = build_model(cfg.model, seq, DType::f32, Device::cpu(), seed);
  s.opt = make_optimizer(cfg.optim, s.model->params);
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: checkpoint_bench CONFIG [DIR] [ROUNDS]\n");
    return 2;
  }
  try {
    const Config cfg = load_config(argv[1]);
    const fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::path("runs/checkpoint_bench");
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
    cpu::set_num_threads(static_cast<int>(cfg.train.threads));
    State a = build(cfg, 1), b = build(cfg, 2);
    Tensor& g = a.model->params.grads();
    float* gp = g.data<float>();
#pragma omp parallel for
    for (int64_t i = 0; i < g.numel(); ++i) gp[i] = static_cast<float>(CounterRng(3, static_cast<uint64_t>(i)).normal());
    a.opt->step(1e-4, 1.0);
    auto world = make_self_communicator("world");
    std::vector<Piece> src = collect_pieces(*a.model, *a.opt), dst = collect_pieces(*b.model, *b.opt);
    int64_t tensor_bytes = 0;
    for (const Piece& p : src) tensor_bytes += static_cast<int64_t>(p.local.bytes());
    fs::create_directories(dir);
    for (int r = 0; r < rounds; ++r) {
      // The same bytes with plain write() + fsync and read(): what the disk gives without HDF5.
      const fs::path raw = dir / "raw.bin";
      double t = now();
      {
        const int fd = ::open(raw.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
        for (const Piece& p : src)
          if (::write(fd, p.local.raw(), p.local.bytes()) != static_cast<ssize_t>(p.local.bytes()))
            throw RuntimeError("raw write failed");
        ::fsync(fd);
        ::close(fd);
      }
      const double raw_write = now() - t;
      {
        const int fd = ::open(raw.c_str(), O_RDONLY);
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(fd);
      }
      t = now();
      {
        const int fd = ::open(raw.c_str(), O_RDONLY);
        for (const Piece& p : dst)
          if (::read(fd, p.local.raw(), p.local.bytes()) != static_cast<ssize_t>(p.local.bytes()))
            throw RuntimeError("raw read failed");
        ::close(fd);
      }
      const double raw_read = now() - t;
      fs::remove(raw);
      t = now();
      for (const Piece& p : src) (void)digest(p.local.raw(), p.local.bytes(), p.local.dtype());
      const double crc_s = now() - t;
      CheckpointMeta meta;
      meta.program_version = "bench";
      meta.model_type = cfg.model.type;
      meta.optimizer = cfg.optim.name;
      meta.step = r + 1;
      meta.config = to_toml(cfg);
      // Phases from the file-operation hook: rank file writes (checksums first), its fsync, the rest.
      double t_create = 0, t_close = 0, t_sync = 0;
      SaveOptions so;
      so.keep = 1;
      so.on_file_op = [&](const std::string& what) {
        if (what.rfind("create rank_", 0) == 0) t_create = now();
        if (what.rfind("close rank_", 0) == 0) t_close = now();
        if (what.rfind("sync rank_", 0) == 0) t_sync = now();
      };
      const double t_save = now();
      const SaveResult res = save_checkpoint(dir.string(), meta, src, *world, so);
      evict(res.dir);
      t = now();
      load_pieces(res.dir, dst);
      const double cold = now() - t;
      t = now();
      load_pieces(res.dir, dst);
      const double warm = now() - t;
      for (size_t i = 0; i < src.size(); ++i)
        if (std::memcmp(src[i].local.raw(), dst[i].local.raw(), src[i].local.bytes()) != 0)
          throw InternalError("loaded " + src[i].key + " differs from what was saved");
      std::printf("{\"round\": %d, \"params\": %lld, \"tensor_bytes\": %lld, \"file_bytes\": %lld, "
                  "\"write_s\": %.4f, \"crc_s\": %.4f, \"checksum_phase_s\": %.4f, \"hdf5_write_s\": %.4f, "
                  "\"fsync_s\": %.4f, \"load_cold_s\": %.4f, \"load_warm_s\": %.4f, \"raw_write_s\": %.4f, \"raw_read_s\": %.4f, \"threads\": %d}\n",
                  r, static_cast<long long>(a.model->params.num_trainable()),
                  static_cast<long long>(tensor_bytes), static_cast<long long>(res.bytes), res.seconds,
                  crc_s, t_create - t_save, t_close - t_create, t_sync - t_close, cold, warm, raw_write,
                  raw_read, cpu::num_threads());
      std::fflush(stdout);
    }
    fs::remove_all(dir);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_bench: %s\n", e.what());
    return 1;
  }
}
