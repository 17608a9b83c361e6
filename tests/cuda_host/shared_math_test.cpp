// The math the CPU and the CUDA kernels share (DTRAIN_HOST_DEVICE: dropout's
// keep rule and counter RNG, bf16 rounding, the AdamW and SGD elements), run
// on the host against the CPU kernels' results, bit for bit. The CUDA kernels
// compile these same functions, so CPU and GPU dropout masks, bf16 copies and
// (up to the compilers' FMA contraction) optimizer updates agree; the GPU
// side is checked on a GPU by tests/cuda/gpt_ops_test.cpp.
#include <doctest/doctest.h>

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/exec.h"
#include "core/rng.h"
#include "kernels/elementwise_math.h"
#include "ops/ops.h"
#include "ops/optim.h"

using namespace dtrain;

namespace {

// Round to nearest even, written from the definition (not core/bf16.h's add trick).
uint16_t bf16_reference(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint32_t upper = u >> 16, lower = u & 0xffffu;
  const bool up = lower > 0x8000u || (lower == 0x8000u && (upper & 1u));
  return static_cast<uint16_t>(upper + (up ? 1u : 0u));
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST_CASE("cuda host: mix64 is SplitMix64 (known first outputs)") {
  // SplitMix64 seeded with 0: the state advances by the golden gamma and is mixed.
  CHECK(mix64(0) == 0xE220A8397B1DCDAFull);
  CHECK(mix64(0x9E3779B97F4A7C15ull) == 0x6E789E6AA1B965F4ull);
  CHECK(hash_combine(1, 2) == mix64(1 ^ mix64(2)));
}

TEST_CASE("cuda host: the shared dropout keep rule gives the CPU kernel's masks bit for bit") {
  const struct {
    uint64_t key;
    double p;
    int64_t first, samples, numel;
  } cases[] = {{12345, 0.1, 0, 3, 1000}, {hash_combine(7, 9), 0.5, 17, 2, 4097},
               {0xdeadbeefull, 0.0, 5, 1, 333}, {99, 0.9, 1000000, 4, 77}};
  for (const auto& c : cases) {
    CAPTURE(c.p);
    CAPTURE(c.numel);
    const int64_t n = c.samples * c.numel;
    Tensor x = Tensor::empty(Shape{c.samples, c.numel}, DType::f32);
    for (int64_t i = 0; i < n; ++i) x.data<float>()[i] = 1.0f + 0.001f * static_cast<float>(i % 97);
    Tensor mask = Tensor::empty(Shape{n}, DType::u8), y = Tensor::empty(x.shape(), DType::f32);
    ops::dropout_forward(Exec::cpu(), x, Tensor(), c.p, c.key, c.first, mask, y);
    const uint64_t thr = math::dropout_threshold(c.p);
    CHECK(thr == static_cast<uint64_t>(std::llround(c.p * 16777216.0)));
    int64_t bad = 0, bad_literal = 0, kept = 0;
    const float scale = static_cast<float>(1.0 / (1.0 - c.p));
    for (int64_t s = 0; s < c.samples; ++s)
      for (int64_t e = 0; e < c.numel; ++e) {
        const int64_t i = s * c.numel + e;
        const bool keep = math::dropout_keep(math::dropout_sample_key(c.key, c.first + s), e, thr);
        // The rule as first written in cpu/dropout.cpp, spelled out.
        const bool literal =
            (hash_combine(hash_combine(c.key, static_cast<uint64_t>(c.first + s)), static_cast<uint64_t>(e)) >> 40) >= thr;
        bad += mask.data<uint8_t>()[i] != (keep ? 1 : 0);
        bad_literal += keep != literal;
        kept += keep;
        const float want = keep ? x.data<float>()[i] * scale : 0.0f;
        bad += std::memcmp(&want, &y.data<float>()[i], 4) != 0;
      }
    CHECK(bad == 0);
    CHECK(bad_literal == 0);
    if (c.p == 0.0) CHECK(kept == n);
    if (c.p > 0.0) CHECK(std::abs(static_cast<double>(kept) / n - (1.0 - c.p)) < 0.1);
  }
}

TEST_CASE("cuda host: bf16 rounding is round-to-nearest-even, as the CPU convert and cuda_bf16.h") {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, 1.00390625f /* tie, even: down */,
                          1.01171875f /* tie, odd: up */, 3.4028235e38f /* rounds to inf */,
                          -3.4028235e38f, 1e-40f /* subnormal */, -1e-45f, INFINITY, -INFINITY,
                          from_bits(0x3f808000u), from_bits(0x3f818000u), from_bits(0x3f80ffffu),
                          from_bits(0x7f7f8000u), from_bits(0x00008000u)};
  CounterRng rng(2024);
  for (int i = 0; i < 100000; ++i) v.push_back(from_bits(static_cast<uint32_t>(rng.next_u64())));
  const int64_t n = static_cast<int64_t>(v.size());
  Tensor src = Tensor::empty(Shape{n}, DType::f32), dst = Tensor::empty(Shape{n}, DType::bf16);
  std::memcpy(src.data<float>(), v.data(), 4 * v.size());
  ops::convert(Exec::cpu(), src, dst);
  int64_t bad_ref = 0, bad_cpu = 0, bad_nv = 0, nans = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float f = v[static_cast<size_t>(i)];
    const uint16_t b = bf16_bits_from_float(f);
    bad_ref += b != bf16_reference(f);
    bad_cpu += dst.data<bf16>()[i].bits != b;
    if (std::isnan(f)) {  // NaN stays NaN (cuda_bf16.h returns its canonical NaN instead)
      ++nans;
      bad_nv += !std::isnan(float_from_bf16_bits(b));
      continue;
    }
    const __nv_bfloat16 h = __float2bfloat16_rn(f);
    uint16_t hb;
    std::memcpy(&hb, &h, 2);
    bad_nv += hb != b;
  }
  CHECK(bad_ref == 0);
  CHECK(bad_cpu == 0);
  CHECK(bad_nv == 0);
  CHECK(nans > 0);  // random bit patterns include NaNs
  CHECK(bf16_bits_from_float(1.00390625f) == 0x3f80);
  CHECK(bf16_bits_from_float(1.01171875f) == 0x3f82);
  CHECK(bf16_bits_from_float(3.4028235e38f) == 0x7f80);
}

