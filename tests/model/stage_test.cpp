// The pieces parallel layouts are made of: a sharded parameter starts with its
// slice of the unsharded one, and a GPT cut into pipeline stages computes the
// same loss and gradients as the whole model.
#include <doctest/doctest.h>

#include <cstring>

#include "gradcheck.h"
#include "model/model.h"

using namespace dtrain;
using namespace dtrain::testing;

TEST_CASE("sharded parameters hold their slice of the full tensor's init (fused Q|K|V rows, columns)") {
  const Shape full{12, 5};  // 3 blocks (q, k, v) of 4 rows
  ParamStore whole;
  Param& w = whole.add("qkv.weight", full, Init::normal(0.02), true);
  whole.allocate(DType::f64, Device::cpu(), 7);
  for (int64_t parts : {1, 2, 4}) {
    for (int64_t index = 0; index < parts; ++index) {
      CAPTURE(parts);
      CAPTURE(index);
      ParamStore ps;
      Shard sh{.dim = 0, .parts = parts, .index = index, .blocks = {4, 4, 4}, .full = full};
      Param& p = ps.add_sharded("qkv.weight", sh, Init::normal(0.02), true);
      ps.allocate(DType::f64, Device::cpu(), 7);
      CHECK(p.shape == (Shape{12 / parts, 5}));
      const int64_t piece = 4 / parts;
      for (int64_t r = 0; r < p.shape[0]; ++r) {
        const int64_t full_row = r / piece * 4 + index * piece + r % piece;
        for (int64_t c = 0; c < 5; ++c)
          REQUIRE(p.value.data<double>()[r * 5 + c] == w.value.data<double>()[full_row * 5 + c]);
      }
      int64_t rows = 0;
      for (const auto& run : sh.runs()) {
        CHECK(run.local_start == rows);
        CHECK(run.full_start == run.local_start / piece * 4 + index * piece);
        rows += run.count;
      }
      CHECK(rows == p.shape[0]);
    }
  }
  // Grouped-query attention's blocks of unequal sizes: 8 query rows, 2 key and
  // 2 value rows of the same 12 x 5 tensor, split in two.
  const Shape gqa{12, 5};
  for (int64_t index = 0; index < 2; ++index) {
    CAPTURE(index);
    ParamStore ps;
    const Shard sh{.dim = 0, .parts = 2, .index = index, .blocks = {8, 2, 2}, .full = gqa};
    Param& p = ps.add_sharded("qkv.weight", sh, Init::normal(0.02), true);
    ps.allocate(DType::f64, Device::cpu(), 7);
    CHECK(p.shape == (Shape{6, 5}));
    // Local rows: 4 of Q (full 4 index ..), 1 of K (full 8 + index), 1 of V (full 10 + index).
    const std::vector<int64_t> full_rows = {4 * index, 4 * index + 1, 4 * index + 2, 4 * index + 3, 8 + index,
                                            10 + index};
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t c = 0; c < 5; ++c)
        REQUIRE(p.value.data<double>()[r * 5 + c] == w.value.data<double>()[full_rows[r] * 5 + c]);
    const std::vector<Shard::Run> runs = sh.runs();
    REQUIRE(runs.size() == 3);
    CHECK((runs[1].full_start == 8 + index && runs[1].local_start == 4 && runs[1].count == 1));
    CHECK((runs[2].full_start == 10 + index && runs[2].local_start == 5 && runs[2].count == 1));
  }
  {
    ParamStore ps;  // blocks that do not sum to the dimension, or do not split evenly
    CHECK_THROWS_AS(ps.add_sharded("a", Shard{.dim = 0, .parts = 2, .blocks = {8, 2}, .full = gqa}, Init::zeros(), true),
                    InternalError);
    CHECK_THROWS_AS(ps.add_sharded("b", Shard{.dim = 0, .parts = 4, .blocks = {8, 2, 2}, .full = gqa}, Init::zeros(), true),
                    InternalError);
  }
  // Columns (a row-parallel weight): dim 1.
  ParamStore ps;
  Param& p = ps.add_sharded("qkv.weight", Shard{.dim = 1, .parts = 5, .index = 3, .blocks = {}, .full = full},
                            Init::normal(0.02), true);
  ps.allocate(DType::f64, Device::cpu(), 7);
  for (int64_t r = 0; r < 12; ++r) CHECK(p.value.data<double>()[r] == w.value.data<double>()[r * 5 + 3]);
}

namespace {

// Three blocks of width 8 over 6 tokens, with dropout: small enough for f64.
ModelConfig small_gpt() {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 32;
  c.context_length = 6;
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 8;
  c.dropout = 0.1;
  c.bias = true;
  return c;
}

}  // namespace

