// The GPT's layers one at a time: forward against a direct formula, backward
// against finite differences in fp64.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gradcheck.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/vmath.h"
#include "model/attention.h"
#include "model/dropout.h"
#include "model/embedding.h"
#include "model/layernorm.h"
#include "model/linear.h"
#include "model/lm_head.h"
#include "model/mlp.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

double gelu_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

}  // namespace

TEST_CASE("exp_fast and tanh_fast match the C library in fp32") {
  double worst_exp = 0, worst_tanh = 0;
  for (double x = -87; x <= 88; x += 0.01) {
    const float xf = static_cast<float>(x);
    worst_exp = std::max(worst_exp, std::abs(cpu::exp_fast(xf) / std::exp(double(xf)) - 1));
    worst_tanh = std::max(worst_tanh, std::abs(cpu::tanh_fast(xf) - std::tanh(double(xf))));
  }
  CHECK(worst_exp < 3e-7);   // about 2 ulp
  CHECK(worst_tanh < 2e-7);  // absolute
  CHECK(cpu::exp_fast(-1000.0f) < 1e-37f);
  CHECK(cpu::exp_fast(0.0f) == 1.0f);
  CHECK(cpu::tanh_fast(1000.0f) == 1.0f);
  CHECK(cpu::tanh_fast(-1000.0f) == -1.0f);
  // A diverging run's NaN stays NaN (found by tools/campaign.py: `run --set optim.lr=1e10`
  // under UBSan stopped in exp_fast, converting NaN to int); infinities clamp.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  CHECK(std::isnan(cpu::exp_fast(nan)));
  CHECK(std::isnan(cpu::exp_fast(-nan)));
  CHECK(std::isnan(cpu::tanh_fast(nan)));
  CHECK(cpu::exp_fast(-inf) < 1e-37f);
  CHECK(std::isfinite(cpu::exp_fast(inf)));
  CHECK(cpu::exp_fast(inf) > 1e38f);
}

TEST_CASE("layernorm: forward matches the formula, backward matches finite differences") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    const int64_t C = 10;
    ParamStore ps;
    LayerNorm ln(ps, "ln", C, bias);
    ps.allocate(DType::f64, Device::cpu(), 1);
    CHECK(ps.all().size() == (bias ? 2u : 1u));
    for (const auto& p : ps.all()) CHECK_FALSE(p->decay);
    perturb_params(ps, 2, 0.5);
    const Shape s{3, 5, C};
    ln.plan(s, DType::f64, Exec::cpu());
    Tensor x = random_tensor(s, 3, 2.0);
    Ctx ctx;

    Tensor y = ln.forward(x, ctx);
    const double* xp = x.data<double>();
    const double* w = ps.find("ln.weight")->value.data<double>();
    const double* b = bias ? ps.find("ln.bias")->value.data<double>() : nullptr;
    for (int64_t r = 0; r < 15; ++r) {
      double m = 0, v = 0;
      for (int64_t j = 0; j < C; ++j) m += xp[r * C + j] / C;
      for (int64_t j = 0; j < C; ++j) v += (xp[r * C + j] - m) * (xp[r * C + j] - m) / C;
      for (int64_t j = 0; j < C; ++j) {
        const double ref = (xp[r * C + j] - m) / std::sqrt(v + 1e-5) * w[j] + (b ? b[j] : 0);
        CHECK(y.data<double>()[r * C + j] == doctest::Approx(ref).epsilon(1e-13));
      }
    }

    check_layer(ln, ps, x, ctx, 4, {.max_samples = 40});

    // backward_add adds the residual gradient in the same pass.
    Tensor dy = random_tensor(s, 5), dres = random_tensor(s, 6);
    ln.forward(x, ctx);
    Tensor plain = clone(ln.backward(dy, ctx));
    Tensor fused = ln.backward_add(dy, dres);
    for (int64_t i = 0; i < x.numel(); ++i)
      CHECK(fused.data<double>()[i] ==
            doctest::Approx(plain.data<double>()[i] + dres.data<double>()[i]).epsilon(1e-14));
  }
}

