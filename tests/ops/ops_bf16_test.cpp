// Every op of the ops layer in bf16 against the same op in fp32, on the same
// inputs (fp32 inputs are the bf16 values, so only the bf16 path's own
// roundings differ). The bounds, from how each bf16 kernel computes:
// - ops that compute in fp32 exactly what the fp32 kernel computes and round
//   the result once (elementwise ops, layer norm's output, embeddings) must
//   give exactly the rounding of the fp32 result; their fp32 outputs
//   (gradients, statistics) must equal the fp32 kernel's up to the order of
//   vectorised sums (1e-6 relative);
// - matrix products differ from fp32 ones only in the order of fp32
//   accumulation: |err| <= 2 k 2^-24 sum_k |a||b| per element, plus half a bf16
//   ulp (2^-9 relative) when the output is bf16;
// - attention rounds its probabilities and outputs (2^-9 each), so its output
//   is within 2^-7 of the largest |v|, its input gradient within 2^-6 of the
//   largest |dqkv| (two more rounded intermediates: dS and the bf16 dO path).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "ops/ops.h"
#include "ops/optim.h"

using namespace dtrain;

namespace {

const Exec& ex = Exec::cpu();

// A pair of tensors holding the same values: bf16 and its exact fp32 widening.
struct Pair {
  Tensor b, f;
};

Pair random_pair(const Shape& s, uint64_t seed, double scale = 1.0) {
  Pair p{Tensor::empty(s, DType::bf16), Tensor::empty(s, DType::f32)};
  CounterRng rng(seed);
  for (int64_t i = 0; i < p.b.numel(); ++i) {
    const bf16 v(static_cast<float>(rng.normal() * scale));
    p.b.data<bf16>()[i] = v;
    p.f.data<float>()[i] = float(v);
  }
  return p;
}

Pair empty_pair(const Shape& s) { return {Tensor::empty(s, DType::bf16), Tensor::empty(s, DType::f32)}; }

// bf16 output == the rounding of the fp32 output, element for element.
int64_t rounding_mismatches(const Tensor& b, const Tensor& f) {
  int64_t bad = 0;
  for (int64_t i = 0; i < b.numel(); ++i)
    bad += b.data<bf16>()[i].bits != bf16(f.data<float>()[i]).bits;
  return bad;
}

// max |a - b| / max(|b|) over two fp32 tensors (or a bf16 one against fp32).
double rel_diff(const Tensor& a, const Tensor& b) {
  double d = 0, m = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double x = a.dtype() == DType::bf16 ? float(a.data<bf16>()[i]) : a.data<float>()[i];
    const double y = b.data<float>()[i];
    d = std::max(d, std::abs(x - y));
    m = std::max(m, std::abs(y));
  }
  return m > 0 ? d / m : d;
}

}  // namespace

