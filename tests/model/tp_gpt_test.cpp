// The tensor-parallel GPT (t = 2, 4 threads of one process, each with its
// rank's communicator) against the whole model built from the same seed:
// loss, count, correct and every gradient slice; with dropout, without
// biases, cut into pipeline stages, in fp32; a one-member group leaving the
// model as it is, bit for bit; which parameters are split; this rank's costs;
// the errors for degrees that do not divide n_head or the vocabulary.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "gradcheck.h"
#include "model/model.h"
#include "thread_comm.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

ModelConfig tp_config(double dropout = 0.0, bool bias = true, int64_t n_layer = 2) {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 64;
  c.context_length = 8;
  c.n_layer = n_layer;
  c.n_head = 4;
  c.n_embd = 16;
  c.dropout = dropout;
  c.bias = bias;
  return c;
}

std::pair<Tensor, Tensor> tokens(int64_t b, int64_t t, uint64_t seed, int64_t vocab) {
  Tensor x = Tensor::empty(Shape{b, t}, DType::i32), y = Tensor::empty(Shape{b, t}, DType::i32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng.below(vocab));
  for (int64_t i = 0; i < y.numel(); ++i) y.data<int32_t>()[i] = static_cast<int32_t>(rng.below(vocab));
  return {x, y};
}

// Gives every parameter of `part` (sharded or not) its slice of the whole
// model's values.
template <class T>
void copy_slices(const ParamStore& whole, ParamStore& part) {
  for (const auto& p : part.all()) {
    const Param* q = whole.find(p->name);
    REQUIRE(q != nullptr);
    REQUIRE(p->shard.full == q->shape);
    for (int64_t i = 0; i < p->numel(); ++i)
      p->value.data<T>()[i] = q->value.data<T>()[p->shard.global_index(i)];
  }
}

// Every gradient of `part` against its slice of the whole model's, within
// rtol of the largest entry of the whole gradient.
template <class T>
void check_slices(const ParamStore& whole, const ParamStore& part, double rtol) {
  for (const auto& p : part.all()) {
    const Param* q = whole.find(p->name);
    REQUIRE(q != nullptr);
    CAPTURE(p->name);
    double scale = 0;
    for (int64_t i = 0; i < q->numel(); ++i) scale = std::max(scale, std::abs(double(q->grad.data<T>()[i])));
    CHECK(scale > 0);
    double err = 0;
    for (int64_t i = 0; i < p->numel(); ++i)
      err = std::max(err, std::abs(double(p->grad.data<T>()[i]) -
                                   double(q->grad.data<T>()[p->shard.global_index(i)])));
    CHECK(err <= rtol * scale);
  }
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

}  // namespace

namespace {

// Per rank: the tp model and the whole model from the same seed (the whole
// one's parameters perturbed and the slices copied into the shards), the same
// batch; loss, count and correct equal; every gradient equal to its slice.
// Returns, per rank, the loss and the replicated parameters' gradients (for
// the cross-rank comparison).
struct RankResult {
  LossStats stats;
  std::vector<std::pair<std::string, Tensor>> replicated;
};

std::vector<RankResult> run_tp_gpt(int t, const ModelConfig& cfg, int64_t B) {
  const int64_t T = cfg.context_length;
  std::vector<RankResult> out(t);
  std::mutex mu;
  run_ranks(t, [&](Communicator& comm, int rank) {
    auto whole = build_model(cfg, T, DType::f64, Device::cpu(), 11);
    auto part = build_model(cfg, T, DType::f64, Device::cpu(), 11, {.tp = &comm});
    // The init of a shard is its slice of the whole init, before any perturbation.
    for (const auto& p : part->params.all()) {
      const Param* q = whole->params.find(p->name);
      REQUIRE(q != nullptr);
      for (int64_t i = 0; i < p->numel(); ++i)
        REQUIRE(p->value.data<double>()[i] == q->value.data<double>()[p->shard.global_index(i)]);
    }
    perturb_params(whole->params, 2, 0.2);
    copy_slices<double>(whole->params, part->params);
    whole->plan(B);
    part->plan(B);
    CHECK(part->output_shape(B) == Shape{B, T, cfg.vocab_size / t});
    auto [x, y] = tokens(B, T, 3, cfg.vocab_size);
    Ctx ctx{.training = true, .seed = 5, .step = 2, .sample_offset = 4};
    const LossStats want = whole->forward(x, y, ctx);
    const LossStats got = part->forward(x, y, ctx);
    CHECK(got.loss == doctest::Approx(want.loss).epsilon(1e-10));
    CHECK(got.count == want.count);
    CHECK(got.correct == want.correct);
    whole->backward(0.7, ctx);
    part->backward(0.7, ctx);
    check_slices<double>(whole->params, part->params, 1e-10);
    RankResult res{got, {}};
    for (const auto& p : part->params.all())
      if (!p->shard.split()) res.replicated.emplace_back(p->name, clone(p->grad));
    std::lock_guard<std::mutex> lock(mu);
    out[rank] = std::move(res);
  });
  return out;
}

}  // namespace

