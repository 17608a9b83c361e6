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

TEST_CASE("cross entropy over the used ids: a padded vocabulary's columns are never predicted") {
  // (rows, 7) logits of which the first 5 ids are used (model.vocab_used): the
  // loss, accuracy and gradient are those of the (rows, 5) logits alone, the
  // padding columns' gradient exactly 0, even where a padding logit is the
  // row's largest (a Hugging Face model imported into a padded table: zero
  // rows' logits 0 above the model's own, all negative).
  const int64_t rows = 4, V = 7, used = 5;
  for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
    CAPTURE(std::string(dtype_name(dt)));
    Tensor full = Tensor::empty(Shape{rows, V}, DType::f64);
    Tensor narrow = Tensor::empty(Shape{rows, used}, DType::f64);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < V; ++j) {
        const double x = j < used ? -30.0 + std::sin(1.3 * static_cast<double>(r * V + j)) * 3.0 : 0.0;
        full.data<double>()[r * V + j] = x;
        if (j < used) narrow.data<double>()[r * used + j] = x;
      }
    auto as = [&](const Tensor& t) {
      Tensor o = Tensor::empty(t.shape(), dt);
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double x = t.data<double>()[i];
        if (dt == DType::f64) o.data<double>()[i] = x;
        if (dt == DType::f32) o.data<float>()[i] = static_cast<float>(x);
        if (dt == DType::bf16) o.data<bf16>()[i] = bf16(static_cast<float>(x));
      }
      return o;
    };
    auto at = [&](const Tensor& t, int64_t i) {
      return dt == DType::f64 ? t.data<double>()[i]
             : dt == DType::f32 ? static_cast<double>(t.data<float>()[i])
                                : static_cast<double>(static_cast<float>(t.data<bf16>()[i]));
    };
    Tensor targets = Tensor::empty(Shape{rows}, DType::i32);
    for (int64_t r = 0; r < rows; ++r) targets.data<int32_t>()[r] = static_cast<int32_t>((r * 3) % used);
    CrossEntropyLoss masked(used), ref;
    masked.plan(full.shape(), dt, Exec::cpu());
    ref.plan(narrow.shape(), dt, Exec::cpu());
    Tensor a = as(full), b = as(narrow);
    const LossStats got = masked.forward(a, targets), want = ref.forward(b, targets);
    CHECK(std::isfinite(got.loss));
    CHECK(got.loss == want.loss);  // the padding's exp is 0 (or below the sum's last bit)
    CHECK(got.correct == want.correct);
    CHECK(got.count == want.count);
    const Tensor ga = masked.backward(0.5), gb = ref.backward(0.5);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < V; ++j) {
        CAPTURE(r);
        CAPTURE(j);
        CHECK(at(ga, r * V + j) == (j < used ? at(gb, r * used + j) : 0.0));
      }
    // Without vocab_used the zero rows dominate: the loss is about 30 nats worse.
    CrossEntropyLoss all;
    all.plan(full.shape(), dt, Exec::cpu());
    Tensor c = as(full);
    CHECK(all.forward(c, targets).loss > want.loss + 25);
  }
}