TEST_CASE("ops bf16: elementwise ops round the fp32 result once") {
  Pair a = random_pair(Shape{3, 1000}, 1), b = random_pair(Shape{3, 1000}, 2), y = empty_pair(Shape{3, 1000});
  ops::add(ex, a.b, b.b, y.b);
  ops::add(ex, a.f, b.f, y.f);
  CHECK(rounding_mismatches(y.b, y.f) == 0);

  ops::gelu_forward(ex, a.b, y.b);
  ops::gelu_forward(ex, a.f, y.f);
  CHECK(rounding_mismatches(y.b, y.f) == 0);
  Pair dx = empty_pair(Shape{3, 1000});
  ops::gelu_backward(ex, a.b, b.b, dx.b);
  ops::gelu_backward(ex, a.f, b.f, dx.f);
  CHECK(rounding_mismatches(dx.b, dx.f) == 0);

  Tensor mask = Tensor::empty(Shape{3, 1000}, DType::u8), mask2 = Tensor::empty(Shape{3, 1000}, DType::u8);
  ops::dropout_forward(ex, a.b, b.b, 0.25, 77, 5, mask, y.b);
  ops::dropout_forward(ex, a.f, b.f, 0.25, 77, 5, mask2, y.f);
  CHECK(std::memcmp(mask.raw(), mask2.raw(), mask.bytes()) == 0);  // the same masks, any dtype
  CHECK(rounding_mismatches(y.b, y.f) == 0);
  ops::dropout_backward(ex, a.b, mask, 0.25, dx.b);
  ops::dropout_backward(ex, a.f, mask, 0.25, dx.f);
  CHECK(rounding_mismatches(dx.b, dx.f) == 0);

  Pair bias = random_pair(Shape{1000}, 3);
  ops::broadcast_rows(ex, bias.b, y.b);
  ops::broadcast_rows(ex, bias.f, y.f);
  ops::add_rows(ex, bias.b, y.b);
  ops::add_rows(ex, bias.f, y.f);
  CHECK(rounding_mismatches(y.b, y.f) == 0);
  Tensor acc_b = Tensor::zeros(Shape{1000}, DType::f32), acc_f = Tensor::zeros(Shape{1000}, DType::f32);
  ops::sum_rows_acc(ex, a.b, acc_b);  // bf16 rows into an fp32 gradient
  ops::sum_rows_acc(ex, a.f, acc_f);
  CHECK(rel_diff(acc_b, acc_f) == 0.0);

  ops::scale(ex, a.b, 0.3);
  ops::scale(ex, a.f, 0.3);
  CHECK(rounding_mismatches(a.b, a.f) == 0);

  // convert: fp32 -> bf16 -> fp32 is the scalar rounding, specials included.
  Tensor f = Tensor::empty(Shape{6}, DType::f32), h = Tensor::empty(Shape{6}, DType::bf16),
         back = Tensor::empty(Shape{6}, DType::f32);
  const float vals[6] = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -0.0f, INFINITY, NAN, 1e-40f};
  std::memcpy(f.raw(), vals, sizeof vals);
  ops::convert(ex, f, h);
  ops::convert(ex, h, back);
  CHECK(back.data<float>()[0] == 1.0f);                  // tie to even: down
  CHECK(back.data<float>()[1] == 1.0f + 4.0f / 256);     // tie to even: up
  CHECK(std::signbit(back.data<float>()[2]));
  CHECK(std::isinf(back.data<float>()[3]));
  CHECK(std::isnan(back.data<float>()[4]));
  CHECK(h.data<bf16>()[5].bits == bf16(1e-40f).bits);
}