TEST_CASE("tp GPT (t = 2, 4) gives the whole model's loss and gradient slices") {
  for (int t : {2, 4}) {
    for (auto [dropout, bias] : {std::pair{0.0, true}, std::pair{0.2, true}, std::pair{0.1, false}}) {
      CAPTURE(t);
      CAPTURE(dropout);
      CAPTURE(bias);
      const std::vector<RankResult> res = run_tp_gpt(t, tp_config(dropout, bias), 3);
      // Replicated parameters (norms, wpe, row-parallel biases): the same
      // gradient on every rank, bit for bit, without communication.
      REQUIRE(!res[0].replicated.empty());
      for (int r = 1; r < t; ++r) {
        CHECK(res[r].stats.loss == res[0].stats.loss);
        CHECK(res[r].stats.correct == res[0].stats.correct);
        REQUIRE(res[r].replicated.size() == res[0].replicated.size());
        for (size_t i = 0; i < res[0].replicated.size(); ++i) {
          CAPTURE(res[0].replicated[i].first);
          CHECK(same_bits(res[r].replicated[i].second, res[0].replicated[i].second));
        }
      }
    }
  }
}

TEST_CASE("tp GPT: which parameters are split and how (names, shapes, shards)") {
  ThreadGroup g(4);
  const ModelConfig cfg = tp_config();
  auto m = describe_model(cfg, 8, {.tp = &g.comm(2)});
  const int64_t C = 16, V = 64;
  auto shard_of = [&](const char* name) { return m->params.find(name)->shard; };
  CHECK(m->params.find("wte.weight")->shape == Shape{V / 4, C});
  CHECK(shard_of("wte.weight").dim == 0);
  CHECK(shard_of("wte.weight").index == 2);
  CHECK_FALSE(shard_of("wpe.weight").split());
  CHECK(m->params.find("blocks.0.attn.qkv.weight")->shape == Shape{3 * C / 4, C});
  CHECK(shard_of("blocks.0.attn.qkv.weight").blocks == std::vector<int64_t>{C, C, C});
  CHECK(shard_of("blocks.0.attn.qkv.bias").blocks == std::vector<int64_t>{C, C, C});
  CHECK(m->params.find("blocks.0.attn.proj.weight")->shape == Shape{C, C / 4});
  CHECK(shard_of("blocks.0.attn.proj.weight").dim == 1);
  CHECK_FALSE(shard_of("blocks.0.attn.proj.bias").split());
  CHECK(m->params.find("blocks.1.mlp.fc.weight")->shape == Shape{C, C});
  CHECK(m->params.find("blocks.1.mlp.fc.bias")->shape == Shape{C});
  CHECK(m->params.find("blocks.1.mlp.proj.weight")->shape == Shape{C, C});
  CHECK(shard_of("blocks.1.mlp.proj.weight").dim == 1);
  CHECK_FALSE(shard_of("blocks.1.mlp.proj.bias").split());
  for (const char* n : {"blocks.0.ln1.weight", "blocks.0.ln2.bias", "ln_f.weight"}) CHECK_FALSE(shard_of(n).split());
}

