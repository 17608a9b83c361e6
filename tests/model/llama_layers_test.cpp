// LLaMA's parts one at a time (RMSNorm, SwiGLU, rotary embeddings): forward
// against a direct formula written here, backward against finite differences
// in fp64; the fp32 and bf16 kernels against the fp64 one; the ops' fixed
// reduction order (any thread count, the same bits).
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gradcheck.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/rope.h"
#include "model/attention.h"
#include "model/block.h"
#include "model/layernorm.h"
#include "model/mlp.h"
#include "ops/ops.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

double silu(double a) { return a / (1 + std::exp(-a)); }

// q or k of one head (d values) at `position`, turned as RoFormer / GPT-NeoX
// write it: x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1).
std::vector<double> turned(const double* x, int64_t d, int64_t position, double theta) {
  std::vector<double> y(static_cast<size_t>(d));
  const int64_t half = d / 2;
  for (int64_t j = 0; j < d; ++j) {
    const int64_t i = j % half;
    const double angle = static_cast<double>(position) / std::pow(theta, 2.0 * static_cast<double>(i) / d);
    const double rot = j < half ? -x[j + half] : x[j - half];
    y[static_cast<size_t>(j)] = x[j] * std::cos(angle) + rot * std::sin(angle);
  }
  return y;
}

}  // namespace

TEST_CASE("RMSNorm: forward is x / rms(x) * w, backward matches finite differences, no bias") {
  const int64_t C = 12;
  ParamStore ps;
  LayerNorm ln(ps, "ln", C, /*bias=*/true, /*rms=*/true);
  CHECK(ps.find("ln.bias") == nullptr);  // RMSNorm has none, whatever model.bias says
  ps.allocate(DType::f64, Device::cpu(), 1);
  perturb_params(ps, 5, 0.3);
  const Shape s{3, 5, C};
  ln.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 6, 2.0);
  Ctx ctx;
  Tensor y = ln.forward(x, ctx);
  const double* w = ps.find("ln.weight")->value.data<double>();
  for (int64_t r = 0; r < 15; ++r) {
    const double* xr = x.data<double>() + r * C;
    double ms = 0;
    for (int64_t j = 0; j < C; ++j) ms += xr[j] * xr[j] / C;
    for (int64_t j = 0; j < C; ++j)
      CHECK(y.data<double>()[r * C + j] == doctest::Approx(xr[j] / std::sqrt(ms + LayerNorm::kEps) * w[j]).epsilon(1e-13));
  }
  check_layer(ln, ps, x, ctx, 7);
}

TEST_CASE("RMSNorm: the weight gradient does not depend on the thread count, and fp32 and bf16 follow fp64") {
  const int64_t n = 200, C = 40;  // more rows than the fixed reduction chunks
  std::vector<double> xd(n * C), wd(C), dyd(n * C), resd(n * C);
  CounterRng rng(11);
  for (auto& v : xd) v = rng.normal();
  for (auto& v : wd) v = 1 + 0.2 * rng.normal();
  for (auto& v : dyd) v = rng.normal();
  for (auto& v : resd) v = rng.normal();
  // The kernel in T against the fp64 kernel on the same (rounded) inputs.
  auto run = [&](auto tag, int threads, double tol) {
    using T = decltype(tag);
    auto as = [](const std::vector<double>& v) {
      std::vector<T> out(v.size());
      for (size_t i = 0; i < v.size(); ++i) out[i] = T(static_cast<float>(v[i]));
      return out;
    };
    auto back = [](const std::vector<T>& v) {
      std::vector<double> out(v.size());
      for (size_t i = 0; i < v.size(); ++i) out[i] = double(float(v[i]));
      return out;
    };
    auto x = as(xd), w = as(wd), dy = as(dyd), res = as(resd);
    const std::vector<double> x64 = back(x), w64 = back(w), dy64 = back(dy), res64 = back(res);
    std::vector<double> yd(n * C), rd(n), dxd(n * C), dwd(C, 0.0), scd(cpu::rmsnorm_scratch_size(C));
    cpu::rmsnorm_forward<double>(x64.data(), w64.data(), n, C, 1e-5, yd.data(), rd.data());
    cpu::rmsnorm_backward<double>(dy64.data(), x64.data(), w64.data(), rd.data(), res64.data(), n, C, dxd.data(),
                                  dwd.data(), scd.data());
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<T> y(n * C), dx(n * C);
    std::vector<float> r(n), dw(C, 0.0f), sc(cpu::rmsnorm_scratch_size(C));
    cpu::rmsnorm_forward<T>(x.data(), w.data(), n, C, 1e-5f, y.data(), r.data());
    cpu::rmsnorm_backward<T>(dy.data(), x.data(), w.data(), r.data(), res.data(), n, C, dx.data(), dw.data(), sc.data());
    omp_set_num_threads(saved);
    for (int64_t i = 0; i < n * C; ++i) {
      CHECK(static_cast<double>(float(y[i])) == doctest::Approx(yd[i]).epsilon(tol).scale(1));
      CHECK(static_cast<double>(float(dx[i])) == doctest::Approx(dxd[i]).epsilon(tol).scale(1));
    }
    // dw sums fp32 products of the stored inputs: fp32 rounding alone.
    for (int64_t j = 0; j < C; ++j) CHECK(double(dw[j]) == doctest::Approx(dwd[j]).epsilon(1e-5).scale(1));
    return dw;
  };
  const std::vector<float> one = run(float{}, 1, 1e-5), three = run(float{}, 3, 1e-5);
  CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
  run(bf16{}, 2, 2e-2);
}

