// The CNN's layers one at a time: forward against a direct formula, backward
// (input and parameter gradients) against finite differences in fp64, batch
// norm in training and in evaluation mode.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gradcheck.h"
#include "model/basic_block.h"
#include "model/batchnorm.h"
#include "model/classifier_head.h"
#include "model/conv2d.h"
#include "model/maxpool.h"
#include "model/relu.h"
#include "model/stem.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

// Direct convolution: y[b, o, oh, ow] = bias[o] + sum w[o, c, i, j] x[b, c, oh*s-p+i, ow*s-p+j].
std::vector<double> conv_ref(const Tensor& x, const double* w, const double* bias, int64_t out,
                             int64_t k, int64_t s, int64_t p) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  const double* xp = x.data<double>();
  std::vector<double> y(B * out * Ho * Wo);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double a = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < k; ++i)
              for (int64_t j = 0; j < k; ++j) {
                const int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                  a += w[((o * C + c) * k + i) * k + j] * xp[((b * C + c) * H + ih) * W + iw];
              }
          y[((b * out + o) * Ho + oh) * Wo + ow] = a;
        }
  return y;
}

}  // namespace

TEST_CASE("conv2d: forward matches a direct convolution, backward matches finite differences") {
  struct Case { int64_t c, o, h, w, k, s, p; bool bias; int64_t batch; };
  // Batches above kConvChunks put several images in one GEMM; odd sizes and
  // strides leave partial windows at the border; wide images (22, 40) take the
  // padded-width column layout.
  const Case cases[] = {{3, 4, 5, 5, 3, 1, 1, true, 20},  {2, 3, 7, 6, 3, 2, 1, false, 3},
                        {3, 5, 6, 6, 1, 2, 0, false, 37}, {2, 2, 9, 9, 5, 2, 2, true, 2},
                        {4, 3, 4, 4, 1, 1, 0, true, 1},   {2, 3, 3, 5, 3, 1, 0, false, 18},
                        {2, 3, 4, 22, 3, 1, 1, true, 19}, {2, 2, 3, 40, 5, 1, 2, false, 2}};
  for (const Case& t : cases) {
    INFO("conv ", t.c, "->", t.o, " on ", t.h, "x", t.w, " k", t.k, " s", t.s, " p", t.p,
         " bias ", t.bias, " batch ", t.batch);
    ParamStore ps;
    Conv2d conv(ps, "conv", t.c, t.o, t.k, t.s, t.p, t.bias);
    ps.allocate(DType::f64, Device::cpu(), 1);
    perturb_params(ps, 2, 0.3);
    const Shape s{t.batch, t.c, t.h, t.w};
    conv.plan(s, DType::f64, Exec::cpu());
    Tensor x = random_tensor(s, 3);
    Ctx ctx;
    Tensor y = conv.forward(x, ctx);
    const int64_t Ho = (t.h + 2 * t.p - t.k) / t.s + 1, Wo = (t.w + 2 * t.p - t.k) / t.s + 1;
    REQUIRE(y.shape() == Shape{t.batch, t.o, Ho, Wo});
    const std::vector<double> ref =
        conv_ref(x, ps.find("conv.weight")->value.data<double>(),
                 t.bias ? ps.find("conv.bias")->value.data<double>() : nullptr, t.o, t.k, t.s, t.p);
    for (int64_t i = 0; i < y.numel(); ++i)
      CHECK(y.data<double>()[i] == doctest::Approx(ref[i]).epsilon(1e-13));
    check_layer(conv, ps, x, ctx, 4, {.max_samples = 24});
  }
}

