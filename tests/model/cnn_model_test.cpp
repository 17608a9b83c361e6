// The assembled CNN: layer list, parameter names, decay flags and init,
// config validation, costs (the parameter count against PyTorch's), the whole
// model against finite differences with 3-channel input, smaller batches,
// determinism and fp32 against fp64.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "gradcheck.h"
#include "model/model.h"
#include "ops/cnn.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

ModelConfig tiny_config() {
  ModelConfig c{};
  c.type = "cnn";
  c.in_channels = 3;
  c.image_size = 8;
  c.num_classes = 5;
  c.stem_channels = 4;
  c.channels = {4, 6};
  c.blocks = {2, 1};
  c.stem_pool = "none";
  return c;
}

// configs/cnn-mnist.toml's model.
ModelConfig mnist_config() {
  ModelConfig c = tiny_config();
  c.in_channels = 1;
  c.image_size = 28;
  c.num_classes = 10;
  c.stem_channels = 16;
  c.channels = {16, 32, 64};
  c.blocks = {1, 1, 1};
  return c;
}

// Normal images and class targets for a batch, a pure function of seed.
std::pair<Tensor, Tensor> batch(const Model& m, int64_t b, uint64_t seed, int64_t classes) {
  Tensor x = Tensor::empty(m.input_shape(b), m.dtype), y = Tensor::empty(m.target_shape(b), DType::i32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = rng.normal();
    if (m.dtype == DType::f64) x.data<double>()[i] = v;
    else x.data<float>()[i] = static_cast<float>(v);
  }
  for (int64_t i = 0; i < y.numel(); ++i) y.data<int32_t>()[i] = static_cast<int32_t>(rng.below(classes));
  return {x, y};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

}  // namespace

TEST_CASE("tiny CNN: layers, parameter names, decay flags and torchvision init") {
  ModelConfig cfg = tiny_config();
  cfg.channels = {16, 32};  // enough entries to estimate the init std
  auto m = build_model(cfg, 0, DType::f32, Device::cpu(), 1);
  std::vector<std::string> layers;
  for (const auto& l : m->layers) layers.push_back(l->name());
  CHECK(layers == std::vector<std::string>{"stem", "stages.0.blocks.0", "stages.0.blocks.1",
                                           "stages.1.blocks.0", "head"});
  CHECK(m->sample_shape == Shape{3, 8, 8});
  CHECK(m->target_sample_shape == Shape{});
  CHECK(m->input_dtype() == DType::f32);
  CHECK(m->items_per_sample() == 1);

  std::vector<std::string> names;
  for (const auto& p : m->params.all()) names.push_back(p->name);
  std::vector<std::string> expect{"stem.conv.weight", "head.fc.weight", "head.fc.bias"};
  auto bn = [&](const std::string& pre) {
    for (const char* s : {"weight", "bias", "running_mean", "running_var"}) expect.push_back(pre + "." + s);
  };
  bn("stem.bn");
  for (const char* b : {"stages.0.blocks.0", "stages.0.blocks.1", "stages.1.blocks.0"}) {
    expect.push_back(std::string(b) + ".conv1.weight");
    expect.push_back(std::string(b) + ".conv2.weight");
    bn(std::string(b) + ".bn1");
    bn(std::string(b) + ".bn2");
  }
  // Shortcuts where the shape changes: 4 -> 16 channels, then stride 2.
  for (const char* b : {"stages.0.blocks.0", "stages.1.blocks.0"}) {
    expect.push_back(std::string(b) + ".shortcut.conv.weight");
    bn(std::string(b) + ".shortcut.bn");
  }
  std::sort(names.begin(), names.end());
  std::sort(expect.begin(), expect.end());
  CHECK(names == expect);

  CHECK(m->params.find("stages.1.blocks.0.conv1.weight")->shape == Shape{32, 16, 3, 3});
  CHECK(m->params.find("stages.1.blocks.0.shortcut.conv.weight")->shape == Shape{32, 16, 1, 1});
  CHECK(m->params.find("head.fc.weight")->shape == Shape{5, 32});
  for (const auto& p : m->params.all()) {
    CAPTURE(p->name);
    const bool conv = p->name.find("conv") != std::string::npos;
    CHECK(p->decay == (conv || p->name == "head.fc.weight"));
    const bool buffer = p->name.find("running_") != std::string::npos;
    CHECK(p->trainable == !buffer);
    const float* v = p->value.data<float>();
    double s2 = 0, mx = 0;
    for (int64_t i = 0; i < p->numel(); ++i) {
      s2 += double(v[i]) * v[i];
      mx = std::max(mx, std::abs(double(v[i])));
    }
    const double std = std::sqrt(s2 / p->numel());
    if (conv) {  // Kaiming normal, fan_out, ReLU gain
      const double fan_out = static_cast<double>(p->shape[0] * p->shape[2] * p->shape[3]);
      CHECK(std == doctest::Approx(std::sqrt(2.0 / fan_out)).epsilon(p->numel() > 1000 ? 0.05 : 0.2));
    } else if (p->name.starts_with("head")) {  // PyTorch's Linear default: U(+-1/sqrt(in))
      CHECK(mx <= 1.0 / std::sqrt(32.0));
      CHECK(mx > 0.5 / std::sqrt(32.0));
    } else if (p->name.ends_with("bn.weight") || p->name.ends_with("1.weight") ||
               p->name.ends_with("2.weight") || p->name.ends_with("running_var")) {
      CHECK(std == 1.0);
    } else {
      CHECK(std == 0.0);  // batch-norm biases, running means
    }
  }
}