TEST_CASE("a GPT cut into pipeline stages gives the whole model's loss and gradients") {
  const ModelConfig c = small_gpt();
  const int64_t B = 2, T = 6;
  auto whole = build_model(c, T, DType::f64, Device::cpu(), 11);
  CHECK(whole->total_layers == 6);
  whole->plan(B);
  Tensor x = Tensor::empty(whole->input_shape(B), DType::i32), y = Tensor::empty(whole->target_shape(B), DType::i32);
  CounterRng rng(3);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng.below(32));
  for (int64_t i = 0; i < y.numel(); ++i) y.data<int32_t>()[i] = static_cast<int32_t>(rng.below(32));
  Ctx ctx{.training = true, .seed = 5, .step = 0, .sample_offset = 0};
  const double loss = whole->forward(x, y, ctx).loss;
  whole->backward(1.0, ctx);

  // Stages [0, 2) [2, 4) [4, 6): the embedding and the tied head on different stages.
  std::vector<std::unique_ptr<Model>> stages;
  for (int64_t s = 0; s < 3; ++s) {
    stages.push_back(build_model(c, T, DType::f64, Device::cpu(), 11, {.first_layer = 2 * s, .last_layer = 2 * s + 2}));
    stages.back()->plan(B);
  }
  CHECK(stages[0]->input_dtype() == DType::i32);
  CHECK(stages[1]->input_shape(B) == (Shape{B, T, 8}));
  CHECK(!stages[1]->last_stage());
  REQUIRE(stages[2]->last_stage());
  Tensor h = stages[1]->forward_layers(stages[0]->forward_layers(x, ctx), ctx);
  CHECK(stages[2]->forward(h, y, ctx).loss == doctest::Approx(loss).epsilon(1e-12));
  stages[0]->backward_layers(stages[1]->backward_layers(stages[2]->backward(1.0, ctx), ctx), ctx);

  for (const auto& p : whole->params.all()) {
    CAPTURE(p->name);
    std::vector<Param*> held;
    for (auto& st : stages)
      if (Param* q = st->params.find(p->name)) held.push_back(q);
    REQUIRE(!held.empty());
    // The tied embedding lives on the first and the last stage; its gradient
    // is the sum of the two copies', which the step loop adds up.
    std::vector<double> g(p->numel(), 0.0);
    for (Param* q : held) {
      CHECK(std::memcmp(q->value.raw(), p->value.raw(), p->value.bytes()) == 0);
      for (int64_t i = 0; i < p->numel(); ++i) g[i] += q->grad.data<double>()[i];
    }
    CHECK(held.size() == (p->name == "wte.weight" ? 2u : 1u));
    for (int64_t i = 0; i < p->numel(); ++i)
      REQUIRE(g[i] == doctest::Approx(p->grad.data<double>()[i]).epsilon(1e-10));
  }
}

TEST_CASE("a stage's micro-batch copies sharing one arena hand on what unshared copies do") {
  // A middle stage of blocks only (its output is sent, its input gradient sent
  // back), two micro-batches in flight as 1F1B keeps them: F(a) F(b) B(a) B(b).
  // Copies sharing the blocks' buffers (Model::share_arena) must hand on
  // outputs and input gradients that survive the other copy's passes, and
  // accumulate the same gradients as copies with buffers of their own, with
  // one copy's worth of shared buffers.
  const ModelConfig c = small_gpt();
  const int64_t B = 2, T = 6;
  const ModelParallel middle{.first_layer = 1, .last_layer = 4};  // blocks 0-2
  for (const Recompute mode : {Recompute::none, Recompute::selective, Recompute::full}) {
    CAPTURE(static_cast<int>(mode));
    struct Copies {
      std::unique_ptr<Model> a, b;
    };
    auto make = [&](bool share) {
      Copies k;
      k.a = build_model(c, T, DType::f64, Device::cpu(), 11, middle);
      k.b = build_replica(*k.a, c, T, middle);
      if (share) {
        k.a->share_arena(k.a->arena);
        k.b->share_arena(k.a->arena);
      }
      for (Model* m : {k.a.get(), k.b.get()}) {
        m->recompute = mode;
        m->plan(B);
      }
      return k;
    };
    Copies own = make(false), shared = make(true);
    CHECK(shared.a->arena == shared.b->arena);
    CHECK_THROWS_AS(shared.a->share_arena(own.a->arena), InternalError);  // after plan()
    CHECK(shared.a->arena->bytes() == own.a->arena->bytes());

    const Shape in = own.a->input_shape(B);
    const Tensor xa = random_tensor(in, 1), xb = random_tensor(in, 2);
    const Tensor dya = random_tensor(in, 3), dyb = random_tensor(in, 4);
    const Ctx ca{.training = true, .seed = 5, .step = 0, .sample_offset = 0};
    const Ctx cb{.training = true, .seed = 5, .step = 0, .sample_offset = B};
    // Copies of their own: each result copied as it comes.
    own.a->params.zero_grads();
    std::vector<Tensor> want;
    want.push_back(clone(own.a->forward_layers(xa, ca)));
    want.push_back(clone(own.b->forward_layers(xb, cb)));
    want.push_back(clone(own.a->backward_layers(dya, ca)));
    want.push_back(clone(own.b->backward_layers(dyb, cb)));
    want.push_back(clone(own.a->params.grads()));
    // Sharing: what a's passes handed on, read after a's and b's later passes ran.
    Copies& k = shared;
    k.a->params.zero_grads();
    const Tensor fa = k.a->forward_layers(xa, ca);
    const Tensor fb = clone(k.b->forward_layers(xb, cb));
    const Tensor ga = k.a->backward_layers(dya, ca);
    const Tensor gb = clone(k.b->backward_layers(dyb, cb));
    const std::vector<Tensor> got{fa, fb, ga, gb, k.a->params.grads()};
    // What each copy hands on lies outside the shared buffers (the step loop
    // checks every tensor it sends the same way).
    CHECK(!k.a->arena->holds(fa));
    CHECK(!k.a->arena->holds(ga));
    CHECK(own.a->arena->holds(own.a->backward_layers(dya, ca)));  // unshared: the block's own work buffer
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(i);
      REQUIRE(got[i].numel() == want[i].numel());
      CHECK(std::memcmp(got[i].raw(), want[i].raw(), want[i].bytes()) == 0);
    }
  }
}