TEST_CASE("SwiGLU MLP: forward is proj(silu(x Wg) * (x Wu)), backward matches finite differences") {
  const int64_t C = 6, F = 10;
  ParamStore ps;
  Mlp mlp(ps, "mlp", C, true, 0.1, nullptr, false, F, /*swiglu=*/true);
  REQUIRE(ps.find("mlp.fc.weight")->shape == (Shape{2 * F, C}));  // the gate's F rows, then the up-projection's
  REQUIRE(ps.find("mlp.proj.weight")->shape == (Shape{C, F}));
  ps.allocate(DType::f64, Device::cpu(), 1);
  perturb_params(ps, 2, 0.4);
  const Shape s{2, 3, C};
  mlp.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 3);
  Ctx ctx;
  Tensor y = mlp.forward(x, ctx);
  const double* fw = ps.find("mlp.fc.weight")->value.data<double>();
  const double* fb = ps.find("mlp.fc.bias")->value.data<double>();
  const double* pw = ps.find("mlp.proj.weight")->value.data<double>();
  const double* pb = ps.find("mlp.proj.bias")->value.data<double>();
  for (int64_t r = 0; r < 6; ++r) {
    std::vector<double> h(F);
    for (int64_t k = 0; k < F; ++k) {
      double g = fb[k], u = fb[F + k];
      for (int64_t j = 0; j < C; ++j) {
        g += fw[k * C + j] * x.data<double>()[r * C + j];
        u += fw[(F + k) * C + j] * x.data<double>()[r * C + j];
      }
      h[k] = silu(g) * u;
    }
    for (int64_t j = 0; j < C; ++j) {
      double a = pb[j];
      for (int64_t k = 0; k < F; ++k) a += pw[j * F + k] * h[k];
      CHECK(y.data<double>()[r * C + j] == doctest::Approx(a).epsilon(1e-13));
    }
  }
  check_layer(mlp, ps, x, ctx, 4);
}