TEST_CASE("layernorm: parameter gradients do not depend on the thread count") {
  // 200 rows: more than the fixed number of reduction chunks.
  const int64_t C = 24;
  ParamStore ps;
  LayerNorm ln(ps, "ln", C, true);
  ps.allocate(DType::f32, Device::cpu(), 1);
  const Shape s{200, C};
  ln.plan(s, DType::f32, Exec::cpu());
  Tensor x = Tensor::empty(s, DType::f32), dy = Tensor::empty(s, DType::f32);
  CounterRng rng(7);
  for (int64_t i = 0; i < x.numel(); ++i) {
    x.data<float>()[i] = static_cast<float>(rng.normal());
    dy.data<float>()[i] = static_cast<float>(rng.normal());
  }
  auto grads = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    ps.zero_grads();
    ln.forward(x, Ctx{});
    Tensor dx = clone(ln.backward(dy, Ctx{}));
    omp_set_num_threads(saved);
    return std::make_pair(clone(ps.grads()), dx);
  };
  auto [g1, dx1] = grads(1);
  auto [g3, dx3] = grads(3);
  CHECK(std::memcmp(g1.raw(), g3.raw(), g1.bytes()) == 0);
  CHECK(std::memcmp(dx1.raw(), dx3.raw(), dx1.bytes()) == 0);
}

TEST_CASE("GELU MLP: forward matches the tanh formula, backward matches finite differences") {
  const int64_t C = 6;
  ParamStore ps;
  Mlp mlp(ps, "mlp", C, true, 0.1);
  ps.allocate(DType::f64, Device::cpu(), 1);
  perturb_params(ps, 2, 0.4);
  const Shape s{2, 3, C};
  mlp.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 3);
  Ctx ctx;

  // Reference: proj(gelu(fc(x))) with the weights as PyTorch stores them.
  Tensor y = mlp.forward(x, ctx);
  const double* fw = ps.find("mlp.fc.weight")->value.data<double>();     // (4C, C)
  const double* fb = ps.find("mlp.fc.bias")->value.data<double>();       // (4C)
  const double* pw = ps.find("mlp.proj.weight")->value.data<double>();   // (C, 4C)
  const double* pb = ps.find("mlp.proj.bias")->value.data<double>();     // (C)
  for (int64_t r = 0; r < 6; ++r) {
    std::vector<double> h(4 * C);
    for (int64_t k = 0; k < 4 * C; ++k) {
      double a = fb[k];
      for (int64_t j = 0; j < C; ++j) a += fw[k * C + j] * x.data<double>()[r * C + j];
      h[k] = gelu_ref(a);
    }
    for (int64_t j = 0; j < C; ++j) {
      double a = pb[j];
      for (int64_t k = 0; k < 4 * C; ++k) a += pw[j * 4 * C + k] * h[k];
      CHECK(y.data<double>()[r * C + j] == doctest::Approx(a).epsilon(1e-13));
    }
  }
  check_layer(mlp, ps, x, ctx, 4);
}

TEST_CASE("GELU: the fp32 kernel follows the fp64 one") {
  // Forward and backward over [-8, 8], where tanh goes from -1 to 1.
  const int64_t n = 1601;
  std::vector<float> xf(n), yf(n), df(n), ones(n, 1.0f);
  std::vector<double> xd(n), yd(n), dd(n), onesd(n, 1.0);
  for (int64_t i = 0; i < n; ++i) xd[i] = xf[i] = static_cast<float>(-8.0 + 0.01 * i);
  cpu::gelu_forward<float>(xf.data(), n, yf.data());
  cpu::gelu_forward<double>(xd.data(), n, yd.data());
  cpu::gelu_backward<float>(xf.data(), ones.data(), n, df.data());
  cpu::gelu_backward<double>(xd.data(), onesd.data(), n, dd.data());
  for (int64_t i = 0; i < n; ++i) {
    CAPTURE(xd[i]);
    CHECK(yd[i] == doctest::Approx(gelu_ref(xd[i])).epsilon(1e-14));
    CHECK(std::abs(yf[i] - yd[i]) < 2e-6 * std::max(1.0, std::abs(xd[i])));
    CHECK(std::abs(df[i] - dd[i]) < 2e-6);
  }
}