TEST_CASE("ops bf16: layer norm, embedding and sum of squares") {
  const int64_t rows = 37, c = 96;
  Pair x = random_pair(Shape{rows, c}, 4, 3.0), w = random_pair(Shape{c}, 5), b = random_pair(Shape{c}, 6);
  Pair y = empty_pair(Shape{rows, c});
  Tensor mb = Tensor::empty(Shape{rows}, DType::f32), rb = Tensor::empty(Shape{rows}, DType::f32);
  Tensor mf = Tensor::empty(Shape{rows}, DType::f32), rf = Tensor::empty(Shape{rows}, DType::f32);
  ops::layernorm_forward(ex, x.b, w.b, b.b, 1e-5, y.b, mb, rb);
  ops::layernorm_forward(ex, x.f, w.f, b.f, 1e-5, y.f, mf, rf);
  CHECK(rel_diff(mb, mf) < 1e-6);
  CHECK(rel_diff(rb, rf) < 1e-6);
  CHECK(rel_diff(y.b, y.f) <= std::ldexp(1.0, -8));  // one rounding, at most half an ulp of the largest

  Pair dy = random_pair(Shape{rows, c}, 7), dres = random_pair(Shape{rows, c}, 8), dx = empty_pair(Shape{rows, c});
  Tensor dwb = Tensor::zeros(Shape{c}, DType::f32), dbb = Tensor::zeros(Shape{c}, DType::f32);
  Tensor dwf = Tensor::zeros(Shape{c}, DType::f32), dbf = Tensor::zeros(Shape{c}, DType::f32);
  Tensor sb = Tensor::empty(Shape{ops::layernorm_scratch(c)}, DType::f32);
  ops::layernorm_backward(ex, dy.b, x.b, w.b, mb, rb, dres.b, dx.b, dwb, dbb, sb);
  Tensor sf2 = Tensor::empty(Shape{ops::layernorm_scratch(c)}, DType::f32);
  ops::layernorm_backward(ex, dy.f, x.f, w.f, mf, rf, dres.f, dx.f, dwf, dbf, sf2);
  CHECK(rel_diff(dwb, dwf) < 1e-5);
  CHECK(rel_diff(dbb, dbf) < 1e-6);
  CHECK(rel_diff(dx.b, dx.f) <= std::ldexp(1.0, -8));

  // Token and position embeddings: a sum rounded once; gradients in fp32.
  const int64_t B = 3, T = 5, C = 16, V = 11;
  Tensor tok = Tensor::empty(Shape{B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i) tok.data<int32_t>()[i] = static_cast<int32_t>((i * 7) % V);
  Pair wte = random_pair(Shape{V, C}, 9), wpe = random_pair(Shape{T, C}, 10), e = empty_pair(Shape{B, T, C});
  ops::embedding_forward(ex, tok, wte.b, wpe.b, e.b);
  ops::embedding_forward(ex, tok, wte.f, wpe.f, e.f);
  CHECK(rounding_mismatches(e.b, e.f) == 0);
  Pair g = random_pair(Shape{B, T, C}, 11);
  Tensor dwte_b = Tensor::zeros(Shape{V, C}, DType::f32), dwpe_b = Tensor::zeros(Shape{T, C}, DType::f32);
  Tensor dwte_f = Tensor::zeros(Shape{V, C}, DType::f32), dwpe_f = Tensor::zeros(Shape{T, C}, DType::f32);
  ops::embedding_backward(ex, g.b, tok, 0, dwte_b, dwpe_b);
  ops::embedding_backward(ex, g.f, tok, 0, dwte_f, dwpe_f);
  CHECK(rel_diff(dwte_b, dwte_f) == 0.0);
  CHECK(rel_diff(dwpe_b, dwpe_f) == 0.0);

  const double ssb = ops::sum_squares(ex, {x.b, g.b}), ssf = ops::sum_squares(ex, {x.f, g.f});
  CHECK(ssb == doctest::Approx(ssf).epsilon(1e-12));
}

TEST_CASE("ops bf16: matrix products accumulate in fp32") {
  // Shapes of a GPT-2 block's products at small width, all three kinds.
  const int64_t n = 48, in = 96, out = 288;
  Pair x = random_pair(Shape{n, in}, 12), w = random_pair(Shape{out, in}, 13), dy = random_pair(Shape{n, out}, 14);
  auto bound = [](const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t m, int64_t nn, int64_t k,
                  int64_t i, int64_t j) {
    double s = 0;
    for (int64_t l = 0; l < k; ++l) {
      const float av = ta ? a.data<float>()[l * m + i] : a.data<float>()[i * k + l];
      const float bv = tb ? b.data<float>()[j * k + l] : b.data<float>()[l * nn + j];
      s += std::abs(static_cast<double>(av) * bv);
    }
    return 2.0 * static_cast<double>(k) * std::ldexp(1.0, -24) * s;
  };
  struct Case {
    ops::Gemm g;
    const Pair *a, *b;
  };
  const Case cases[] = {
      {{false, true, n, out, in}, &x, &w},    // forward: y = x W^T
      {{false, false, n, in, out}, &dy, &w},  // input gradient: dx = dy W
      {{true, false, out, in, n}, &dy, &x},   // weight gradient: dW = dy^T x
  };
  for (const Case& c : cases) {
    const ops::Gemm& g = c.g;
    Tensor y32 = Tensor::empty(Shape{g.m, g.n}, DType::f32), yb32 = Tensor::empty(Shape{g.m, g.n}, DType::f32);
    Tensor y16 = Tensor::empty(Shape{g.m, g.n}, DType::bf16);
    ops::MatmulPlan(ex, g, DType::f32, DType::f32).run(ex, g, c.a->f, c.b->f, y32, 1.0, 0.0);
    ops::MatmulPlan(ex, g, DType::bf16, DType::f32).run(ex, g, c.a->b, c.b->b, yb32, 1.0, 0.0);
    ops::MatmulPlan(ex, g, DType::bf16, DType::bf16).run(ex, g, c.a->b, c.b->b, y16, 1.0, 0.0);
    int64_t bad32 = 0, bad16 = 0;
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        const double ref = y32.data<float>()[i * g.n + j];
        const double e = bound(c.a->f, c.b->f, g.trans_a, g.trans_b, g.m, g.n, g.k, i, j);
        bad32 += std::abs(yb32.data<float>()[i * g.n + j] - ref) > e;
        bad16 += std::abs(float(y16.data<bf16>()[i * g.n + j]) - ref) > e + std::ldexp(std::abs(ref), -8);
      }
    CHECK(bad32 == 0);
    CHECK(bad16 == 0);
  }
}

