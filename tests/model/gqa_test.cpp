// Grouped-query attention (ops::Heads with fewer key/value heads than query
// heads): the kernels against multi-head attention over K and V repeated for
// each query head of their group, which is what GQA means (Ainslie et al.
// 2023; Hugging Face's repeat_kv); the gradients of the shared K and V as the
// sums of the repeated heads'; the layer against finite differences in fp64;
// one order of every sum for any thread count.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gradcheck.h"
#include "model/attention.h"
#include "model/block.h"
#include "ops/ops.h"

using namespace dtrain;
using namespace dtrain::testing;

namespace {

// qkv (B, T, (nh + 2 nkv) hs) -> (B, T, 3 nh hs): key and value head g copied
// to heads g*group .. (g+1)*group - 1.
Tensor repeat_kv(const Tensor& qkv, ops::Heads h) {
  const int64_t B = qkv.size(0), T = qkv.size(1), hs = qkv.size(2) / h.row_heads(), C = h.q * hs;
  const int64_t Ckv = h.kv * hs, W = C + 2 * Ckv;
  Tensor out = Tensor::empty(Shape{B, T, 3 * C}, DType::f64);
  const double* in = qkv.data<double>();
  double* o = out.data<double>();
  for (int64_t r = 0; r < B * T; ++r) {
    std::memcpy(o + r * 3 * C, in + r * W, sizeof(double) * C);
    for (int64_t head = 0; head < h.q; ++head)
      for (int64_t part = 0; part < 2; ++part)  // k, v
        std::memcpy(o + r * 3 * C + (1 + part) * C + head * hs, in + r * W + C + part * Ckv + head / h.group() * hs,
                    sizeof(double) * hs);
  }
  return out;
}

// dqkv (B, T, 3 nh hs) of the repeated heads -> (B, T, (nh + 2 nkv) hs): each
// key/value head's gradient the sum over its group.
Tensor sum_kv(const Tensor& d, ops::Heads h) {
  const int64_t B = d.size(0), T = d.size(1), C = d.size(2) / 3, hs = C / h.q, Ckv = h.kv * hs, W = C + 2 * Ckv;
  Tensor out = Tensor::zeros(Shape{B, T, W}, DType::f64);
  const double* in = d.data<double>();
  double* o = out.data<double>();
  for (int64_t r = 0; r < B * T; ++r) {
    std::memcpy(o + r * W, in + r * 3 * C, sizeof(double) * C);
    for (int64_t head = 0; head < h.q; ++head)
      for (int64_t part = 0; part < 2; ++part)
        for (int64_t e = 0; e < hs; ++e)
          o[r * W + C + part * Ckv + head / h.group() * hs + e] += in[r * 3 * C + (1 + part) * C + head * hs + e];
  }
  return out;
}

Tensor as(const Tensor& t, DType dt) {
  Tensor out = Tensor::empty(t.shape(), dt);
  if (dt == DType::f64) {
    std::memcpy(out.raw(), t.raw(), t.bytes());
    return out;
  }
  Tensor f = Tensor::empty(t.shape(), DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) f.data<float>()[i] = static_cast<float>(t.data<double>()[i]);
  ops::convert(Exec::cpu(), f, out);
  return out;
}

Tensor as_f64(const Tensor& t) {
  if (t.dtype() == DType::f64) return clone(t);
  Tensor f = Tensor::empty(t.shape(), DType::f32);
  ops::convert(Exec::cpu(), t, f);
  Tensor out = Tensor::empty(t.shape(), DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) out.data<double>()[i] = f.data<float>()[i];
  return out;
}

struct AttnOut {
  Tensor y, att, dqkv;  // fp64 copies
};

// ops::attention_forward and _backward in dtype dt on fp64 inputs; `slots`: threads.
AttnOut attend(const Tensor& qkv, const Tensor& dy, ops::Heads h, DType dt, int slots = 0) {
  const Exec ex = Exec::cpu();
  const int64_t B = qkv.size(0), T = qkv.size(1), C = dy.size(2);
  Tensor q = as(qkv, dt), g = as(dy, dt);
  Tensor att = Tensor::empty(Shape{B, h.q, T, T}, dt), y = Tensor::empty(Shape{B, T, C}, dt);
  Tensor dqkv = Tensor::empty(qkv.shape(), dt);
  const int64_t all = ops::attention_scratch(ex, qkv.shape(), h, dt);
  const int64_t per = all / std::max(1, omp_get_max_threads());
  Tensor scratch = Tensor::empty(Shape{slots > 0 ? per * slots : all}, ops::compute_dtype(dt));
  const ops::AttentionPlan plan(ex, qkv.shape(), h, dt);
  ops::attention_forward(ex, plan, q, h, att, y, scratch);
  Tensor att_kept = as_f64(att);
  ops::attention_backward(ex, plan, g, q, att, h, scratch, dqkv);
  return {as_f64(y), att_kept, as_f64(dqkv)};
}

// Probabilities (B, nh, T, T): the causal entries j <= i only (the kernel
// leaves the rest of a row beyond its row block unspecified).
double max_diff_causal(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const int64_t T = a.size(3);
  double worst = 0;
  for (int64_t m = 0; m < a.numel() / (T * T); ++m)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t e = (m * T + i) * T + j;
        worst = std::max(worst, std::abs(a.data<double>()[e] - b.data<double>()[e]));
      }
  return worst;
}

