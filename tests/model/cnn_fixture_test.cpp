// The tiny CNN against PyTorch (tools/fixtures/cnn_fixture.py, float64):
// logits, loss, every parameter gradient, the running statistics after one
// training forward, and evaluation-mode logits with those statistics.
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

ModelConfig fixture_config(const Fixture& fx) {
  const std::vector<int64_t>& k = fx.at("config").i;  // C, image, classes, stem, B, pool
  ModelConfig cfg{};
  cfg.type = "cnn";
  cfg.in_channels = k[0];
  cfg.image_size = k[1];
  cfg.num_classes = k[2];
  cfg.stem_channels = k[3];
  cfg.stem_pool = k[5] ? "max" : "none";
  cfg.channels = fx.at("channels").i;
  cfg.blocks = fx.at("blocks").i;
  return cfg;
}

}  // namespace

TEST_CASE("tiny CNN matches PyTorch: logits, loss, gradients, running statistics (fp64)") {
  const Fixture fx(fixture_path("cnn_tiny.fix"));
  const ModelConfig cfg = fixture_config(fx);
  const int64_t B = fx.at("config").i[4];
  auto m = build_model(cfg, 0, DType::f64, Device::cpu(), 1);
  CHECK(m->params.num_trainable() == fx.at("num_params").i[0]);
  CHECK(m->cost(B).params == fx.at("num_params").i[0]);

  // Every parameter and buffer comes from the fixture, and every one of them exists here.
  int64_t loaded = 0;
  for (const auto& [name, arr] : fx.all()) {
    const bool param = name.starts_with("param/"), buffer = name.starts_with("buffer/");
    if (!param && !buffer) continue;
    const std::string pname = name.substr(param ? 6 : 7);
    Param* p = m->params.find(pname);
    REQUIRE_MESSAGE(p != nullptr, "no parameter ", pname);
    CHECK(p->trainable == param);
    REQUIRE(p->numel() == arr.numel());
    std::copy(arr.f.begin(), arr.f.end(), p->value.data<double>());
    ++loaded;
  }
  CHECK(loaded == static_cast<int64_t>(m->params.all().size()));

  m->plan(B);
  REQUIRE(m->input_shape(B) == Shape{B, cfg.in_channels, cfg.image_size, cfg.image_size});
  REQUIRE(m->target_shape(B) == Shape{B});
  Tensor x = Tensor::empty(m->input_shape(B), m->input_dtype());
  Tensor y = Tensor::empty(m->target_shape(B), DType::i32);
  std::copy(fx.at("images").f.begin(), fx.at("images").f.end(), x.data<double>());
  for (int64_t i = 0; i < B; ++i) y.data<int32_t>()[i] = static_cast<int32_t>(fx.at("targets").i[i]);

  // Model::forward, one layer at a time so that the logits can be compared too.
  Ctx ctx;
  Tensor h = x;
  for (const auto& l : m->layers) h = l->forward(h, ctx);
  REQUIRE(h.shape() == Shape{B, cfg.num_classes});
  const double* lp = h.data<double>();
  CHECK(rel_error(fx.at("logits"), [&](int64_t i) { return lp[i]; }) < 1e-12);
  CHECK(m->loss->forward(h, y).loss == doctest::Approx(fx.at("loss").f[0]).epsilon(1e-12));

  m->params.zero_grads();
  m->backward(1.0, ctx);
  for (const auto& p : m->params.all()) {
    CAPTURE(p->name);
    if (p->trainable) {
      const double* g = p->grad.data<double>();
      CHECK(rel_error(fx.at("grad/" + p->name), [&](int64_t i) { return g[i]; }) < 1e-9);
    } else {
      const double* v = p->value.data<double>();
      CHECK(rel_error(fx.at("after/" + p->name), [&](int64_t i) { return v[i]; }) < 1e-12);
    }
  }

  // Evaluation mode normalises with the running statistics just updated.
  ctx.training = false;
  h = x;
  for (const auto& l : m->layers) h = l->forward(h, ctx);
  const double* ep = h.data<double>();
  CHECK(rel_error(fx.at("eval_logits"), [&](int64_t i) { return ep[i]; }) < 1e-12);
}
