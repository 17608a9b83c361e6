// The memory cost model's logits (config::footprint's logits_bytes) against
// what the GPT's last stage really allocates when it is planned: the logits,
// over which the cross-entropy writes dL/dlogits (one (rows, vocabulary)
// buffer), or with tensor parallelism the logits' and the vocabulary-parallel
// loss's probabilities' (rows, vocabulary / tp). Measured as the heap's
// growth while the head-only stage plans (mallinfo2: large blocks are mmap'd
// and counted exactly), with a vocabulary large enough that the (rows,
// vocabulary) buffers dwarf everything else the stage plans.
#include <doctest/doctest.h>

#include <malloc.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/config.h"
#include "config/footprint.h"
#include "core/error.h"
#include "model/model.h"

using namespace dtrain;

namespace {

double heap() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<double>(mi.uordblks) + static_cast<double>(mi.hblkhd);
}

// Member 0 of a group of `n` that is never asked to communicate (planning
// allocates only).
class IdleGroup : public Communicator {
 public:
  explicit IdleGroup(int n) : n_(n) {}
  int rank() const override { return 0; }
  int size() const override { return n_; }
  const std::string& name() const override { return name_; }
  int world_rank(int r) const override { return r; }
  WorkHandle all_reduce(Tensor, ReduceOp) override { return fail(); }
  WorkHandle reduce_scatter(Tensor, Tensor, ReduceOp, std::vector<int64_t>) override { return fail(); }
  WorkHandle all_gather(Tensor, Tensor, std::vector<int64_t>) override { return fail(); }
  WorkHandle broadcast(Tensor, int) override { return fail(); }
  WorkHandle send(Tensor, int, int) override { return fail(); }
  WorkHandle recv(Tensor, int, int) override { return fail(); }
  WorkHandle barrier() override { return fail(); }
  void set_timeout(double) override {}
  const CommStats& stats() const override { return stats_; }

 private:
  [[noreturn]] WorkHandle fail() { throw InternalError("IdleGroup: no communication while planning"); }
  int n_;
  std::string name_ = "tp";
  CommStats stats_;
};

const char* kToml = R"(
[model]
type = "gpt"
vocab_size = 16384
context_length = 16
n_layer = 1
n_head = 2
n_embd = 16
dropout = 0.0
[data]
train = "t.bin"
val = "v.bin"
[train]
micro_batch = 8
global_batch = 8
)";

}  // namespace

TEST_CASE("footprint: the logits it counts are the (rows, vocabulary) buffers the last stage allocates") {
  for (int tp : {1, 2})
    for (const char* precision : {"fp32", "bf16"}) {
      CAPTURE(tp);
      CAPTURE(precision);
      const Config cfg = parse_config(kToml, "logits.toml",
                                      {fmt::format("parallel.tp={}", tp), fmt::format("train.precision=\"{}\"",
                                                                                      precision)},
                                      tp);
      const config::Footprint f = config::footprint(cfg);
      IdleGroup group(tp);
      ModelParallel par;
      par.tp = tp > 1 ? &group : nullptr;
      const int64_t head = cfg.model.n_layer + 2;  // top-level layers: embed, blocks, ln_f, lm_head
      par.first_layer = head;
      const DType dtype = std::string(precision) == "bf16" ? DType::bf16 : DType::f32;
      auto m = build_model(cfg.model, cfg.model.context_length, dtype, Device::cpu(), 1, par);
      REQUIRE(m->last_stage());
      const double before = heap();
      m->plan(cfg.train.micro_batch);
      const double planned = heap() - before;
      const double rows = static_cast<double>(cfg.train.micro_batch * cfg.model.context_length);
      const double one = rows * static_cast<double>(cfg.model.vocab_size / tp) * (dtype == DType::bf16 ? 2 : 4);
      CAPTURE(planned);
      CAPTURE(f.logits_bytes);
      CHECK(f.logits_bytes == doctest::Approx(one * (tp > 1 ? 2 : 1)));
      // Everything else the head plans (its dL/dx, per-row statistics) is
      // under 3% here; a buffer more or fewer than counted is 50% or more.
      CHECK(planned >= f.logits_bytes);
      CHECK(planned < f.logits_bytes * 1.03);
    }
}

TEST_CASE("footprint: its parameter count is the model's, for GPT-2's parts, LLaMA's and grouped-query attention") {
  const std::vector<std::vector<std::string>> variants = {
      {},
      {"model.bias=false"},
      {"model.norm=\"rmsnorm\"", "model.mlp=\"swiglu\"", "model.position=\"rope\"", "model.bias=false",
       "model.tie_embeddings=false"},
      {"model.norm=\"rmsnorm\"", "model.mlp=\"swiglu\"", "model.position=\"rope\"", "model.bias=false",
       "model.n_head=4", "model.n_kv_head=2"},
      {"model.n_head=4", "model.n_kv_head=1"},  // multi-query, with biases (qkv's bias is q's width plus twice one head's)
  };
  for (const auto& sets : variants) {
    CAPTURE(fmt::format("{}", fmt::join(sets, " ")));
    const Config cfg = parse_config(kToml, "logits.toml", sets);
    auto m = build_model(cfg.model, cfg.model.context_length, DType::f32, Device::cpu(), 1);
    int64_t n = 0;
    for (const auto& p : m->params.all())
      if (p->trainable) n += p->numel();
    CHECK(config::footprint(cfg).params == doctest::Approx(static_cast<double>(n)).epsilon(1e-12));
  }
}
