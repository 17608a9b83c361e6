// The key/value-cache decoder against the model's own forward over the whole
// window (what `dtrain generate --full-window` runs): the logits at every
// position, from a prompt appended at once and then one token at a time;
// with GPT-2's parts and with LLaMA's (rotary positions from the cache's
// length).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "model/kv_decoder.h"
#include "model/model.h"
#include "parallel/gpt_config.h"

using namespace dtrain;

namespace {

ModelConfig gpt(bool bias) {
  ModelConfig c{};
  c.type = "gpt";
  c.vocab_size = 50;
  c.context_length = 20;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  c.dropout = 0.0;
  c.bias = bias;
  return c;
}

// LLaMA's parts: RMSNorm, a SwiGLU MLP of width 40, rotary positions, an untied head.
ModelConfig llama() { return test::llama_parts(gpt(false), 40, 1000); }

// With grouped-query attention: 4 query heads, 1 or 2 key/value heads cached.
ModelConfig llama_gqa(int64_t kv) {
  ModelConfig c = llama();
  c.n_kv_head = kv;
  return c;
}

}  // namespace

TEST_CASE("the key/value cache gives the logits of the model's forward over the whole window") {
  for (const ModelConfig& cfg : {gpt(true), gpt(false), llama(), llama_gqa(2), llama_gqa(1)}) {
    CAPTURE(cfg.bias);
    CAPTURE(cfg.position);
    CAPTURE(cfg.n_kv_head);
    const int64_t T = cfg.context_length, V = cfg.vocab_size;
    auto model = build_model(cfg, T, DType::f32, Device::cpu(), 7);
    model->plan(1);
    // Weights further from their init (wpe starts small), so that every term shows.
    CounterRng rng(5);
    for (auto& p : model->params.all()) {
      float* v = p->value.data<float>();
      for (int64_t i = 0; i < p->numel(); ++i) v[i] += 0.1f * static_cast<float>(rng.uniform() - 0.5);
    }
    model->params.sync_compute();
    Tensor x = Tensor::zeros(Shape{1, T}, DType::i32);
    std::vector<int32_t> tokens(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) x.data<int32_t>()[t] = tokens[t] = static_cast<int32_t>(rng.below(V));
    Ctx ctx;
    ctx.training = false;
    const Tensor want = model->forward_layers(x, ctx);  // (1, T, V)
    REQUIRE(want.shape() == (Shape{1, T, V}));

    KvDecoder dec(model->params, cfg);
    auto check_row = [&](const std::vector<float>& got, int64_t t) {
      CAPTURE(t);
      double worst = 0, scale = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double w = want.data<float>()[t * V + v];
        worst = std::max(worst, std::abs(got[v] - w));
        scale = std::max(scale, std::abs(w));
      }
      CHECK(scale > 0.1);
      CHECK(worst <= 2e-5 * scale);
    };
    const int64_t prompt = 7;
    check_row(dec.append(std::span(tokens).first(prompt)), prompt - 1);
    for (int64_t t = prompt; t < T; ++t) check_row(dec.append(std::span(tokens).subspan(t, 1)), t);
    CHECK(dec.length() == T);
    // Full: no position left; after a reset the same tokens give the same logits.
    CHECK_THROWS_AS(dec.append(std::span(tokens).first(1)), InternalError);
    dec.reset();
    check_row(dec.append(std::span(tokens).first(T)), T - 1);
  }
}

TEST_CASE("the key/value cache refuses what it cannot decode") {
  ModelConfig cnn{};
  cnn.type = "cnn";
  ParamStore none;
  CHECK_THROWS_AS(KvDecoder(none, cnn), ConfigError);
  CHECK_THROWS_WITH_AS(KvDecoder(none, gpt(true)), doctest::Contains("the model has no parameter 'wte.weight'"),
                       InputError);
}