double max_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a.data<double>()[i] - b.data<double>()[i]));
  return worst;
}

}  // namespace

TEST_CASE("grouped-query attention is multi-head attention over K and V repeated per group") {
  // T = 70: two row blocks of the kernel, the second partial. hs = 4.
  const int64_t B = 2, T = 70, hs = 4;
  for (ops::Heads h : {ops::Heads(4, 2), ops::Heads(6, 2), ops::Heads(4, 1), ops::Heads(3, 3)}) {
    CAPTURE(h.str());
    const int64_t C = h.q * hs;
    const Tensor qkv = random_tensor(Shape{B, T, h.row_heads() * hs}, 1, 1.5);
    const Tensor dy = random_tensor(Shape{B, T, C}, 2);
    const Tensor mha_qkv = repeat_kv(qkv, h);
    const AttnOut want = attend(mha_qkv, dy, h.q, DType::f64);
    const Tensor want_d = sum_kv(want.dqkv, h);
    const double gscale = max_abs(want_d), yscale = max_abs(want.y);
    for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
      CAPTURE(std::string(dtype_name(dt)));
      // fp64: the same products on the same values (the sums of the group's
      // dK, dV reassociate); fp32 a few ulps; bf16 its inputs' rounding.
      const double tol = dt == DType::f64 ? 1e-13 : dt == DType::f32 ? 1e-5 : 3e-2;
      const AttnOut got = attend(qkv, dy, h, dt);
      CHECK(max_diff(got.y, want.y) <= tol * yscale);
      CHECK(max_diff_causal(got.att, want.att) <= tol);
      CHECK(max_diff(got.dqkv, want_d) <= tol * gscale);
    }
  }
}

TEST_CASE("grouped-query attention: the same bits on one thread as on several") {
  const int64_t B = 2, T = 40, hs = 8;
  const ops::Heads h(4, 2);
  const Tensor qkv = random_tensor(Shape{B, T, h.row_heads() * hs}, 3);
  const Tensor dy = random_tensor(Shape{B, T, h.q * hs}, 4);
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(std::string(dtype_name(dt)));
    const AttnOut one = attend(qkv, dy, h, dt, 1), all = attend(qkv, dy, h, dt);
    CHECK(max_diff(one.y, all.y) == 0);
    CHECK(max_diff(one.dqkv, all.dqkv) == 0);
  }
}

TEST_CASE("multi-query attention on a batch of one: the three parallel passes give the one-item path's bits") {
  // One (batch, key/value head) pair: on one thread it is one item; on more,
  // each pass is its own parallel loop (key blocks, query heads). T = 150: three key blocks.
  const int64_t B = 1, T = 150, hs = 8;
  const ops::Heads h(4, 1);
  const Tensor qkv = random_tensor(Shape{B, T, h.row_heads() * hs}, 9);
  const Tensor dy = random_tensor(Shape{B, T, h.q * hs}, 10);
  // Three threads whatever the machine's cores, so that the three passes run.
  const int before = omp_get_max_threads();
  omp_set_num_threads(3);
  for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
    CAPTURE(std::string(dtype_name(dt)));
    const AttnOut one = attend(qkv, dy, h, dt, 1), all = attend(qkv, dy, h, dt, 3);
    CHECK(max_diff(one.dqkv, all.dqkv) == 0);
  }
  omp_set_num_threads(before);
}