TEST_CASE("conv2d: backward_add adds the residual gradient - no input gradient for the first layer") {
  ParamStore ps;
  Conv2d conv(ps, "conv", 3, 4, 3, 2, 1, false);
  ps.allocate(DType::f64, Device::cpu(), 1);
  const Shape s{5, 3, 6, 6};
  conv.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 1), dy = random_tensor(conv.output_shape(s), 2), dres = random_tensor(s, 3);
  Ctx ctx;
  conv.forward(x, ctx);
  Tensor plain = clone(conv.backward(dy, ctx));
  Tensor g1 = clone(ps.grads());
  Tensor fused = conv.backward_add(dy, dres);
  for (int64_t i = 0; i < x.numel(); ++i)
    CHECK(fused.data<double>()[i] ==
          doctest::Approx(plain.data<double>()[i] + dres.data<double>()[i]).epsilon(1e-14));

  ParamStore ps2;
  Conv2d first(ps2, "conv", 3, 4, 3, 2, 1, false);
  first.set_input_grad(false);
  ps2.allocate(DType::f64, Device::cpu(), 1);
  first.plan(s, DType::f64, Exec::cpu());
  first.forward(x, ctx);
  CHECK_FALSE(first.backward(dy, ctx).defined());
  CHECK(std::memcmp(ps2.grads().raw(), g1.raw(), g1.bytes()) == 0);  // same weight gradient
  CHECK(first.cost(s).bwd_flops == first.cost(s).fwd_flops);
  CHECK(conv.cost(s).bwd_flops == 2 * conv.cost(s).fwd_flops);
  CHECK(conv.cost(s).fwd_flops == 2.0 * 5 * 4 * 3 * 3 * 3 * 3 * 3);  // 2 B O Ho Wo C k k
}

TEST_CASE("conv2d and batch norm: gradients do not depend on the thread count (fp32)") {
  ParamStore ps;
  Conv2d conv(ps, "conv", 4, 6, 3, 1, 1, true);
  BatchNorm2d bn(ps, "bn", 6, true);
  ps.allocate(DType::f32, Device::cpu(), 1);
  const Shape s{40, 4, 7, 7};  // more images than conv chunks
  conv.plan(s, DType::f32, Exec::cpu());
  bn.plan(conv.output_shape(s), DType::f32, Exec::cpu());
  Tensor x = Tensor::empty(s, DType::f32), dy = Tensor::empty(conv.output_shape(s), DType::f32);
  CounterRng rng(7);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < dy.numel(); ++i) dy.data<float>()[i] = static_cast<float>(rng.normal());
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    ps.zero_grads();
    Ctx ctx;
    Tensor y = clone(bn.forward(conv.forward(x, ctx), ctx));
    Tensor dx = clone(conv.backward(bn.backward(dy, ctx), ctx));
    omp_set_num_threads(saved);
    return std::make_tuple(y, dx, clone(ps.grads()));
  };
  auto [y1, dx1, g1] = run(1);
  auto [y3, dx3, g3] = run(3);
  CHECK(std::memcmp(y1.raw(), y3.raw(), y1.bytes()) == 0);
  CHECK(std::memcmp(dx1.raw(), dx3.raw(), dx1.bytes()) == 0);
  CHECK(std::memcmp(g1.raw(), g3.raw(), g1.bytes()) == 0);
}

TEST_CASE("batch norm, training: batch statistics, running statistics, finite differences") {
  for (bool relu : {false, true}) {
    CAPTURE(relu);
    const int64_t C = 3;
    ParamStore ps;
    BatchNorm2d bn(ps, "bn", C, relu);
    ps.allocate(DType::f64, Device::cpu(), 1);
    CHECK(ps.num_trainable() == 2 * C);
    for (const auto& p : ps.all()) CHECK_FALSE(p->decay);
    REQUIRE(ps.find("bn.running_mean") != nullptr);
    CHECK_FALSE(ps.find("bn.running_var")->trainable);
    CHECK(ps.find("bn.running_var")->value.data<double>()[0] == 1.0);
    perturb_params(ps, 2, 0.3);
    const Shape s{4, C, 3, 5};
    bn.plan(s, DType::f64, Exec::cpu());
    Tensor x = random_tensor(s, 3, 2.0);
    std::vector<double> rm0(C), rv0(C);
    for (int64_t c = 0; c < C; ++c) {
      rm0[c] = ps.find("bn.running_mean")->value.data<double>()[c];
      rv0[c] = ps.find("bn.running_var")->value.data<double>()[c] = 1.0 + 0.1 * static_cast<double>(c);
    }
    Ctx ctx;
    Tensor y = bn.forward(x, ctx);
    const double* w = ps.find("bn.weight")->value.data<double>();
    const double* b = ps.find("bn.bias")->value.data<double>();
    const double n = 4 * 15;
    for (int64_t c = 0; c < C; ++c) {
      double m = 0, v = 0;
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t p = 0; p < 15; ++p) m += x.data<double>()[(i * C + c) * 15 + p] / n;
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t p = 0; p < 15; ++p) {
          const double d = x.data<double>()[(i * C + c) * 15 + p] - m;
          v += d * d / n;
        }
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t p = 0; p < 15; ++p) {
          const int64_t at = (i * C + c) * 15 + p;
          double ref = (x.data<double>()[at] - m) / std::sqrt(v + 1e-5) * w[c] + b[c];
          if (relu) ref = std::max(ref, 0.0);
          CHECK(y.data<double>()[at] == doctest::Approx(ref).epsilon(1e-13));
        }
      // momentum 0.1, unbiased variance
      CHECK(ps.find("bn.running_mean")->value.data<double>()[c] ==
            doctest::Approx(0.9 * rm0[c] + 0.1 * m).epsilon(1e-14));
      CHECK(ps.find("bn.running_var")->value.data<double>()[c] ==
            doctest::Approx(0.9 * rv0[c] + 0.1 * v * n / (n - 1)).epsilon(1e-14));
    }
    check_layer(bn, ps, x, ctx, 4, {.max_samples = 40});
  }
}