TEST_CASE("tp GPT cut into pipeline stages gives the whole model's loss and gradients") {
  const ModelConfig cfg = tp_config(0.1, true, 3);
  for (int t : {2, 4}) {
    CAPTURE(t);
    run_ranks(t, [&](Communicator& comm, int) {
      const int64_t B = 2, T = 8;
      auto whole = build_model(cfg, T, DType::f64, Device::cpu(), 11);
      perturb_params(whole->params, 2, 0.2);
      whole->plan(B);
      auto [x, y] = tokens(B, T, 3, cfg.vocab_size);
      Ctx ctx{.training = true, .seed = 5, .step = 0, .sample_offset = 0};
      const LossStats want = whole->forward(x, y, ctx);
      whole->backward(1.0, ctx);

      // Stages [0, 2) [2, 4) [4, 6): the embedding and the tied head apart.
      std::vector<std::unique_ptr<Model>> stages;
      for (int64_t s = 0; s < 3; ++s) {
        stages.push_back(build_model(cfg, T, DType::f64, Device::cpu(), 11,
                                     {.tp = &comm, .first_layer = 2 * s, .last_layer = 2 * s + 2}));
        copy_slices<double>(whole->params, stages.back()->params);
        stages.back()->plan(B);
      }
      const Param* head_wte = stages[2]->params.find("wte.weight");
      REQUIRE(head_wte != nullptr);
      CHECK_FALSE(head_wte->primary);
      CHECK(head_wte->shard.split());
      CHECK(head_wte->shard.index == comm.rank());
      CHECK(head_wte->shape == stages[0]->params.find("wte.weight")->shape);
      Tensor h = stages[1]->forward_layers(stages[0]->forward_layers(x, ctx), ctx);
      const LossStats got = stages[2]->forward(h, y, ctx);
      CHECK(got.loss == doctest::Approx(want.loss).epsilon(1e-10));
      CHECK(got.correct == want.correct);
      stages[0]->backward_layers(stages[1]->backward_layers(stages[2]->backward(1.0, ctx), ctx), ctx);

      for (const auto& p : whole->params.all()) {
        CAPTURE(p->name);
        std::vector<Param*> held;
        for (auto& st : stages)
          if (Param* q = st->params.find(p->name)) held.push_back(q);
        CHECK(held.size() == (p->name == "wte.weight" ? 2u : 1u));
        const Param* q0 = held.at(0);
        std::vector<double> g(q0->numel(), 0.0);  // the copies' gradients summed, as the step loop does
        for (Param* q : held)
          for (int64_t i = 0; i < q->numel(); ++i) g[i] += q->grad.data<double>()[i];
        const double scale = max_abs(p->grad);
        double err = 0;
        for (int64_t i = 0; i < q0->numel(); ++i)
          err = std::max(err, std::abs(g[i] - p->grad.data<double>()[q0->shard.global_index(i)]));
        CHECK(err <= 1e-10 * scale);
      }
    });
  }
}

TEST_CASE("tp GPT in fp32 follows the whole fp32 model") {
  const ModelConfig cfg = tp_config(0.1);
  run_ranks(2, [&](Communicator& comm, int) {
    const int64_t B = 2, T = 8;
    auto whole = build_model(cfg, T, DType::f32, Device::cpu(), 11);
    auto part = build_model(cfg, T, DType::f32, Device::cpu(), 11, {.tp = &comm});
    whole->plan(B);
    part->plan(B);
    auto [x, y] = tokens(B, T, 3, cfg.vocab_size);
    Ctx ctx{.training = true, .seed = 5, .step = 0, .sample_offset = 0};
    const double want = whole->forward(x, y, ctx).loss, got = part->forward(x, y, ctx).loss;
    CHECK(got == doctest::Approx(want).epsilon(1e-5));
    whole->backward(1.0, ctx);
    part->backward(1.0, ctx);
    check_slices<float>(whole->params, part->params, 1e-4);
  });
}

TEST_CASE("tp with one member leaves the GPT as it is, bit for bit") {
  auto self = make_self_communicator("tp");
  for (DType dt : {DType::f32, DType::f64}) {
    const ModelConfig cfg = tp_config(0.1);
    auto plain = build_model(cfg, 8, dt, Device::cpu(), 11);
    auto one = build_model(cfg, 8, dt, Device::cpu(), 11, {.tp = self.get()});
    REQUIRE(plain->params.all().size() == one->params.all().size());
    for (size_t i = 0; i < plain->params.all().size(); ++i) {
      CHECK(plain->params.all()[i]->name == one->params.all()[i]->name);
      CHECK(plain->params.all()[i]->shape == one->params.all()[i]->shape);
      CHECK_FALSE(one->params.all()[i]->shard.split());
    }
    CHECK(same_bits(plain->params.values(), one->params.values()));
    plain->plan(2);
    one->plan(2);
    auto [x, y] = tokens(2, 8, 3, cfg.vocab_size);
    Ctx ctx{.training = true, .seed = 5, .step = 0, .sample_offset = 0};
    CHECK(plain->forward(x, y, ctx).loss == one->forward(x, y, ctx).loss);
    plain->backward(1.0, ctx);
    one->backward(1.0, ctx);
    CHECK(same_bits(plain->params.grads(), one->params.grads()));
    CHECK(self->stats().ops == 0);  // nothing communicated
  }
}

