#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "model/fixture.h"
#include "optim/optimizer.h"

using namespace dtrain;
using dtrain::testing::Fixture;
using dtrain::testing::fixture_path;

namespace {

OptimConfig base_config(const std::string& name) {
  OptimConfig c{};
  c.name = name;
  c.lr = 1e-2;
  c.min_lr = 0;
  c.warmup_steps = 0;
  c.schedule = "cosine";
  c.decay_steps = 0;
  c.weight_decay = name == "adamw" ? 0.1 : 0.01;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.momentum = 0.9;
  c.nesterov = false;
  c.grad_clip = 0;
  return c;
}

void load(Tensor t, const std::vector<double>& v) {
  REQUIRE(t.numel() == static_cast<int64_t>(v.size()));
  std::copy(v.begin(), v.end(), t.data<double>());
}

void check_close(const Tensor& t, const std::vector<double>& ref) {
  REQUIRE(t.numel() == static_cast<int64_t>(ref.size()));
  for (size_t i = 0; i < ref.size(); ++i) CHECK(t.data<double>()[i] == doctest::Approx(ref[i]).epsilon(1e-12));
}

void run_against_pytorch(const std::string& name, OptimConfig cfg) {
  Fixture fx(fixture_path("optim.fix"));
  ParamStore ps;
  Param& w = ps.add("w", Shape{3, 4}, Init::zeros(), /*decay=*/true);
  Param& b = ps.add("b", Shape{4}, Init::zeros(), /*decay=*/false);
  ps.allocate(DType::f64, Device::cpu(), 0);
  load(w.value, fx.at("w0").f);
  load(b.value, fx.at("b0").f);
  auto opt = make_optimizer(cfg, ps);
  for (int k = 0; k < 3; ++k) {
    load(w.grad, fx.at(fmt::format("grad_w/{}", k)).f);
    load(b.grad, fx.at(fmt::format("grad_b/{}", k)).f);
    opt->step(fx.at("lrs").f[k]);
    check_close(w.value, fx.at(fmt::format("{}/w/{}", name, k)).f);
    check_close(b.value, fx.at(fmt::format("{}/b/{}", name, k)).f);
  }
  CHECK(opt->steps_done() == 3);
}

}  // namespace

TEST_CASE("AdamW matches torch.optim.AdamW (decay on weights, not on biases)") {
  run_against_pytorch("adamw", base_config("adamw"));
}

TEST_CASE("SGD with momentum matches torch.optim.SGD") {
  run_against_pytorch("sgd", base_config("sgd"));
}

TEST_CASE("SGD with Nesterov momentum matches torch.optim.SGD(nesterov=True)") {
  OptimConfig c = base_config("sgd");
  c.nesterov = true;
  run_against_pytorch("sgd_nesterov", c);
}

TEST_CASE("learning-rate schedule: warm-up, cosine and linear decay, floor") {
  OptimConfig c = base_config("adamw");
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup_steps = 10;
  CHECK(learning_rate(c, 110, 0) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 110, 9) == doctest::Approx(1.0));
  CHECK(learning_rate(c, 110, 10) == doctest::Approx(1.0));
  CHECK(learning_rate(c, 110, 60) == doctest::Approx(0.55));  // cosine half-way
  CHECK(learning_rate(c, 110, 110) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 110, 500) == doctest::Approx(0.1));
  c.schedule = "linear";
  CHECK(learning_rate(c, 110, 35) == doctest::Approx(1.0 - 0.9 * 0.25));
  c.decay_steps = 60;  // decay ends early, then stays at min_lr
  CHECK(learning_rate(c, 110, 35) == doctest::Approx(0.55));
  CHECK(learning_rate(c, 110, 80) == doctest::Approx(0.1));
  c.schedule = "constant";
  CHECK(learning_rate(c, 110, 80) == doctest::Approx(1.0));
  CHECK(learning_rate(c, 110, 4) == doctest::Approx(0.5));
}