TEST_CASE("batch norm, evaluation: running statistics, finite differences, nothing updated") {
  const int64_t C = 2;
  ParamStore ps;
  BatchNorm2d bn(ps, "bn", C, true);
  ps.allocate(DType::f64, Device::cpu(), 1);
  perturb_params(ps, 2, 0.3);
  double* rm = ps.find("bn.running_mean")->value.data<double>();
  double* rv = ps.find("bn.running_var")->value.data<double>();
  rm[0] = 0.5, rm[1] = -0.25, rv[0] = 2.0, rv[1] = 0.5;
  const Shape s{3, C, 2, 3};
  bn.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 3);
  Ctx ctx;
  ctx.training = false;
  Tensor y = bn.forward(x, ctx);
  const double* w = ps.find("bn.weight")->value.data<double>();
  const double* b = ps.find("bn.bias")->value.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / 6) % C;
    const double ref = std::max(0.0, (x.data<double>()[i] - rm[c]) / std::sqrt(rv[c] + 1e-5) * w[c] + b[c]);
    CHECK(y.data<double>()[i] == doctest::Approx(ref).epsilon(1e-13));
  }
  check_layer(bn, ps, x, ctx, 4, {.max_samples = 36});
  CHECK(rm[0] == 0.5);
  CHECK(rv[1] == 0.5);

  // A single value per channel cannot be normalised with batch statistics.
  ParamStore ps1;
  BatchNorm2d one(ps1, "bn", C);
  ps1.allocate(DType::f64, Device::cpu(), 1);
  one.plan(Shape{1, C, 1, 1}, DType::f64, Exec::cpu());
  Tensor x1 = random_tensor(Shape{1, C, 1, 1}, 5);
  CHECK_THROWS_AS(one.forward(x1, Ctx{}), RuntimeError);
  CHECK_NOTHROW(one.forward(x1, ctx));
}

TEST_CASE("relu: forward, and backward matches finite differences") {
  ParamStore ps;
  ReLU relu("relu");
  const Shape s{2, 3, 4, 5};
  relu.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 1);
  Tensor y = relu.forward(x, Ctx{});
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(y.data<double>()[i] == std::max(0.0, x.data<double>()[i]));
  check_layer(relu, ps, x, Ctx{}, 2, {.max_samples = 40});
  CHECK(relu.cost(s).params == 0);
}

TEST_CASE("max-pool: forward matches the window maxima, backward matches finite differences") {
  struct Case { int64_t k, s, p, h, w; };
  for (const Case& t : {Case{3, 2, 1, 7, 6}, Case{2, 2, 0, 6, 6}, Case{3, 2, 1, 8, 8}}) {
    INFO("pool k", t.k, " s", t.s, " p", t.p, " on ", t.h, "x", t.w);
    ParamStore ps;
    MaxPool2d pool("pool", t.k, t.s, t.p);
    const Shape s{2, 3, t.h, t.w};
    pool.plan(s, DType::f64, Exec::cpu());
    Tensor x = random_tensor(s, 1);
    Tensor y = pool.forward(x, Ctx{});
    const int64_t Ho = (t.h + 2 * t.p - t.k) / t.s + 1, Wo = (t.w + 2 * t.p - t.k) / t.s + 1;
    REQUIRE(y.shape() == Shape{2, 3, Ho, Wo});
    for (int64_t pl = 0; pl < 6; ++pl)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double m = -std::numeric_limits<double>::infinity();
          for (int64_t i = 0; i < t.k; ++i)
            for (int64_t j = 0; j < t.k; ++j) {
              const int64_t ih = oh * t.s - t.p + i, iw = ow * t.s - t.p + j;
              if (ih >= 0 && ih < t.h && iw >= 0 && iw < t.w)
                m = std::max(m, x.data<double>()[(pl * t.h + ih) * t.w + iw]);
            }
          CHECK(y.data<double>()[(pl * Ho + oh) * Wo + ow] == m);
        }
    check_layer(pool, ps, x, Ctx{}, 2, {.max_samples = 40});
  }
}