TEST_CASE("attention kernel: forward matches a direct causal softmax(QK^T/sqrt(hs)) V") {
  // T = 70 spans two query blocks, the second one partial.
  const int64_t B = 2, T = 70, C = 12, nh = 3, hs = C / nh;
  Tensor qkv = random_tensor(Shape{B, T, 3 * C}, 1);
  Tensor att = Tensor::empty(Shape{B, nh, T, T}, DType::f64);
  Tensor y = Tensor::empty(Shape{B, T, C}, DType::f64);
  cpu::attention_forward<double>(qkv.data<double>(), B, T, C, nh, nh, att.data<double>(), y.data<double>(),
                                 nullptr, 1);
  const double* in = qkv.data<double>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < T; i += 3) {
        const double* q = in + (b * T + i) * 3 * C + h * hs;
        std::vector<double> s(i + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          const double* k = in + (b * T + j) * 3 * C + C + h * hs;
          s[j] = 0;
          for (int64_t d = 0; d < hs; ++d) s[j] += q[d] * k[d] / std::sqrt(double(hs));
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += s[j] = std::exp(s[j] - mx);
        for (int64_t d = 0; d < hs; ++d) {
          double o = 0;
          for (int64_t j = 0; j <= i; ++j) o += s[j] / sum * in[(b * T + j) * 3 * C + 2 * C + h * hs + d];
          CHECK(y.data<double>()[(b * T + i) * C + h * hs + d] == doctest::Approx(o).epsilon(1e-12));
        }
        CHECK(att.data<double>()[((b * nh + h) * T + i) * T] == doctest::Approx(s[0] / sum).epsilon(1e-12));
      }
}

TEST_CASE("attention: the fp32 kernel follows the fp64 one") {
  const int64_t B = 1, T = 130, C = 16, nh = 2;
  Tensor qkvd = random_tensor(Shape{B, T, 3 * C}, 1, 2.0);
  Tensor dyd = random_tensor(Shape{B, T, C}, 2);
  Tensor qkvf = Tensor::empty(qkvd.shape(), DType::f32), dyf = Tensor::empty(dyd.shape(), DType::f32);
  for (int64_t i = 0; i < qkvd.numel(); ++i) qkvf.data<float>()[i] = static_cast<float>(qkvd.data<double>()[i]);
  for (int64_t i = 0; i < dyd.numel(); ++i) dyf.data<float>()[i] = static_cast<float>(dyd.data<double>()[i]);
  auto run = [&](auto t, const Tensor& qkv, const Tensor& dy) {
    using F = decltype(t);
    const DType dt = dtype_of<F>();
    Tensor att = Tensor::empty(Shape{B, nh, T, T}, dt), y = Tensor::empty(Shape{B, T, C}, dt);
    Tensor scratch = Tensor::empty(Shape{4 * cpu::attention_scratch_size(T)}, dt);
    Tensor dqkv = Tensor::empty(qkv.shape(), dt);
    cpu::attention_forward<F>(qkv.data<F>(), B, T, C, nh, nh, att.data<F>(), y.data<F>(), scratch.data<F>(), 4);
    cpu::attention_backward<F>(dy.data<F>(), qkv.data<F>(), att.data<F>(), B, T, C, nh, nh,
                               scratch.data<F>(), 4, dqkv.data<F>());
    std::vector<double> out;
    for (int64_t i = 0; i < y.numel(); ++i) out.push_back(y.data<F>()[i]);
    for (int64_t i = 0; i < dqkv.numel(); ++i) out.push_back(dqkv.data<F>()[i]);
    return out;
  };
  std::vector<double> d = run(double{}, qkvd, dyd), f = run(float{}, qkvf, dyf);
  double scale = 0;
  for (double v : d) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < d.size(); ++i) CHECK(std::abs(f[i] - d[i]) < 1e-5 * scale);
}