namespace {

// The coefficients as lib/ops/optim.cpp folds them (in double, then rounded).
math::AdamWCoeffs<float> adamw_coeffs(const ops::AdamWArgs& a, bool decay) {
  const double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(a.t));
  const double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(a.t));
  math::AdamWCoeffs<float> c{};
  c.b1 = static_cast<float>(a.beta1);
  c.b2 = static_cast<float>(a.beta2);
  c.step_size = static_cast<float>(a.lr / bc1);
  c.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  c.eps = static_cast<float>(a.eps);
  c.grad_scale = static_cast<float>(a.grad_scale);
  c.decay = decay ? static_cast<float>(1.0 - a.lr * a.weight_decay) : 1.0f;
  return c;
}

struct HostSpan {
  std::vector<float> w, g, m, v;
  bool decay;
};

std::vector<HostSpan> make_spans(uint64_t seed) {
  CounterRng rng(seed);
  std::vector<HostSpan> out;
  for (int64_t n : {1, 37, 1000, 4099}) {
    HostSpan s;
    s.decay = (n % 2) == 1;
    for (int64_t i = 0; i < n; ++i) {
      s.w.push_back(static_cast<float>(rng.normal() * 0.02));
      s.g.push_back(static_cast<float>(rng.normal() * 0.1));
      s.m.push_back(static_cast<float>(rng.normal() * 0.01));
      s.v.push_back(static_cast<float>(rng.uniform() * 1e-3));
    }
    out.push_back(std::move(s));
  }
  return out;
}

Tensor host_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(v.size())}, DType::f32);
  std::memcpy(t.data<float>(), v.data(), 4 * v.size());
  return t;
}

int64_t differing(const Tensor& t, const std::vector<float>& v) {
  return static_cast<int64_t>(std::memcmp(t.data<float>(), v.data(), 4 * v.size()) != 0);
}

}  // namespace

TEST_CASE("cuda host: the shared AdamW element is the CPU update, bf16 copy included") {
  std::vector<HostSpan> hs = make_spans(5);
  ops::AdamWArgs a;
  a.lr = 6e-4;
  a.weight_decay = 0.1;
  a.t = 3;
  a.grad_scale = 0.75;
  std::vector<ops::UpdateSpan> spans;
  for (const HostSpan& h : hs) {
    ops::UpdateSpan s;
    s.w = host_tensor(h.w);
    s.g = host_tensor(h.g);
    s.s1 = host_tensor(h.m);
    s.s2 = host_tensor(h.v);
    s.wc = Tensor::empty(Shape{static_cast<int64_t>(h.w.size())}, DType::bf16);
    s.decay = h.decay;
    spans.push_back(s);
  }
  ops::adamw_update(Exec::cpu(), a, spans);
  int64_t bad = 0;
  for (size_t k = 0; k < hs.size(); ++k) {
    HostSpan h = hs[k];
    const math::AdamWCoeffs<float> c = adamw_coeffs(a, h.decay);
    for (size_t i = 0; i < h.w.size(); ++i) math::adamw_element(c, h.g[i], h.w[i], h.m[i], h.v[i]);
    bad += differing(spans[k].w, h.w) + differing(spans[k].s1, h.m) + differing(spans[k].s2, h.v);
    for (size_t i = 0; i < h.w.size(); ++i)
      bad += spans[k].wc.data<bf16>()[i].bits != bf16_bits_from_float(h.w[i]);
  }
  CHECK(bad == 0);
}

TEST_CASE("cuda host: the shared SGD element is the CPU update") {
  for (bool nesterov : {false, true}) {
    std::vector<HostSpan> hs = make_spans(6);
    ops::SgdArgs a;
    a.momentum = 0.9;
    a.weight_decay = 5e-4;
    a.lr = 0.05;
    a.grad_scale = 0.5;
    a.nesterov = nesterov;
    std::vector<ops::UpdateSpan> spans;
    for (const HostSpan& h : hs) {
      ops::UpdateSpan s;
      s.w = host_tensor(h.w);
      s.g = host_tensor(h.g);
      s.s1 = host_tensor(h.m);
      s.decay = h.decay;
      spans.push_back(s);
    }
    ops::sgd_update(Exec::cpu(), a, spans);
    int64_t bad = 0;
    for (size_t k = 0; k < hs.size(); ++k) {
      HostSpan h = hs[k];
      math::SgdCoeffs<float> c{};
      c.momentum = 0.9f;
      c.lr = 0.05f;
      c.grad_scale = 0.5f;
      c.weight_decay = h.decay ? 5e-4f : 0.0f;
      c.nesterov = nesterov;
      c.first = false;
      for (size_t i = 0; i < h.w.size(); ++i) math::sgd_element(c, h.g[i], h.w[i], h.m[i]);
      bad += differing(spans[k].w, h.w) + differing(spans[k].s1, h.m);
    }
    CHECK(bad == 0);
  }
}