TEST_CASE("ops bf16: attention within the bounds of its rounded probabilities") {
  const int64_t B = 2, T = 70, C = 32, nh = 2;  // T: a full and a partial row block
  Pair qkv = random_pair(Shape{B, T, 3 * C}, 15), dy = random_pair(Shape{B, T, C}, 16);
  Pair att = empty_pair(Shape{B, nh, T, T}), y = empty_pair(Shape{B, T, C}), dqkv = empty_pair(Shape{B, T, 3 * C});
  Tensor scratch = Tensor::empty(Shape{ops::attention_scratch(ex, qkv.f.shape(), nh, DType::bf16)}, DType::f32);
  const ops::AttentionPlan plan(ex, qkv.f.shape(), nh, DType::bf16);
  ops::attention_forward(ex, plan, qkv.b, nh, att.b, y.b, scratch);
  ops::attention_forward(ex, plan, qkv.f, nh, att.f, y.f, scratch);
  CHECK(rel_diff(y.b, y.f) <= std::ldexp(1.0, -7));
  int64_t bad = 0;  // the probabilities (j <= i; the rest is unspecified): rounded once
  for (int64_t bh = 0; bh < B * nh; ++bh)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t k = (bh * T + i) * T + j;
        bad += att.b.data<bf16>()[k].bits != bf16(att.f.data<float>()[k]).bits;
      }
  CHECK(bad == 0);
  ops::attention_backward(ex, plan, dy.b, qkv.b, att.b, nh, scratch, dqkv.b);
  ops::attention_backward(ex, plan, dy.f, qkv.f, att.f, nh, scratch, dqkv.f);
  CHECK(rel_diff(dqkv.b, dqkv.f) <= std::ldexp(1.0, -6));
}

TEST_CASE("ops bf16: cross-entropy statistics in fp32, gradient rounded once") {
  const int64_t rows = 9, v = 700;  // v spans two argmax blocks
  Pair logits = random_pair(Shape{rows, v}, 17, 2.0);
  Tensor tgt = Tensor::empty(Shape{rows}, DType::i32);
  for (int64_t r = 0; r < rows; ++r) tgt.data<int32_t>()[r] = static_cast<int32_t>((r * 97) % v);
  auto run = [&](const Tensor& x, Tensor& dx) {
    Tensor mx = Tensor::empty(Shape{rows}, DType::f32), sum = Tensor::empty(Shape{rows}, DType::f32);
    Tensor rl = Tensor::empty(Shape{rows}, DType::f64), arg = Tensor::empty(Shape{rows}, DType::i32);
    ops::LossAccum acc = ops::make_loss_accum(ex);
    ops::softmax_xent_forward(ex, x, tgt, mx, sum, rl, arg, acc);
    ops::softmax_xent_backward(ex, x, tgt, mx, sum, 0.5, dx);
    return ops::read_and_reset(ex, acc);
  };
  Pair dx = empty_pair(Shape{rows, v});
  const ops::LossTotals tb = run(logits.b, dx.b), tf = run(logits.f, dx.f);
  CHECK(tb.mean_sum == doctest::Approx(tf.mean_sum).epsilon(1e-6));
  CHECK(tb.correct == tf.correct);
  CHECK(tb.count == rows);
  CHECK(rel_diff(dx.b, dx.f) <= std::ldexp(1.0, -8));
}

TEST_CASE("ops: AdamW writes the bf16 compute copy as the rounding of the fp32 master") {
  const int64_t n = 1000;
  Pair w0 = random_pair(Shape{n}, 18);
  Tensor w = Tensor::empty(Shape{n}, DType::f32), wref = Tensor::empty(Shape{n}, DType::f32);
  w.copy_from(w0.f);
  wref.copy_from(w0.f);
  Pair g = random_pair(Shape{n}, 19);
  Tensor m = Tensor::zeros(Shape{n}, DType::f32), v = Tensor::zeros(Shape{n}, DType::f32);
  Tensor m2 = Tensor::zeros(Shape{n}, DType::f32), v2 = Tensor::zeros(Shape{n}, DType::f32);
  Tensor wc = Tensor::empty(Shape{n}, DType::bf16);
  ops::AdamWArgs a;
  a.lr = 1e-2;
  a.weight_decay = 0.1;
  ops::adamw_update(ex, a, {{w, g.f, m, v, wc, true}});
  ops::adamw_update(ex, a, {{wref, g.f, m2, v2, Tensor{}, true}});
  CHECK(std::memcmp(w.raw(), wref.raw(), w.bytes()) == 0);  // the master does not depend on the copy
  CHECK(rounding_mismatches(wc, w) == 0);
}