TEST_CASE("attention layer: causal, and backward matches finite differences") {
  const int64_t B = 2, T = 70, C = 8, nh = 2;
  ParamStore ps;
  CausalSelfAttention attn(ps, "attn", C, nh, true, 0.1);
  ps.allocate(DType::f64, Device::cpu(), 1);
  perturb_params(ps, 2, 0.4);
  const Shape s{B, T, C};
  attn.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 3);
  Ctx ctx;

  // Changing position 40 of sample 1 changes no output before it.
  Tensor y0 = clone(attn.forward(x, ctx));
  x.data<double>()[(1 * T + 40) * C + 3] += 0.5;
  Tensor y1 = clone(attn.forward(x, ctx));
  for (int64_t t = 0; t < T; ++t) {
    double diff = 0;
    for (int64_t j = 0; j < C; ++j)
      diff += std::abs(y1.data<double>()[(T + t) * C + j] - y0.data<double>()[(T + t) * C + j]);
    CAPTURE(t);
    if (t < 40)
      CHECK(diff == 0);
    else
      CHECK(diff > 0);
  }
  check_layer(attn, ps, x, ctx, 4, {.max_samples = 24});
}

TEST_CASE("attention layer rejects n_embd not divisible by n_head") {
  ParamStore ps;
  CHECK_THROWS_AS(CausalSelfAttention(ps, "attn", 10, 3, true, 0.1), ConfigError);
}

TEST_CASE("embedding: forward is wte(tok) + wpe(t), wte and wpe gradients match finite differences") {
  const int64_t V = 11, ctxlen = 9, C = 6, B = 3, T = 7;
  ParamStore ps;
  TokenPositionEmbedding emb(ps, "embed", V, ctxlen, C, 0.0);
  ps.allocate(DType::f64, Device::cpu(), 1);
  CHECK(ps.find("wte.weight")->shape == Shape{V, C});
  CHECK(ps.find("wpe.weight")->shape == Shape{ctxlen, C});
  const Shape s{B, T};
  emb.plan(s, DType::f64, Exec::cpu());
  Tensor tok = Tensor::empty(s, DType::i32);
  for (int64_t i = 0; i < B * T; ++i) tok.data<int32_t>()[i] = static_cast<int32_t>((i * 7) % 5);  // repeats
  Ctx ctx;
  Tensor y = emb.forward(tok, ctx);
  CHECK(y.shape() == Shape{B, T, C});
  const double* wte = ps.find("wte.weight")->value.data<double>();
  const double* wpe = ps.find("wpe.weight")->value.data<double>();
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t j = 0; j < C; ++j)
      CHECK(y.data<double>()[r * C + j] == wte[tok.data<int32_t>()[r] * C + j] + wpe[(r % T) * C + j]);

  ps.zero_grads();
  check_layer(emb, ps, tok, ctx, 4, {.max_samples = 66});
  // Tokens 5.. never occur and positions T.. are never used: no gradient.
  const double* gte = ps.find("wte.weight")->grad.data<double>();
  const double* gpe = ps.find("wpe.weight")->grad.data<double>();
  for (int64_t j = 5 * C; j < V * C; ++j) CHECK(gte[j] == 0);
  for (int64_t j = T * C; j < ctxlen * C; ++j) CHECK(gpe[j] == 0);
}

TEST_CASE("embedding rejects bad token ids and over-long sequences") {
  ParamStore ps;
  TokenPositionEmbedding emb(ps, "embed", 11, 4, 6, 0.0);
  ps.allocate(DType::f32, Device::cpu(), 1);
  emb.plan(Shape{2, 5}, DType::f32, Exec::cpu());
  Tensor tok = Tensor::zeros(Shape{2, 4}, DType::i32);
  CHECK_NOTHROW(emb.forward(tok, Ctx{}));
  tok.data<int32_t>()[5] = 11;
  CHECK_THROWS_WITH_AS(emb.forward(tok, Ctx{}), doctest::Contains("token id 11"), InputError);
  tok.data<int32_t>()[5] = -1;
  CHECK_THROWS_AS(emb.forward(tok, Ctx{}), InputError);
  CHECK_THROWS_WITH_AS(emb.forward(Tensor::zeros(Shape{2, 5}, DType::i32), Ctx{}),
                       doctest::Contains("context length 4"), InputError);
}