TEST_CASE("SwiGLU: the fp32 and bf16 kernels follow the fp64 one") {
  const int64_t n = 3, h = 801;  // gates over [-8, 8]
  std::vector<double> fd(n * 2 * h), dgd(n * h), gd(n * h), dfd(n * 2 * h);
  CounterRng rng(3);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < h; ++j) {
      fd[r * 2 * h + j] = -8.0 + 0.02 * j;
      fd[r * 2 * h + h + j] = rng.normal();
      dgd[r * h + j] = rng.normal();
    }
  cpu::swiglu_forward<double>(fd.data(), n, h, gd.data());
  cpu::swiglu_backward<double>(fd.data(), dgd.data(), n, h, dfd.data());
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < h; ++j)
      CHECK(gd[r * h + j] == doctest::Approx(silu(fd[r * 2 * h + j]) * fd[r * 2 * h + h + j]).epsilon(1e-14));
  auto run = [&](auto tag, double tol) {
    using T = decltype(tag);
    std::vector<T> f(fd.size()), dg(dgd.size()), g(gd.size()), df(dfd.size());
    for (size_t i = 0; i < fd.size(); ++i) f[i] = T(static_cast<float>(fd[i]));
    for (size_t i = 0; i < dgd.size(); ++i) dg[i] = T(static_cast<float>(dgd[i]));
    cpu::swiglu_forward<T>(f.data(), n, h, g.data());
    cpu::swiglu_backward<T>(f.data(), dg.data(), n, h, df.data());
    for (size_t i = 0; i < gd.size(); ++i) CHECK(double(float(g[i])) == doctest::Approx(gd[i]).epsilon(tol).scale(1));
    for (size_t i = 0; i < dfd.size(); ++i) CHECK(double(float(df[i])) == doctest::Approx(dfd[i]).epsilon(tol).scale(1));
  };
  run(float{}, 1e-5);
  run(bf16{}, 2e-2);
}

TEST_CASE("rope: turns each head's q and k as RoFormer writes it, leaves v, and the inverse turns back") {
  const int64_t B = 2, T = 5, nh = 3, d = 6, C = nh * d, pos0 = 7;
  const double theta = 100;
  Tensor qkv = random_tensor(Shape{B, T, 3 * C}, 9);
  Tensor before = clone(qkv);
  ops::rope(Exec::cpu(), qkv, nh, theta, pos0, false);
  const double* a = before.data<double>();
  const double* b = qkv.data<double>();
  for (int64_t r = 0; r < B * T; ++r) {
    const int64_t position = pos0 + r % T;
    for (int64_t h = 0; h < 2 * nh; ++h) {  // q's heads, then k's
      const std::vector<double> want = turned(a + r * 3 * C + h * d, d, position, theta);
      for (int64_t j = 0; j < d; ++j) CHECK(b[r * 3 * C + h * d + j] == doctest::Approx(want[j]).epsilon(1e-14));
    }
    for (int64_t j = 2 * C; j < 3 * C; ++j) CHECK(b[r * 3 * C + j] == a[r * 3 * C + j]);
  }
  ops::rope(Exec::cpu(), qkv, nh, theta, pos0, true);
  for (int64_t i = 0; i < qkv.numel(); ++i) CHECK(b[i] == doctest::Approx(a[i]).epsilon(1e-14).scale(1));
  // An odd head width has no pairs to turn.
  CHECK_THROWS_AS(ops::rope(Exec::cpu(), Tensor::empty(Shape{1, 2, 9}, DType::f64), 1, theta, 0, false), InternalError);
}

TEST_CASE("rope: a query-key score depends only on the positions' distance") {
  // q . k after turning both by their positions: the same for (p, p + 3) at every p.
  const int64_t d = 8, C = d;
  Tensor base = random_tensor(Shape{1, 1, 3 * C}, 21);
  auto score = [&](int64_t pq, int64_t pk) {
    Tensor q = clone(base), k = clone(base);
    ops::rope(Exec::cpu(), q, 1, 10000, pq, false);
    ops::rope(Exec::cpu(), k, 1, 10000, pk, false);
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += q.data<double>()[j] * k.data<double>()[C + j];
    return s;
  };
  const double s0 = score(0, 3);
  for (int64_t p : {1, 5, 40, 1000}) CHECK(score(p, p + 3) == doctest::Approx(s0).epsilon(1e-10));
  CHECK(std::abs(score(0, 5) - s0) > 1e-6);  // another distance, another score
}

