// Shared pieces of the checkpoint tests: a temporary directory that removes
// itself, a small GPT with AdamW or SGD state, and byte surgery on files.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "checkpoint/checkpoint.h"
#include "core/rng.h"
#include "model/model.h"
#include "optim/optimizer.h"

namespace dtrain::testing {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / fmt::format("dtrain_ckpt_{:08x}", rd());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

inline ModelConfig tiny_gpt() {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 32;
  c.context_length = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.dropout = 0.0;
  c.bias = true;
  return c;
}

inline OptimConfig optim(const std::string& name) {
  OptimConfig o{};
  o.name = name;
  o.lr = 1e-2;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  o.momentum = 0.9;
  o.grad_clip = 0;
  return o;
}

// Random gradients, then `steps` optimizer updates: every state tensor non-trivial.
inline void take_steps(Model& m, Optimizer& opt, int steps, uint64_t seed) {
  for (int s = 0; s < steps; ++s) {
    float* g = m.params.grads().data<float>();
    for (int64_t i = 0; i < m.params.grads().numel(); ++i)
      g[i] = static_cast<float>(CounterRng(seed + static_cast<uint64_t>(s), static_cast<uint64_t>(i)).normal());
    opt.step(1e-2, 1.0);
  }
}

inline std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

inline void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
}

inline void flip_byte(const fs::path& p, int64_t offset) {
  std::string b = read_file(p);
  REQUIRE(offset < static_cast<int64_t>(b.size()));
  b[static_cast<size_t>(offset)] = static_cast<char>(b[static_cast<size_t>(offset)] ^ 0x5a);
  write_file(p, b);
}

inline CheckpointMeta test_meta(int64_t step) {
  CheckpointMeta m;
  m.program_version = "test";
  m.model_type = "gpt";
  m.optimizer = "adamw";
  m.step = step;
  m.optimizer_steps = step;
  m.samples_seen = step * 4;
  m.items_seen = step * 32;
  m.seed = 7;
  m.config = "# the config of a test\n";
  return m;
}

}  // namespace dtrain::testing