TEST_CASE("dropout: inverted scaling, rate, eval identity, keyed masks, finite differences") {
  const double p = 0.25;
  Dropout drop("blocks.0.attn.drop", p);
  const Shape s{4, 50, 8};
  drop.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 1);
  Ctx train{.training = true, .seed = 9, .step = 3, .sample_offset = 0};

  Tensor y = clone(drop.forward(x, train));
  int64_t dropped = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = y.data<double>()[i];
    if (v == 0)
      ++dropped;
    else
      CHECK(v == doctest::Approx(x.data<double>()[i] / (1 - p)).epsilon(1e-15));
  }
  CHECK(std::abs(double(dropped) / x.numel() - p) < 0.04);

  // Eval mode is the identity (the input itself, no copy).
  Ctx eval = train;
  eval.training = false;
  CHECK(drop.forward(x, eval).raw() == x.raw());

  // The mask changes with the step, the seed and the layer name.
  auto mask_of = [&](Dropout& d, Ctx c) {
    Tensor out = d.forward(x, c);
    std::vector<bool> m;
    for (int64_t i = 0; i < x.numel(); ++i) m.push_back(out.data<double>()[i] != 0);
    return m;
  };
  Ctx other_step = train, other_seed = train;
  other_step.step = 4;
  other_seed.seed = 10;
  Dropout other_name("blocks.1.attn.drop", p);
  other_name.plan(s, DType::f64, Exec::cpu());
  const auto m0 = mask_of(drop, train);
  CHECK(m0 == mask_of(drop, train));
  CHECK(m0 != mask_of(drop, other_step));
  CHECK(m0 != mask_of(drop, other_seed));
  CHECK(m0 != mask_of(other_name, train));

  // A batch of 4 run as 2 + 2 (sample_offset 0 and 2) gets the same masks.
  Ctx second = train;
  second.sample_offset = 2;
  Tensor a = clone(drop.forward(x.narrow0(0, 2), train));
  Tensor b = clone(drop.forward(x.narrow0(2, 4), second));
  CHECK(std::memcmp(a.raw(), y.raw(), a.bytes()) == 0);
  CHECK(std::memcmp(b.raw(), y.narrow0(2, 4).raw(), b.bytes()) == 0);

  // forward_add: resid + dropout(x).
  Tensor resid = random_tensor(s, 2);
  Tensor z = drop.forward_add(x, resid, train);
  for (int64_t i = 0; i < x.numel(); ++i)
    CHECK(z.data<double>()[i] == doctest::Approx(resid.data<double>()[i] + y.data<double>()[i]).epsilon(1e-15));

  ParamStore none;
  check_layer(drop, none, x, train, 4, {.max_samples = 40});
}

TEST_CASE("dropout of rate 0: hands its input on, and keeps an output buffer only to add a residual into") {
  const Shape s{2, 3, 4};
  Tensor x = random_tensor(s, 1), resid = random_tensor(s, 2);
  const Ctx train{.training = true, .seed = 9};
  Dropout alone("embed.drop", 0.0);
  alone.plan(s, DType::f64, Exec::cpu());
  CHECK(alone.forward(x, train).raw() == x.raw());
  CHECK(alone.cost(s).act_bytes == 0);
  CHECK_THROWS_AS(alone.forward_add(x, resid, train), InternalError);  // no buffer to add into
  Dropout with_residual("blocks.0.mlp.drop", 0.0, /*adds_residual=*/true);
  with_residual.plan(s, DType::f64, Exec::cpu());
  Tensor z = with_residual.forward_add(x, resid, train);
  for (int64_t i = 0; i < x.numel(); ++i)
    CHECK(z.data<double>()[i] == resid.data<double>()[i] + x.data<double>()[i]);
}