TEST_CASE("rope: the fp32 and bf16 kernels turn by fp32's angles, as PyTorch's fp32 tables do, to position 4095") {
  // In fp32 the angle is the fp32 product of position and frequency (the
  // frequency rounded once): near position 4096 it is off the exact angle
  // by up to half an ulp of 4096, 2.4e-4, as in Hugging Face's LLaMA, whose
  // cos/sin tables are fp32 outer products. The reference turns in fp64 by
  // those fp32 angles.
  const int64_t T = 64, nh = 2, d = 64, C = nh * d, pos0 = 4032;
  const double theta = 500000;
  std::vector<double> xd(T * 3 * C), want(T * 3 * C);
  CounterRng rng(5);
  for (auto& v : xd) v = static_cast<double>(static_cast<float>(rng.normal()));
  want = xd;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < 2 * nh; ++h)
      for (int64_t i = 0; i < d / 2; ++i) {
        const float f = static_cast<float>(1.0 / std::pow(theta, 2.0 * static_cast<double>(i) / d));
        const double angle = static_cast<double>(static_cast<float>(pos0 + t) * f);
        double& x0 = want[t * 3 * C + h * d + i];
        double& x1 = want[t * 3 * C + h * d + i + d / 2];
        const double a = x0, b = x1;
        x0 = a * std::cos(angle) - b * std::sin(angle);
        x1 = b * std::cos(angle) + a * std::sin(angle);
      }
  auto run = [&](auto tag, double tol) {
    using T_ = decltype(tag);
    std::vector<T_> x(xd.size());
    for (size_t i = 0; i < xd.size(); ++i) x[i] = T_(static_cast<float>(xd[i]));
    cpu::rope<T_>(x.data(), 1, T, C, nh, nh, theta, pos0, false);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(double(float(x[i])) - want[i]));
    CHECK(worst < tol);
  };
  run(float{}, 2e-6);  // |x| < 5: a few fp32 ulps
  run(bf16{}, 4e-2);
}

TEST_CASE("attention with rope: backward matches finite differences, and a block of LLaMA's parts too") {
  const int64_t C = 12, nh = 3;
  {
    ParamStore ps;
    CausalSelfAttention attn(ps, "attn", C, nh, false, 0.1, nullptr, false, /*rope_theta=*/50);
    ps.allocate(DType::f64, Device::cpu(), 1);
    perturb_params(ps, 12, 0.4);
    const Shape s{2, 5, C};
    attn.plan(s, DType::f64, Exec::cpu());
    Tensor x = random_tensor(s, 13);
    check_layer(attn, ps, x, Ctx{}, 14);
  }
  {
    ParamStore ps;
    const BlockSpec spec{.c = C, .n_head = nh, .ffn_hidden = 16, .bias = false, .dropout = 0, .proj_std = 0.1,
                         .rms_norm = true, .swiglu = true, .rope = 50};
    Block block(ps, "blocks.0", spec);
    CHECK(ps.find("blocks.0.ln1.bias") == nullptr);
    CHECK(ps.find("blocks.0.attn.qkv.bias") == nullptr);
    ps.allocate(DType::f64, Device::cpu(), 1);
    perturb_params(ps, 15, 0.3);
    const Shape s{2, 4, C};
    block.plan(s, DType::f64, Exec::cpu());
    Tensor x = random_tensor(s, 16);
    check_layer(block, ps, x, Ctx{}, 17);
  }
  // The head width must be even for rope (n_embd 9, 3 heads of 3).
  ParamStore ps;
  CHECK_THROWS_AS(CausalSelfAttention(ps, "attn", 9, 3, false, 0.1, nullptr, false, 50), ConfigError);
}

TEST_CASE("RMSNorm backward in place (dx = dy) gives the same bits as into its own buffer") {
  const int64_t n = 70, C = 24;
  std::vector<float> x(n * C), w(C), dy(n * C), r(n), sc(cpu::rmsnorm_scratch_size(C));
  CounterRng rng(19);
  for (auto& v : x) v = static_cast<float>(rng.normal());
  for (auto& v : w) v = static_cast<float>(1 + 0.2 * rng.normal());
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  std::vector<float> y(n * C), dx(n * C), dw(C, 0.0f), inplace = dy, dw2(C, 0.0f);
  cpu::rmsnorm_forward<float>(x.data(), w.data(), n, C, 1e-5f, y.data(), r.data());
  cpu::rmsnorm_backward<float>(dy.data(), x.data(), w.data(), r.data(), nullptr, n, C, dx.data(), dw.data(), sc.data());
  cpu::rmsnorm_backward<float>(inplace.data(), x.data(), w.data(), r.data(), nullptr, n, C, inplace.data(), dw2.data(),
                               sc.data());
  CHECK(std::memcmp(dx.data(), inplace.data(), dx.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(dw.data(), dw2.data(), dw.size() * sizeof(float)) == 0);
}
