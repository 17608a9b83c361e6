// Finite-difference gradient checks for the model tests: central differences
// in double precision on a sample of entries of every parameter and input.
// A layer is checked through the scalar L = sum(y * R) for a fixed random R,
// so dL/dy = R is what its backward receives.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/layer.h"
#include "model/param.h"

namespace dtrain::testing {

// Deterministic N(0, scale^2) values (double tensor), or adds them with add = true.
inline void fill_normal(const Tensor& t, uint64_t seed, double scale, bool add = false) {
  CounterRng rng(seed);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = (add ? p[i] : 0.0) + scale * rng.normal();
}

inline Tensor random_tensor(const Shape& s, uint64_t seed, double scale = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64);
  fill_normal(t, seed, scale);
  return t;
}

inline Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  c.copy_from(t);
  return c;
}

inline double dot(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  const double* x = a.data<double>();
  const double* y = b.data<double>();
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += x[i] * y[i];
  return s;
}

inline double max_abs(const Tensor& t) {
  const double* p = t.data<double>();
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(p[i]));
  return m;
}

// Moves every parameter away from its init (LayerNorm weights of exactly 1 and
// zero biases would hide bugs that forget them).
inline void perturb_params(ParamStore& ps, uint64_t seed, double scale) {
  for (const auto& p : ps.all()) fill_normal(p->value, hash_combine(seed, hash_string(p->name)), scale, true);
}

struct GradCheckOptions {
  int max_samples = 16;  // entries checked per tensor (all of them if fewer)
  double eps = 1e-6;
  double rtol = 1e-6;
  double atol = 1e-9;    // floor for entries whose gradient is ~0, raised to
                         // the rounding noise of the differences (see below)
};

// Checks analytic (a copy of the gradient) against central differences of
// loss() while perturbing entries of x in place. An entry passes when
// |analytic - numeric| <= rtol * max(|analytic|, |numeric|) + floor, where
// floor covers the rounding noise of the difference quotient (a few hundred
// ulps of the loss, divided by eps). Returns the largest error relative to
// max(|analytic|, |numeric|).
inline double check_gradient(const std::string& what, const Tensor& x, const Tensor& analytic,
                             const std::function<double()>& loss, GradCheckOptions o = {}) {
  REQUIRE(x.numel() == analytic.numel());
  const int64_t n = x.numel();
  const int64_t samples = std::min<int64_t>(n, o.max_samples);
  double* v = x.data<double>();
  const double* a = analytic.data<double>();
  const double floor =
      std::max(o.atol, 256 * std::numeric_limits<double>::epsilon() * std::abs(loss()) / o.eps);
  double worst = 0;
  for (int64_t s = 0; s < samples; ++s) {
    // Spread over the tensor, hitting the first and last entries.
    const int64_t i = samples == 1 ? 0 : s * (n - 1) / (samples - 1);
    const double keep = v[i];
    v[i] = keep + o.eps;
    const double lp = loss();
    v[i] = keep - o.eps;
    const double lm = loss();
    v[i] = keep;
    const double numeric = (lp - lm) / (2 * o.eps);
    const double err = std::abs(a[i] - numeric);
    const double ref = std::max(std::abs(a[i]), std::abs(numeric));
    if (ref > floor / o.rtol) worst = std::max(worst, err / ref);
    INFO(what, "[", i, "]: analytic ", a[i], " numeric ", numeric, " floor ", floor);
    CHECK(err <= o.rtol * ref + floor);
  }
  return worst;
}

// Checks every trainable parameter of ps and (if floating) the input x of a
// layer through L = sum(layer(x) * R). Parameter gradients must be zero on
// entry. Returns the largest relative error seen.
inline double check_layer(Layer& layer, ParamStore& ps, const Tensor& x, const Ctx& ctx,
                          uint64_t seed, GradCheckOptions o = {}) {
  Tensor r = random_tensor(layer.output_shape(x.shape()), seed);
  auto loss = [&] { return dot(layer.forward(x, ctx), r); };
  loss();
  Tensor dx = layer.backward(r, ctx);
  double worst = 0;
  if (x.dtype() == DType::f64) {
    Tensor dxc = clone(dx);
    CHECK(max_abs(dxc) > 0);
    worst = std::max(worst, check_gradient(layer.name() + " input", x, dxc, loss, o));
  }
  for (const auto& p : ps.all()) {
    if (!p->trainable) continue;
    Tensor g = clone(p->grad);
    INFO("parameter ", p->name);
    CHECK(max_abs(g) > 0);
    worst = std::max(worst, check_gradient(p->name, p->value, g, loss, o));
  }
  return worst;
}

}  // namespace dtrain::testing
