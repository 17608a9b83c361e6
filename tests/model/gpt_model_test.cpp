// The assembled GPT: a block and the whole model against finite differences,
// parameter names and init, config validation, smaller batches, determinism,
// micro-batch invariance with dropout, and fp32 against fp64.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "gradcheck.h"
#include "model/block.h"
#include "model/model.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

ModelConfig tiny_config(bool bias = true, double dropout = 0.0) {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 64;
  c.context_length = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.dropout = dropout;
  c.bias = bias;
  return c;
}

// Tokens and targets for a batch, a pure function of seed.
std::pair<Tensor, Tensor> batch(const Model& m, int64_t b, uint64_t seed, int64_t vocab) {
  Tensor x = Tensor::empty(m.input_shape(b), DType::i32), y = Tensor::empty(m.target_shape(b), DType::i32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>(rng.below(vocab));
  for (int64_t i = 0; i < y.numel(); ++i) y.data<int32_t>()[i] = static_cast<int32_t>(rng.below(vocab));
  return {x, y};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

}  // namespace

TEST_CASE("GPT block: backward matches finite differences (with and without bias, with dropout)") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    const int64_t B = 2, T = 9, C = 8;
    ParamStore ps;
    Block block(ps, "blocks.0", BlockSpec{.c = C, .n_head = 2, .bias = bias, .dropout = 0.2, .proj_std = 0.05});
    ps.allocate(DType::f64, Device::cpu(), 1);
    perturb_params(ps, 2, 0.3);
    block.plan(Shape{B, T, C}, DType::f64, Exec::cpu());
    Tensor x = random_tensor(Shape{B, T, C}, 3);
    Ctx ctx{.training = true, .seed = 5, .step = 1, .sample_offset = 0};
    check_layer(block, ps, x, ctx, 4, {.max_samples = 12});
  }
}

TEST_CASE("tiny GPT: dL/dparam matches finite differences for every parameter") {
  for (auto [bias, dropout] : {std::pair{true, 0.1}, std::pair{false, 0.0}}) {
    CAPTURE(bias);
    const ModelConfig cfg = tiny_config(bias, dropout);
    auto m = build_model(cfg, 8, DType::f64, Device::cpu(), 1);
    perturb_params(m->params, 2, 0.2);
    m->plan(2);
    auto [x, y] = batch(*m, 2, 3, cfg.vocab_size);
    Ctx ctx{.training = true, .seed = 7, .step = 0, .sample_offset = 0};
    auto loss = [&] { return m->forward(x, y, ctx).loss; };
    loss();
    m->params.zero_grads();
    m->backward(1.0, ctx);
    for (const auto& p : m->params.all()) {
      INFO("parameter ", p->name);
      Tensor g = clone(p->grad);
      CHECK(max_abs(g) > 0);
      check_gradient(p->name, p->value, g, loss, {.max_samples = 12});
    }
  }
}

TEST_CASE("tiny GPT: layers, parameter names, decay flags and GPT-2 init") {
  ModelConfig cfg = tiny_config();
  cfg.n_embd = 64;  // enough entries to estimate the init std
  cfg.n_head = 4;
  auto m = build_model(cfg, 8, DType::f32, Device::cpu(), 1);
  std::vector<std::string> layers;
  for (const auto& l : m->layers) layers.push_back(l->name());
  CHECK(layers == std::vector<std::string>{"embed", "blocks.0", "blocks.1", "ln_f", "lm_head"});
  CHECK(m->sample_shape == Shape{8});
  CHECK(m->target_sample_shape == Shape{8});

  std::vector<std::string> names;
  for (const auto& p : m->params.all()) names.push_back(p->name);
  std::vector<std::string> expect{"wte.weight", "wpe.weight"};
  for (int i = 0; i < 2; ++i)
    for (const char* s : {"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias",
                          "attn.proj.weight", "attn.proj.bias", "ln2.weight", "ln2.bias",
                          "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias"})
      expect.push_back(fmt::format("blocks.{}.{}", i, s));
  expect.push_back("ln_f.weight");
  expect.push_back("ln_f.bias");
  std::sort(names.begin(), names.end());
  std::sort(expect.begin(), expect.end());
  CHECK(names == expect);

  const int64_t C = 64;
  CHECK(m->params.find("blocks.1.attn.qkv.weight")->shape == Shape{3 * C, C});
  CHECK(m->params.find("blocks.1.mlp.fc.weight")->shape == Shape{4 * C, C});
  CHECK(m->params.find("blocks.1.mlp.proj.weight")->shape == Shape{C, 4 * C});
  for (const auto& p : m->params.all()) {
    CAPTURE(p->name);
    CHECK(p->decay == (p->shape.rank() == 2));
    const float* v = p->value.data<float>();
    double s2 = 0;
    for (int64_t i = 0; i < p->numel(); ++i) s2 += double(v[i]) * v[i];
    const double std = std::sqrt(s2 / p->numel());
    const bool ln = p->name.find("ln") != std::string::npos;
    if (ln && p->name.ends_with(".weight"))
      CHECK(std == 1.0);
    else if (p->name.ends_with(".bias"))
      CHECK(std == 0.0);
    else if (p->name.ends_with("proj.weight"))
      CHECK(std == doctest::Approx(0.02 / std::sqrt(2.0 * cfg.n_layer)).epsilon(0.05));
    else
      CHECK(std == doctest::Approx(0.02).epsilon(0.05));
  }

  auto nobias = build_model(tiny_config(false), 8, DType::f32, Device::cpu(), 1);
  for (const auto& p : nobias->params.all()) CHECK_FALSE(p->name.ends_with(".bias"));
  CHECK(nobias->params.find("ln_f.weight") != nullptr);
}

