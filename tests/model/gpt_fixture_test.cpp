// The tiny GPT against PyTorch (tools/fixtures/gpt_fixture.py, float64), and
// ones of LLaMA's parts, with multi-head and with grouped-query attention
// (tools/fixtures/llama_fixture.py): logits, loss and every parameter gradient.
#include <doctest/doctest.h>

#include <cmath>

#include "fixture.h"
#include "model/model.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

// Largest |a - b| over the arrays, relative to the largest |b|.
template <class Get>
double rel_error(const FixtureArray& ref, Get&& get) {
  double err = 0, scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    err = std::max(err, std::abs(get(i) - ref.f[i]));
    scale = std::max(scale, std::abs(ref.f[i]));
  }
  return err / scale;
}

// The model of `fx`'s config, with `parts` (GPT-2's or LLaMA's), against the
// fixture's logits, loss and every parameter gradient.
void check_against(const Fixture& fx, ModelConfig cfg) {
  // V, context, T, B, C, n_head, n_layer, bias[, ffn, theta, tied, n_kv_head, rope factor, low, high, original context]
  const std::vector<int64_t>& k = fx.at("config").i;
  cfg.type = "gpt";
  cfg.vocab_size = k[0];
  cfg.context_length = k[1];
  cfg.n_embd = k[4];
  cfg.n_head = k[5];
  cfg.n_layer = k[6];
  cfg.bias = k[7] != 0;
  cfg.dropout = 0.0;
  if (k.size() > 8) {
    cfg.ffn_hidden = k[8];
    cfg.rope_theta = static_cast<double>(k[9]);
    cfg.tie_embeddings = k[10] != 0;
    cfg.n_kv_head = k[11];
    if (k[12] != 1) {
      cfg.rope_scaling = "llama3";
      cfg.rope_factor = static_cast<double>(k[12]);
      cfg.rope_low_freq_factor = static_cast<double>(k[13]);
      cfg.rope_high_freq_factor = static_cast<double>(k[14]);
      cfg.rope_original_context = k[15];
    }
  }
  const int64_t T = k[2], B = k[3];
  auto m = build_model(cfg, T, DType::f64, Device::cpu(), 1);

  // Every parameter comes from the fixture, and every fixture parameter exists here.
  int64_t loaded = 0;
  for (const auto& [name, arr] : fx.all()) {
    if (!name.starts_with("param/")) continue;
    Param* p = m->params.find(name.substr(6));
    REQUIRE_MESSAGE(p != nullptr, "no parameter ", name.substr(6));
    REQUIRE(p->numel() == arr.numel());
    std::copy(arr.f.begin(), arr.f.end(), p->value.data<double>());
    ++loaded;
  }
  CHECK(loaded == static_cast<int64_t>(m->params.all().size()));

  m->plan(B);
  Tensor x = Tensor::empty(m->input_shape(B), DType::i32), y = Tensor::empty(m->target_shape(B), DType::i32);
  for (int64_t i = 0; i < B * T; ++i) {
    x.data<int32_t>()[i] = static_cast<int32_t>(fx.at("tokens").i[i]);
    y.data<int32_t>()[i] = static_cast<int32_t>(fx.at("targets").i[i]);
  }
  // Model::forward, one layer at a time so that the logits can be compared too.
  Ctx ctx;
  Tensor h = x;
  for (const auto& l : m->layers) h = l->forward(h, ctx);
  REQUIRE(h.shape() == Shape{B, T, cfg.vocab_size});
  const double* lp = h.data<double>();
  CHECK(rel_error(fx.at("logits"), [&](int64_t i) { return lp[i]; }) < 1e-12);
  CHECK(m->loss->forward(h, y).loss == doctest::Approx(fx.at("loss").f[0]).epsilon(1e-12));

  m->params.zero_grads();
  m->backward(1.0, ctx);
  for (const auto& p : m->params.all()) {
    CAPTURE(p->name);
    const double* g = p->grad.data<double>();
    CHECK(rel_error(fx.at("grad/" + p->name), [&](int64_t i) { return g[i]; }) < 1e-9);
  }
}

ModelConfig parts(const char* norm, const char* mlp, const char* position) {
  ModelConfig cfg{};
  cfg.norm = norm;
  cfg.mlp = mlp;
  cfg.position = position;
  cfg.rope_theta = 10000;
  return cfg;
}

}  // namespace

TEST_CASE("tiny GPT matches PyTorch: logits, loss and every gradient (fp64)") {
  check_against(Fixture(fixture_path("gpt_tiny.fix")), parts("layernorm", "gelu", "learned"));
}

TEST_CASE("tiny GPT of LLaMA's parts (RMSNorm, SwiGLU, rope, untied head) matches PyTorch: logits, loss and every gradient (fp64)") {
  check_against(Fixture(fixture_path("llama_tiny.fix")), parts("rmsnorm", "swiglu", "rope"));
}

TEST_CASE("tiny LLaMA with LLaMA 3.1's rope scaling (a frequency kept, one interpolated, two divided) matches PyTorch (fp64)") {
  const Fixture fx(fixture_path("llama_rope_scaled_tiny.fix"));
  REQUIRE(fx.at("config").i[12] == 8);
  check_against(fx, parts("rmsnorm", "swiglu", "rope"));
}

TEST_CASE("tiny LLaMA with grouped-query attention (4 query heads, 2 key/value heads) matches PyTorch's repeat_kv (fp64)") {
  const Fixture fx(fixture_path("llama_gqa_tiny.fix"));
  REQUIRE(fx.at("config").i[5] == 4);
  REQUIRE(fx.at("config").i[11] == 2);
  check_against(fx, parts("rmsnorm", "swiglu", "rope"));
}