TEST_CASE("CNN config validation names the key and reports every problem") {
  auto problems = [](const ModelConfig& c) {
    try {
      Model m;
      build_cnn(m, c, {});
    } catch (const ConfigError& e) {
      return e.problems();
    }
    return std::vector<std::string>{};
  };
  ModelConfig c = tiny_config();
  CHECK(problems(c).empty());
  c.blocks = {1};
  REQUIRE(problems(c).size() == 1);
  CHECK(problems(c)[0].find("model.blocks") != std::string::npos);
  c = tiny_config();
  c.stem_channels = 0;
  c.channels = {4, -2};
  c.num_classes = 0;
  const auto p = problems(c);
  REQUIRE(p.size() == 3);
  CHECK(p[0].find("model.num_classes") != std::string::npos);
  CHECK(p[1].find("model.stem_channels") != std::string::npos);
  CHECK(p[2].find("model.channels[1]") != std::string::npos);
  c = tiny_config();
  c.channels = {};
  c.blocks = {};
  CHECK(problems(c).size() == 1);
  // Three halvings (max-pool and two later stages) need 8 pixels.
  c = tiny_config();
  c.channels = {4, 6, 8};
  c.blocks = {1, 1, 1};
  c.stem_pool = "max";
  c.image_size = 7;
  REQUIRE(problems(c).size() == 1);
  CHECK(problems(c)[0].find("model.image_size (7)") != std::string::npos);
  c.image_size = 8;
  CHECK(problems(c).empty());
  c.stem_pool = "avg";
  CHECK(problems(c)[0].find("model.stem_pool") != std::string::npos);
}

TEST_CASE("MNIST CNN costs: PyTorch's parameter count, FLOPs of every convolution") {
  auto whole = describe_model(mnist_config(), 0);
  Model& m = *whole;
  // tools/bench/torch_reference.py's CNN (16, 16-32-64, 1 block each) reports 77754.
  int64_t store = 0;
  for (const auto& p : m.params.all()) store += p->trainable ? p->numel() : 0;
  CHECK(store == 77754);
  const int64_t B = 64;
  CHECK(m.cost(B).params == 77754);

  const std::vector<Cost> costs = m.layer_costs(B);
  REQUIRE(costs.size() == 6);  // stem, 3 blocks, head, loss
  auto conv = [&](double cin, double cout, double k, double hw) { return 2.0 * B * cout * hw * cin * k * k; };
  CHECK(costs[0].fwd_flops == conv(1, 16, 3, 28 * 28));
  CHECK(costs[0].bwd_flops == costs[0].fwd_flops);  // the stem needs no input gradient
  CHECK(costs[1].fwd_flops == 2 * conv(16, 16, 3, 28 * 28));
  CHECK(costs[2].fwd_flops == conv(16, 32, 3, 14 * 14) + conv(32, 32, 3, 14 * 14) + conv(16, 32, 1, 14 * 14));
  CHECK(costs[3].fwd_flops == conv(32, 64, 3, 7 * 7) + conv(64, 64, 3, 7 * 7) + conv(32, 64, 1, 7 * 7));
  for (int i = 1; i <= 3; ++i) CHECK(costs[i].bwd_flops == 2 * costs[i].fwd_flops);
  CHECK(costs[4].fwd_flops == 2.0 * B * 64 * 10);
  CHECK(costs[4].params == 64 * 10 + 10);
  // The first block keeps the inputs of conv1, bn1, conv2 and bn2 (each batch
  // norm's output, which its ReLU mask is read from, is the next layer's
  // input: that layer counts it), plus the (C) statistics, all fp32. Its work
  // buffers: the input gradients of conv1, bn1, conv2 and bn2 and bn2's
  // residual gradient, and the two convolutions' planned scratch.
  const int64_t act = B * 16 * 28 * 28;
  CHECK(costs[1].act_bytes == 4 * (4 * act + 4 * 16));
  const ops::ConvGeom g{.c = 16, .h = 28, .w = 28, .o = 16, .kh = 3, .kw = 3, .stride = 1, .pad = 1};
  CHECK(costs[1].work_bytes == 4 * 5 * act + 2 * ops::ConvPlan::scratch_bytes(g, B, DType::f32));
}