TEST_CASE("GPT config validation: seq_len, n_embd / n_head, sizes") {
  Model m;
  CHECK_THROWS_WITH_AS(build_gpt(m, tiny_config(), 9, {}), doctest::Contains("train.seq_len (9)"), ConfigError);
  ModelConfig c = tiny_config();
  c.n_head = 3;
  Model m2;
  CHECK_THROWS_WITH_AS(build_gpt(m2, c, 8, {}), doctest::Contains("divisible by model.n_head"), ConfigError);
  c = tiny_config();
  c.n_layer = 0;
  c.vocab_size = -1;
  try {
    Model m3;
    build_gpt(m3, c, 8, {});
    FAIL("no ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.problems().size() == 2);  // every problem reported at once
  }
  Model ok;
  CHECK_NOTHROW(build_gpt(ok, tiny_config(), 5, {}));
  CHECK(ok.sample_shape == Shape{5});
}

TEST_CASE("GPT: a batch smaller than planned gives the same loss and gradients") {
  auto big = build_model(tiny_config(), 8, DType::f64, Device::cpu(), 1);
  auto small = build_model(tiny_config(), 8, DType::f64, Device::cpu(), 1);
  big->plan(5);
  small->plan(2);
  auto [x, y] = batch(*small, 2, 3, 64);
  Ctx ctx;
  const double lb = big->forward(x, y, ctx).loss;
  big->backward(1.0, ctx);
  const double ls = small->forward(x, y, ctx).loss;
  small->backward(1.0, ctx);
  CHECK(lb == ls);
  CHECK(same_bits(big->params.grads(), small->params.grads()));
}

TEST_CASE("GPT: two forward/backward passes are bit-identical (fp32, dropout)") {
  ModelConfig cfg = tiny_config(true, 0.1);
  cfg.context_length = 96;  // two attention query blocks
  auto m = build_model(cfg, 96, DType::f32, Device::cpu(), 1);
  m->plan(4);
  auto [x, y] = batch(*m, 4, 3, cfg.vocab_size);
  Ctx ctx{.training = true, .seed = 11, .step = 2, .sample_offset = 0};
  auto run = [&] {
    m->params.zero_grads();
    const double loss = m->forward(x, y, ctx).loss;
    m->backward(1.0, ctx);
    return std::make_pair(loss, clone(m->params.grads()));
  };
  auto [l1, g1] = run();
  auto [l2, g2] = run();
  CHECK(l1 == l2);
  CHECK(same_bits(g1, g2));
}

TEST_CASE("GPT with dropout: a batch of 4 as one micro-batch or as 2 + 2 gives the same step") {
  const ModelConfig cfg = tiny_config(true, 0.3);
  auto m = build_model(cfg, 8, DType::f64, Device::cpu(), 1);
  m->plan(4);
  auto [x, y] = batch(*m, 4, 3, cfg.vocab_size);
  Ctx ctx{.training = true, .seed = 11, .step = 2, .sample_offset = 8};

  m->params.zero_grads();
  const double whole = m->forward(x, y, ctx).loss;
  m->backward(1.0, ctx);
  Tensor g_whole = clone(m->params.grads());

  m->params.zero_grads();
  double halves = 0;
  for (int64_t h = 0; h < 2; ++h) {
    Ctx c = ctx;
    c.sample_offset = ctx.sample_offset + 2 * h;
    halves += 0.5 * m->forward(x.narrow0(2 * h, 2 * h + 2), y.narrow0(2 * h, 2 * h + 2), c).loss;
    m->backward(0.5, c);
  }
  CHECK(halves == doctest::Approx(whole).epsilon(1e-13));
  const double* a = g_whole.data<double>();
  const double* b = m->params.grads().data<double>();
  const double scale = max_abs(g_whole);
  for (int64_t i = 0; i < g_whole.numel(); ++i) CHECK(std::abs(a[i] - b[i]) <= 1e-13 * scale);

  // Without sample_offset the second half would get the first half's masks.
  Ctx right = ctx;
  right.sample_offset += 2;
  const double wrong_loss = m->forward(x.narrow0(2, 4), y.narrow0(2, 4), ctx).loss;
  CHECK(wrong_loss != m->forward(x.narrow0(2, 4), y.narrow0(2, 4), right).loss);
}

TEST_CASE("GPT: fp32 follows fp64 (loss, logits, every gradient)") {
  ModelConfig cfg = tiny_config();
  cfg.context_length = 80;
  auto md = build_model(cfg, 80, DType::f64, Device::cpu(), 1);
  auto mf = build_model(cfg, 80, DType::f32, Device::cpu(), 1);
  perturb_params(md->params, 2, 0.1);
  for (int64_t i = 0; i < md->params.values().numel(); ++i)
    mf->params.values().data<float>()[i] = static_cast<float>(md->params.values().data<double>()[i]);
  md->plan(2);
  mf->plan(2);
  auto [x, y] = batch(*md, 2, 3, cfg.vocab_size);
  Ctx ctx;
  const double ld = md->forward(x, y, ctx).loss, lf = mf->forward(x, y, ctx).loss;
  CHECK(lf == doctest::Approx(ld).epsilon(1e-5));
  md->backward(1.0, ctx);
  mf->backward(1.0, ctx);
  for (const auto& p : md->params.all()) {
    CAPTURE(p->name);
    const Param* q = mf->params.find(p->name);
    const double scale = max_abs(p->grad);
    double err = 0;
    for (int64_t i = 0; i < p->numel(); ++i)
      err = std::max(err, std::abs(p->grad.data<double>()[i] - q->grad.data<float>()[i]));
    CHECK(err <= 1e-4 * scale);
  }
}