TEST_CASE("warmup-stable-decay: lr held until decay_start, then 1 - sqrt, linear or cosine to min_lr") {
  OptimConfig c = base_config("adamw");
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup_steps = 10;
  c.decay_start = 90;
  c.decay_steps = 110;
  c.schedule = "sqrt";
  CHECK(learning_rate(c, 110, 9) == doctest::Approx(1.0));  // the warmup's end
  for (int64_t step : {10, 50, 89}) CHECK(learning_rate(c, 110, step) == 1.0);  // stable
  CHECK(learning_rate(c, 110, 90) == 1.0);                                       // the decay's first step
  CHECK(learning_rate(c, 110, 95) == doctest::Approx(0.1 + 0.9 * (1 - std::sqrt(0.25))));
  CHECK(learning_rate(c, 110, 105) == doctest::Approx(0.1 + 0.9 * (1 - std::sqrt(0.75))));
  CHECK(learning_rate(c, 110, 110) == doctest::Approx(0.1));
  c.schedule = "linear";
  CHECK(learning_rate(c, 110, 100) == doctest::Approx(0.55));
  c.schedule = "cosine";
  CHECK(learning_rate(c, 110, 100) == doctest::Approx(0.55));
  CHECK(learning_rate(c, 110, 95) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4))));
  // decay_start 0 (or below the warmup's end): the decay starts after the warmup, as without it.
  for (int64_t start : {0, 5}) {
    c.decay_start = start;
    CHECK(learning_rate(c, 110, 60) == doctest::Approx(0.55));
  }
}

TEST_CASE("gradient clipping by global norm, folded into the update") {
  ParamStore ps;
  Param& a = ps.add("a", Shape{2}, Init::zeros(), true);
  Param& b = ps.add("b", Shape{1}, Init::zeros(), false);
  ps.allocate(DType::f64, Device::cpu(), 0);
  a.grad.data<double>()[0] = 3, a.grad.data<double>()[1] = 0, b.grad.data<double>()[0] = 4;
  const double norm = std::sqrt(grad_sum_squares(ps, true));
  CHECK(norm == doctest::Approx(5.0).epsilon(1e-15));
  CHECK(clip_scale(norm, 0) == 1.0);   // off
  CHECK(clip_scale(norm, 10) == 1.0);  // below the limit
  CHECK(clip_scale(norm, 1) == doctest::Approx(0.2));
  // SGD without momentum or decay: w -= lr * scale * g.
  OptimConfig c = base_config("sgd");
  c.momentum = 0;
  c.weight_decay = 0;
  auto opt = make_optimizer(c, ps);
  opt->step(1.0, clip_scale(norm, 1));
  CHECK(a.value.data<double>()[0] == doctest::Approx(-0.6));
  CHECK(b.value.data<double>()[0] == doctest::Approx(-0.8));
}

TEST_CASE("optimizers over flat ranges (ZeRO-1 shards) update exactly like one over everything") {
  for (const char* name : {"adamw", "sgd"}) {
    CAPTURE(name);
    auto make_store = [] {
      auto ps = std::make_unique<ParamStore>();
      ps->add("a.weight", Shape{5, 7}, Init::normal(1.0), true);
      ps->add("a.bias", Shape{5}, Init::normal(1.0), false);
      ps->add("b.weight", Shape{3, 11}, Init::normal(1.0), true);
      ps->allocate(DType::f32, Device::cpu(), 3);
      for (const auto& p : ps->all())
        for (int64_t i = 0; i < p->numel(); ++i) p->grad.data<float>()[i] = std::sin(float(i + p->offset));
      return ps;
    };
    auto whole = make_store(), split = make_store();
    auto full = make_optimizer(base_config(name), *whole);
    const int64_t n = split->values().numel();
    const std::vector<int64_t> cuts{0, 9, 40, n};  // cuts inside parameters on purpose
    std::vector<std::unique_ptr<Optimizer>> shards;
    for (size_t k = 0; k + 1 < cuts.size(); ++k)
      shards.push_back(make_optimizer(base_config(name), *split, FlatRange{cuts[k], cuts[k + 1]}));
    for (int step = 0; step < 3; ++step) {
      full->step(1e-2, 0.5);
      for (auto& s : shards) s->step(1e-2, 0.5);
    }
    CHECK(shards[1]->state()[0].second.numel() == 31);
    CHECK(std::memcmp(whole->values().raw(), split->values().raw(), whole->values().bytes()) == 0);
  }
}