TEST_CASE("rope on grouped-query qkv turns the query and key heads alone, as on the repeated heads") {
  const int64_t B = 2, T = 9, hs = 6;
  const ops::Heads h(4, 2);
  const Tensor qkv = random_tensor(Shape{B, T, h.row_heads() * hs}, 5);
  Tensor gqa = clone(qkv), mha = repeat_kv(qkv, h);
  ops::rope(Exec::cpu(), gqa, h, 100, 3, false);
  ops::rope(Exec::cpu(), mha, h.q, 100, 3, false);
  CHECK(max_diff(repeat_kv(gqa, h), mha) == 0);
  // The values are untouched; the inverse turn restores the input.
  const int64_t W = h.row_heads() * hs, C = h.q * hs, Ckv = h.kv * hs;
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t e = C + Ckv; e < W; ++e) REQUIRE(gqa.data<double>()[r * W + e] == qkv.data<double>()[r * W + e]);
  ops::rope(Exec::cpu(), gqa, h, 100, 3, true);
  CHECK(max_diff(gqa, qkv) < 1e-14);
  // A qkv row that is not (q + 2 kv) heads wide is refused.
  CHECK_THROWS_AS(ops::rope(Exec::cpu(), Tensor::empty(Shape{1, 2, 7 * hs}, DType::f64), h, 100, 0, false),
                  InternalError);
}

TEST_CASE("grouped-query attention layer: backward matches finite differences, with and without rope") {
  const int64_t C = 16;
  for (ops::Heads h : {ops::Heads(4, 2), ops::Heads(4, 1)}) {
    for (double theta : {0.0, 50.0}) {
      CAPTURE(h.str());
      CAPTURE(theta);
      ParamStore ps;
      CausalSelfAttention attn(ps, "attn", C, h, /*bias=*/true, 0.1, nullptr, false, theta);
      CHECK(ps.find("attn.qkv.weight")->shape == Shape{C + 2 * (C / h.q * h.kv), C});
      CHECK(ps.find("attn.qkv.bias")->shape == Shape{C + 2 * (C / h.q * h.kv)});
      ps.allocate(DType::f64, Device::cpu(), 1);
      perturb_params(ps, 2, 0.4);
      const Shape s{2, 6, C};
      attn.plan(s, DType::f64, Exec::cpu());
      Tensor x = random_tensor(s, 3);
      check_layer(attn, ps, x, Ctx{}, 4, {.max_samples = 24});
    }
  }
  // A whole block of LLaMA 2 70B's parts: RMSNorm, GQA with rope, SwiGLU.
  ParamStore ps;
  const BlockSpec spec{.c = C, .n_head = 4, .n_kv_head = 2, .ffn_hidden = 24, .bias = false, .dropout = 0,
                       .proj_std = 0.1, .rms_norm = true, .swiglu = true, .rope = 50};
  Block block(ps, "blocks.0", spec);
  ps.allocate(DType::f64, Device::cpu(), 1);
  perturb_params(ps, 5, 0.3);
  const Shape s{2, 5, C};
  block.plan(s, DType::f64, Exec::cpu());
  Tensor x = random_tensor(s, 6);
  check_layer(block, ps, x, Ctx{}, 7);
}

TEST_CASE("attention refuses heads that fit the qkv width but not the output's") {
  // (4, 2) heads of 6: qkv 48 wide, y 24. Multi-head's 4 heads of 4 also fit 48, not y's 24.
  const Exec ex = Exec::cpu();
  const Shape qs{1, 5, 48};
  Tensor qkv = random_tensor(qs, 8), y = Tensor::empty(Shape{1, 5, 24}, DType::f64);
  Tensor att = Tensor::empty(Shape{1, 4, 5, 5}, DType::f64), dqkv = Tensor::empty(qs, DType::f64);
  Tensor scratch = Tensor::empty(Shape{ops::attention_scratch(ex, qs, ops::Heads(4, 2), DType::f64)}, DType::f64);
  const ops::AttentionPlan plan(ex, qs, ops::Heads(4, 2), DType::f64);
  ops::attention_forward(ex, plan, qkv, ops::Heads(4, 2), att, y, scratch);
  CHECK_THROWS_AS(ops::attention_forward(ex, plan, qkv, 4, att, y, scratch), InternalError);
  CHECK_THROWS_AS(ops::attention_backward(ex, plan, y, qkv, att, 4, scratch, dqkv), InternalError);
  CHECK_THROWS_AS(ops::attention_backward(ex, plan, y, qkv, att, ops::Heads(4, 2), scratch, y), InternalError);
}

TEST_CASE("grouped-query attention layer refuses key/value heads that do not divide the query heads") {
  ParamStore ps;
  CHECK_THROWS_AS(CausalSelfAttention(ps, "attn", 12, ops::Heads(3, 2), false, 0.1), ConfigError);
  CHECK_THROWS_AS(CausalSelfAttention(ps, "attn", 12, ops::Heads(4, 0), false, 0.1), ConfigError);
}
