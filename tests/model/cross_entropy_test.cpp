#include <doctest/doctest.h>

#include <algorithm>

#include <cmath>

#include "model/cross_entropy.h"

using namespace dtrain;

TEST_CASE("cross entropy: loss, accuracy and gradient against finite differences (fp64)") {
  const int64_t rows = 3, v = 5;
  Tensor logits = Tensor::empty(Shape{rows, v}, DType::f64);
  Tensor targets = Tensor::empty(Shape{rows}, DType::i32);
  double* x = logits.data<double>();
  for (int64_t i = 0; i < rows * v; ++i) x[i] = std::sin(0.7 * i) * 2.0;
  int32_t* y = targets.data<int32_t>();
  y[0] = 1, y[1] = 4, y[2] = 0;

  CrossEntropyLoss ce;
  ce.plan(logits.shape(), DType::f64, Exec::cpu());
  auto loss_of = [&]() { return ce.forward(logits, targets).loss; };

  // Reference loss by the formula.
  double ref = 0;
  int64_t ref_correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -1e300, s = 0;
    int64_t arg = 0;
    for (int64_t j = 0; j < v; ++j)
      if (x[r * v + j] > mx) mx = x[r * v + j], arg = j;
    for (int64_t j = 0; j < v; ++j) s += std::exp(x[r * v + j] - mx);
    ref += std::log(s) + mx - x[r * v + y[r]];
    ref_correct += arg == y[r];
  }
  LossStats st = ce.forward(logits, targets);
  CHECK(st.loss == doctest::Approx(ref / rows).epsilon(1e-14));
  CHECK(st.count == rows);
  CHECK(st.correct == ref_correct);

  const double scale = 0.5;
  const std::vector<double> kept(x, x + rows * v);
  Tensor g = ce.backward(scale);
  CHECK(g.raw() == logits.raw());  // in place: dL/dlogits over the logits
  std::vector<double> analytic(g.data<double>(), g.data<double>() + rows * v);
  std::copy(kept.begin(), kept.end(), x);
  const double eps = 1e-6;
  for (int64_t i = 0; i < rows * v; ++i) {
    double keep = x[i];
    x[i] = keep + eps;
    double lp = loss_of();
    x[i] = keep - eps;
    double lm = loss_of();
    x[i] = keep;
    double numeric = scale * (lp - lm) / (2 * eps);
    CHECK(analytic[i] == doctest::Approx(numeric).epsilon(1e-7));
  }
}