TEST_CASE("dropout rejects a rate outside 0 <= p < 1") {
  CHECK_THROWS_AS(Dropout("d", 1.0), ConfigError);
  CHECK_THROWS_AS(Dropout("d", -0.1), ConfigError);
}

TEST_CASE("tied lm_head: logits = x wte^T, x and wte gradients match finite differences") {
  const int64_t V = 13, C = 5;
  ParamStore ps;
  Param& wte = ps.add("wte.weight", Shape{V, C}, Init::normal(0.5), true);
  LmHead head("lm_head", wte);
  ps.allocate(DType::f64, Device::cpu(), 1);
  const Shape s{2, 3, C};
  head.plan(s, DType::f64, Exec::cpu());
  CHECK(head.output_shape(s) == Shape{2, 3, V});
  CHECK(head.cost(s).params == 0);
  Tensor x = random_tensor(s, 3);
  Tensor y = head.forward(x, Ctx{});
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t v = 0; v < V; ++v) {
      double ref = 0;
      for (int64_t j = 0; j < C; ++j) ref += x.data<double>()[r * C + j] * wte.value.data<double>()[v * C + j];
      CHECK(y.data<double>()[r * V + v] == doctest::Approx(ref).epsilon(1e-14));
    }
  check_layer(head, ps, x, Ctx{}, 4, {.max_samples = 30});
}

TEST_CASE("Linear::defer_input: the input gradient first, the hook, then the weight gradient, the same bits") {
  // Sequence parallelism refills a product's kept input behind its input
  // gradient (Block's regather): the weight gradient must read the refilled
  // input, the input gradient must not need it, and the results must be the
  // bits of the usual order.
  const int64_t B = 2, T = 6, C = 8;
  ParamStore ps;
  Linear lin(ps, "fc", C, 4 * C, true, Init::normal(0.3), Init::normal(0.1));
  ps.allocate(DType::f64, Device::cpu(), 1);
  Ctx ctx{.training = true, .seed = 5, .step = 1, .sample_offset = 0};
  Tensor x = random_tensor(Shape{B, T, C}, 3);
  const Tensor dy = random_tensor(Shape{B, T, 4 * C}, 4);
  lin.plan(x.shape(), DType::f64, Exec::cpu());
  Param& w = *ps.find("fc.weight");
  Param& b = *ps.find("fc.bias");

  ps.zero_grads();
  lin.forward(x, ctx);
  const Tensor dx_buffer = lin.backward(dy, ctx);  // the Linear's own buffer
  const Tensor dx_ref = clone(dx_buffer);
  const Tensor dw_ref = clone(w.grad), db_ref = clone(b.grad);

  ps.zero_grads();
  const Tensor kept = clone(x);
  lin.forward(x, ctx);
  // The kept input overwritten (a later block's forward), the input gradient
  // buffer cleared.
  for (int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = 1e6;
  std::memset(dx_buffer.data<double>(), 0, dx_buffer.bytes());
  int calls = 0;
  lin.defer_input([&] {
    ++calls;
    // The input gradient is already there.
    CHECK(std::memcmp(dx_buffer.data<double>(), dx_ref.data<double>(), dx_buffer.bytes()) == 0);
    x.copy_from(kept);
  });
  const Tensor dx2 = lin.backward(dy, ctx);
  CHECK(calls == 1);
  CHECK(std::memcmp(dx2.data<double>(), dx_ref.data<double>(), dx2.bytes()) == 0);
  CHECK(std::memcmp(w.grad.data<double>(), dw_ref.data<double>(), w.grad.bytes()) == 0);
  CHECK(std::memcmp(b.grad.data<double>(), db_ref.data<double>(), b.grad.bytes()) == 0);

  // One backward only: the next runs in the usual order, with no hook.
  ps.zero_grads();
  lin.forward(x, ctx);
  lin.backward(dy, ctx);
  CHECK(calls == 1);
  CHECK(std::memcmp(w.grad.data<double>(), dw_ref.data<double>(), w.grad.bytes()) == 0);
}