TEST_CASE("tiny CNN (3-channel input): dL/dparam matches finite differences for every parameter") {
  ModelConfig cfg = tiny_config();
  cfg.stem_pool = "max";
  auto m = build_model(cfg, 0, DType::f64, Device::cpu(), 1);
  perturb_params(m->params, 2, 0.1);
  for (const auto& p : m->params.all())
    if (p->name.ends_with("running_var")) p->value.data<double>()[0] = 1.0;  // keep it positive
  m->plan(3);
  auto [x, y] = batch(*m, 3, 3, cfg.num_classes);
  Ctx ctx;
  auto loss = [&] { return m->forward(x, y, ctx).loss; };
  loss();
  m->params.zero_grads();
  m->backward(1.0, ctx);
  for (const auto& p : m->params.all()) {
    if (!p->trainable) continue;
    INFO("parameter ", p->name);
    Tensor g = clone(p->grad);
    CHECK(max_abs(g) > 0);
    check_gradient(p->name, p->value, g, loss, {.max_samples = 6});
  }
}

TEST_CASE("CNN: a batch smaller than planned gives the same loss, gradients and statistics") {
  auto big = build_model(tiny_config(), 0, DType::f64, Device::cpu(), 1);
  auto small = build_model(tiny_config(), 0, DType::f64, Device::cpu(), 1);
  big->plan(40);
  small->plan(3);
  auto [x, y] = batch(*small, 3, 3, 5);
  Ctx ctx;
  const double lb = big->forward(x, y, ctx).loss;
  big->backward(1.0, ctx);
  const double ls = small->forward(x, y, ctx).loss;
  small->backward(1.0, ctx);
  CHECK(lb == ls);
  CHECK(same_bits(big->params.grads(), small->params.grads()));
  CHECK(same_bits(big->params.buffers(), small->params.buffers()));
}

TEST_CASE("CNN: passes are bit-identical and evaluation leaves the running statistics alone") {
  ModelConfig cfg = tiny_config();
  cfg.image_size = 16;
  auto m = build_model(cfg, 0, DType::f32, Device::cpu(), 1);
  m->plan(36);  // more images than convolution chunks
  auto [x, y] = batch(*m, 36, 3, cfg.num_classes);
  Ctx ctx;
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

  Tensor stats = clone(m->params.buffers());
  Ctx eval;
  eval.training = false;
  const LossStats e = m->forward(x, y, eval);
  CHECK(e.count == 36);
  CHECK(same_bits(stats, m->params.buffers()));
  m->forward(x, y, ctx);
  CHECK_FALSE(same_bits(stats, m->params.buffers()));
}

TEST_CASE("CNN: fp32 follows fp64 (loss and every gradient)") {
  const ModelConfig cfg = tiny_config();
  auto md = build_model(cfg, 0, DType::f64, Device::cpu(), 1);
  auto mf = build_model(cfg, 0, DType::f32, Device::cpu(), 1);
  for (int64_t i = 0; i < md->params.values().numel(); ++i)
    mf->params.values().data<float>()[i] = static_cast<float>(md->params.values().data<double>()[i]);
  md->plan(4);
  mf->plan(4);
  auto [xd, y] = batch(*md, 4, 3, cfg.num_classes);
  Tensor xf = Tensor::empty(xd.shape(), DType::f32);
  for (int64_t i = 0; i < xd.numel(); ++i) xf.data<float>()[i] = static_cast<float>(xd.data<double>()[i]);
  Ctx ctx;
  const double ld = md->forward(xd, y, ctx).loss, lf = mf->forward(xf, y, ctx).loss;
  CHECK(lf == doctest::Approx(ld).epsilon(1e-5));
  md->backward(1.0, ctx);
  mf->backward(1.0, ctx);
  for (const auto& p : md->params.all()) {
    if (!p->trainable) continue;
    CAPTURE(p->name);
    const Param* q = mf->params.find(p->name);
    const double scale = max_abs(p->grad);
    double err = 0;
    for (int64_t i = 0; i < p->numel(); ++i)
      err = std::max(err, std::abs(p->grad.data<double>()[i] - q->grad.data<float>()[i]));
    CHECK(err <= 1e-4 * scale);
  }
}