TEST_CASE("classifier head: linear of the plane means, backward matches finite differences") {
  const int64_t C = 4, K = 3;
  ParamStore ps;
  ClassifierHead head(ps, "head", C, K);
  ps.allocate(DType::f64, Device::cpu(), 1);
  REQUIRE(ps.find("head.fc.weight") != nullptr);
  CHECK_FALSE(ps.find("head.fc.bias")->decay);
  const Shape s{2, C, 3, 3};
  head.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 1);
  Tensor y = head.forward(x, Ctx{});
  REQUIRE(y.shape() == Shape{2, K});
  const double* w = ps.find("head.fc.weight")->value.data<double>();
  const double* b = ps.find("head.fc.bias")->value.data<double>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < K; ++k) {
      double a = b[k];
      for (int64_t c = 0; c < C; ++c) {
        double m = 0;
        for (int64_t p = 0; p < 9; ++p) m += x.data<double>()[(i * C + c) * 9 + p] / 9;
        a += w[k * C + c] * m;
      }
      CHECK(y.data<double>()[i * K + k] == doctest::Approx(a).epsilon(1e-13));
    }
  check_layer(head, ps, x, Ctx{}, 2);
}

TEST_CASE("stem and basic blocks: backward matches finite differences (training and evaluation)") {
  struct Case { const char* what; int64_t in, out, stride; };
  const Case blocks[] = {{"identity", 4, 4, 1}, {"channels change", 3, 5, 1}, {"stride 2", 3, 4, 2}};
  for (bool training : {true, false}) {
    CAPTURE(training);
    Ctx ctx;
    ctx.training = training;
    for (const Case& t : blocks) {
      CAPTURE(t.what);
      ParamStore ps;
      BasicBlock block(ps, "block", t.in, t.out, t.stride);
      CHECK(block.has_shortcut() == (t.in != t.out || t.stride != 1));
      ps.allocate(DType::f64, Device::cpu(), 1);
      perturb_params(ps, 2, 0.2);
      for (const auto& p : ps.all())  // keep the running variances positive
        if (p->name.ends_with("running_var"))
          for (int64_t i = 0; i < p->numel(); ++i) p->value.data<double>()[i] = 1.0 + 0.1 * double(i);
      const Shape s{3, t.in, 5, 5};
      block.plan(s, DType::f64, Exec::cpu());
      CHECK(block.output_shape(s) == Shape{3, t.out, t.stride == 1 ? 5 : 3, t.stride == 1 ? 5 : 3});
      Tensor x = random_tensor(s, 3);
      check_layer(block, ps, x, ctx, 4, {.max_samples = 24});
    }
    for (bool pool : {false, true}) {
      CAPTURE(pool);
      ParamStore ps;
      Stem stem(ps, "stem", 3, 4, pool, /*input_grad=*/true);
      ps.allocate(DType::f64, Device::cpu(), 1);
      perturb_params(ps, 2, 0.2);
      ps.find("stem.bn.running_var")->value.zero_();
      double* rv = ps.find("stem.bn.running_var")->value.data<double>();
      for (int64_t i = 0; i < 4; ++i) rv[i] = 0.5 + 0.25 * static_cast<double>(i);
      const Shape s{2, 3, 6, 6};
      stem.plan(s, DType::f64, Exec::cpu());
      CHECK(stem.output_shape(s) == Shape{2, 4, pool ? 3 : 6, pool ? 3 : 6});
      Tensor x = random_tensor(s, 3);
      check_layer(stem, ps, x, ctx, 4, {.max_samples = 24});
    }
  }
}
