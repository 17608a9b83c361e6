// AdamW's AVX-512 loop (kernels/cpu/adamw_avx512.h) against the scalar loop
// (math::adamw_element, compiled by the build): the same bits for the
// masters, both moments and the bf16 compute copy, on spans whose lengths hit
// every tail (1, 15, 16, 17, ... elements) and several steps; against a
// double-precision evaluation of the same formula; and the zeroing of the
// gradients the updates read (AdamW and SGD, both loops).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "kernels/cpu/adamw_avx512.h"
#include "ops/optim.h"

using namespace dtrain;

namespace {

const Exec& ex = Exec::cpu();

// Whether ops::adamw_update takes the AVX-512 loop here (as ops/optim.cpp decides).
bool vector_loop_here() {
#if defined(__FMA__) && defined(__x86_64__)
  return cpu::x86::adamw_avx512_supported();
#else
  return false;
#endif
}

Tensor random_f32(int64_t n, uint64_t seed, double scale) {
  Tensor t = Tensor::empty(Shape{n}, DType::f32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = static_cast<float>(rng.normal() * scale);
  return t;
}

Tensor copy_of(const Tensor& x) {
  Tensor t = Tensor::empty(x.shape(), x.dtype());
  t.copy_from(x);
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

const std::vector<int64_t> kLengths = {1, 15, 16, 17, 31, 2047, 2049, 5003};

// One run's flat state: masters, gradients, moments, bf16 copy; spans over
// consecutive windows of kLengths.
struct State {
  Tensor w, g, m, v, wc;
  std::vector<ops::UpdateSpan> spans;
  explicit State(bool copy) {
    int64_t n = 0;
    for (int64_t l : kLengths) n += l;
    w = random_f32(n, 1, 0.5);
    g = random_f32(n, 2, 1e-2);
    // Small and denormal gradients, zeros and large ones among them.
    float* gp = g.data<float>();
    gp[3] = 0.f, gp[40] = 1e-40f, gp[41] = -3e-39f, gp[100] = 1e6f, gp[101] = -2e-30f;
    m = Tensor::zeros(Shape{n}, DType::f32);
    v = Tensor::zeros(Shape{n}, DType::f32);
    if (copy) wc = Tensor::empty(Shape{n}, DType::bf16);
    int64_t o = 0, i = 0;
    for (int64_t l : kLengths) {
      ops::UpdateSpan s{w.flat_range(o, l), g.flat_range(o, l), m.flat_range(o, l), v.flat_range(o, l),
                        copy ? wc.flat_range(o, l) : Tensor{}, i++ % 2 == 0};
      spans.push_back(s);
      o += l;
    }
  }
};

ops::AdamWArgs args(int64_t t, bool vector) {
  ops::AdamWArgs a;
  a.beta1 = 0.9, a.beta2 = 0.95, a.eps = 1e-8, a.weight_decay = 0.1, a.lr = 3e-3;
  a.t = t;
  a.grad_scale = 0.7;
  a.vector = vector;
  return a;
}

}  // namespace

TEST_CASE("ops: AdamW's AVX-512 loop gives the scalar loop's bits") {
  if (!vector_loop_here()) {
    MESSAGE("skipped: no AVX-512 and FMA here (or a build without FMA): the scalar loop is the only one");
    return;
  }
  for (bool copy : {false, true}) {
    CAPTURE(copy);
    State vec(copy), ref(copy);
    for (int64_t t = 1; t <= 3; ++t) {
      ops::adamw_update(ex, args(t, true), vec.spans);
      ops::adamw_update(ex, args(t, false), ref.spans);
      CHECK(same_bits(vec.w, ref.w));
      CHECK(same_bits(vec.m, ref.m));
      CHECK(same_bits(vec.v, ref.v));
      if (copy) CHECK(same_bits(vec.wc, ref.wc));
    }
  }
}

TEST_CASE("ops: AdamW on the CPU against a double-precision evaluation") {
  State s(true);
  const Tensor w0 = copy_of(s.w), g0 = copy_of(s.g);
  const ops::AdamWArgs a = args(1, true);
  ops::adamw_update(ex, a, s.spans);
  const double bc1 = 1 - a.beta1, bc2 = 1 - a.beta2;
  int64_t o = 0, bad = 0, i_span = 0;
  for (int64_t l : kLengths) {
    const bool decay = i_span++ % 2 == 0;
    for (int64_t i = o; i < o + l; ++i) {
      const double g = a.grad_scale * g0.data<float>()[i];
      const double m = (1 - a.beta1) * g, v = (1 - a.beta2) * g * g;
      const double w = w0.data<float>()[i] * (decay ? 1 - a.lr * a.weight_decay : 1.0) -
                       a.lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + a.eps);
      const double got = s.w.data<float>()[i];
      // a few fp32 roundings of the update (|update| <= lr / bc1 * 1.0x) and of w
      bad += std::abs(got - w) > 1e-6 * std::abs(w) + 1e-6 * a.lr / bc1;
      bad += float(s.wc.data<bf16>()[i]) != float(bf16(s.w.data<float>()[i]));
    }
    o += l;
  }
  CHECK(bad == 0);
}

TEST_CASE("ops: AdamW and SGD zero the gradients they read when asked, and update as without") {
  for (bool vector : {true, false}) {
    CAPTURE(vector);
    State zeroed(true), kept(true);
    const Tensor g0 = copy_of(kept.g);
    ops::AdamWArgs a = args(1, vector);
    ops::adamw_update(ex, a, kept.spans);
    a.zero_grads = true;
    ops::adamw_update(ex, a, zeroed.spans);
    CHECK(same_bits(zeroed.w, kept.w));
    CHECK(same_bits(zeroed.wc, kept.wc));
    CHECK(same_bits(kept.g, g0));
    const Tensor zeros = Tensor::zeros(zeroed.g.shape(), DType::f32);
    CHECK(same_bits(zeroed.g, zeros));
  }
  State zeroed(false), kept(false);
  ops::SgdArgs a;
  a.momentum = 0.9, a.lr = 1e-2, a.first = true;
  ops::sgd_update(ex, a, kept.spans);
  a.zero_grads = true;
  ops::sgd_update(ex, a, zeroed.spans);
  CHECK(same_bits(zeroed.w, kept.w));
  CHECK(same_bits(zeroed.g, Tensor::zeros(zeroed.g.shape(), DType::f32)));
}