TEST_CASE("tp: degrees that do not divide n_head or the vocabulary are config errors naming the keys") {
  ThreadGroup three(3), two(2);
  ModelConfig c = tp_config();
  CHECK_THROWS_WITH_AS(describe_model(c, 8, {.tp = &three.comm(0)}),
                       doctest::Contains("model.n_head (4) is not divisible by parallel.tp (3)"),
                       ConfigError);
  c.vocab_size = 50257;
  CHECK_THROWS_WITH_AS(
      build_model(c, 8, DType::f32, Device::cpu(), 1, {.tp = &two.comm(1)}),
      doctest::Contains("model.vocab_size (50257) is not divisible by parallel.tp (2); use a "
                        "padded vocabulary such as 50304"),
      ConfigError);
  try {
    describe_model(c, 8, {.tp = &three.comm(2)});
    FAIL("no ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.problems().size() == 2);  // both at once
  }
  // Every stage checks, not only the embedding's.
  CHECK_THROWS_AS(build_model(c, 8, DType::f32, Device::cpu(), 1,
                              {.tp = &two.comm(0), .first_layer = 3, .last_layer = -1}),
                  ConfigError);
  c.vocab_size = 50304;
  CHECK_NOTHROW(describe_model(c, 8, {.tp = &two.comm(0)}));
}

TEST_CASE("tp costs: GPT-2 124M shapes, this rank's share") {
  ModelConfig cfg{};
  cfg.type = "gpt";
  cfg.vocab_size = 50304;
  cfg.context_length = 1024;
  cfg.n_layer = 12;
  cfg.n_head = 12;
  cfg.n_embd = 768;
  cfg.dropout = 0.0;
  cfg.bias = true;
  const auto whole = describe_model(cfg, 1024);
  const std::vector<Cost> full = whole->layer_costs(4);
  for (int t : {2, 4}) {
    CAPTURE(t);
    ThreadGroup g(t);
    auto m = describe_model(cfg, 1024, {.tp = &g.comm(t - 1)});
    const int64_t V = 50304, T = 1024, C = 768, L = 12;
    const int64_t per_block = 2 * C                      // ln1
                              + 3 * C * C / t + 3 * C / t  // attn.qkv (split)
                              + C * C / t + C              // attn.proj (bias whole)
                              + 2 * C                      // ln2
                              + 4 * C * C / t + 4 * C / t  // mlp.fc
                              + 4 * C * C / t + C;         // mlp.proj
    const int64_t expected = V * C / t + T * C + L * per_block + 2 * C;
    int64_t store = 0;
    for (const auto& p : m->params.all()) store += p->numel();
    CHECK(store == expected);
    CHECK(m->cost(4).params == expected);

    const std::vector<Cost> costs = m->layer_costs(4);
    REQUIRE(costs.size() == full.size());
    const double B = 4, nh = 12, hs = C / nh, tokens = B * T;
    const Cost& block = costs[1];
    CHECK(block.fwd_flops == full[1].fwd_flops / t);  // every product of a block is split
    CHECK(block.bwd_flops == full[1].bwd_flops / t);
    CHECK(block.fwd_flops == (2 * 12.0 * C * C * tokens + 2 * 2 * B * nh * T * T * hs) / t);
    CHECK(costs[14].fwd_flops == full[14].fwd_flops / t);  // the head
    CHECK(costs[15].fwd_flops == full[15].fwd_flops / t);  // the loss
    // Kept per block: the replicated inputs of ln1, qkv, ln2, fc in full, the
    // split qkv output, probabilities, proj inputs and GELU input, and the
    // projections' all-reduced outputs in full.
    const double per_token = 4 * (C + 2 + C + 3 * C / t + C / t + C + 2 + C + 4 * C / t + 4 * C / t + 2 * C);
    CHECK(block.act_bytes == per_token * tokens + 4 * B * nh / t * T * T);
    const double rows = tokens;  // the loss's per-row statistics are not split
    // The unsplit loss writes dL/dlogits over the logits (its own bytes: the
    // per-row statistics); the vocabulary-parallel one keeps its (rows, V/t) probabilities.
    CHECK(full[15].act_bytes == rows * 20);
    CHECK(costs[15].act_bytes - rows * 24 == rows * V * 4 / t);
  }
}

