// The CNN's ops in bf16 against the same ops in fp32 on the same values (the
// fp32 inputs are the bf16 values widened), so only the bf16 path's own
// roundings differ. Bounds, from how each bf16 kernel computes (the largest
// |bf16 - fp32| over the largest |fp32| of a tensor):
// - outputs stored in bf16 (conv y and dx, batch-norm y and dx, pooling,
//   average pooling) are the fp32 result rounded once, at most 2^-8 of the
//   value (bf16 keeps 8 significant bits), plus the order of fp32 sums:
//   bound 2^-7;
// - fp32 results (conv dw and db, batch-norm statistics, running estimates,
//   dw and db) come from the same fp32 arithmetic on the same values, summed
//   in another order or grouping: 1e-5 (products of two bf16 values are exact
//   in fp32);
// - max-pool values and indices, and ReLU, are exact.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/rng.h"
#include "ops/cnn.h"
#include "ops/ops.h"

using namespace dtrain;

namespace {

const Exec& ex = Exec::cpu();
constexpr double kRounded = 1.0 / 128, kSums = 1e-5;

struct Pair {
  Tensor b, f;  // bf16 and its exact fp32 widening
};

Pair random_pair(const Shape& s, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Pair p{Tensor::empty(s, DType::bf16), Tensor::empty(s, DType::f32)};
  CounterRng rng(seed);
  for (int64_t i = 0; i < p.b.numel(); ++i) {
    const bf16 v(static_cast<float>(rng.normal() * scale + shift));
    p.b.data<bf16>()[i] = v;
    p.f.data<float>()[i] = float(v);
  }
  return p;
}

Pair empty_pair(const Shape& s) { return {Tensor::empty(s, DType::bf16), Tensor::empty(s, DType::f32)}; }

Tensor random_f32(const Shape& s, uint64_t seed) { return random_pair(s, seed).f; }

Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  c.copy_from(t);
  return c;
}

// max |a - b| / max |b|; a bf16 or fp32, b fp32.
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

#define CHECK_REL(a, b, bound)                                    \
  do {                                                            \
    const double r_ = rel_diff(a, b);                             \
    INFO(#a << " vs " << #b << ": " << r_ << " (bound " << (bound) << ")"); \
    CHECK(r_ <= (bound));                                         \
  } while (0)

ops::ConvGeom geom(int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int64_t s, int64_t p) {
  ops::ConvGeom g;
  g.c = c, g.h = h, g.w = w, g.o = o, g.kh = g.kw = k, g.stride = s, g.pad = p;
  return g;
}

}  // namespace

TEST_CASE("cnn ops bf16: convolution forward and backward against fp32") {
  struct Case {
    const char* name;
    ops::ConvGeom g;
    int64_t n;
    bool bias, dres, inplace;
  };
  // Every convolution of the shipped CNN configs (configs/cnn-mnist.toml and
  // cnn-fashion-mnist.toml: stem 16, stages 16-32-64; 28 wide is the wide
  // layout, stride 2 and the 1x1 shortcuts the compact one), and odd shapes.
  // Under AVX-512 builds the bf16 dx of stride 1 and 2 goes through
  // fold_round_bf16 (conv.cpp), else through col2im: the same bound either way.
  for (const Case& c : {Case{"stem", geom(1, 28, 28, 16, 3, 1, 1), 20, false, false, false},
                        Case{"stage0.conv", geom(16, 28, 28, 16, 3, 1, 1), 20, false, true, true},
                        Case{"stage1.conv1", geom(16, 28, 28, 32, 3, 2, 1), 20, false, true, false},
                        Case{"stage1.conv2", geom(32, 14, 14, 32, 3, 1, 1), 20, false, true, true},
                        Case{"stage1.shortcut", geom(16, 28, 28, 32, 1, 2, 0), 20, false, false, false},
                        Case{"stage2.conv1", geom(32, 14, 14, 64, 3, 2, 1), 20, false, true, false},
                        Case{"stage2.conv2", geom(64, 7, 7, 64, 3, 1, 1), 20, false, true, true},
                        Case{"shortcut", geom(32, 14, 14, 64, 1, 2, 0), 20, false, false, false},
                        Case{"odd.bias", geom(5, 11, 9, 7, 3, 2, 1), 3, true, true, false},
                        Case{"odd.k5", geom(2, 13, 7, 3, 5, 1, 2), 5, true, false, true},
                        Case{"odd.w37.s2", geom(3, 9, 37, 4, 3, 2, 1), 3, false, true, false},
                        Case{"odd.k7.s2", geom(3, 19, 19, 5, 7, 2, 3), 2, false, false, true},
                        Case{"odd.pad0", geom(4, 9, 20, 6, 3, 1, 0), 3, false, true, false},
                        Case{"odd.s3 (col2im)", geom(2, 10, 10, 3, 3, 3, 1), 2, false, true, false},
                        Case{"odd.k9 (col2im)", geom(2, 12, 12, 3, 9, 1, 4), 2, false, false, true}}) {
    INFO(c.name);
    const ops::ConvGeom& g = c.g;
    Pair x = random_pair(Shape{c.n, g.c, g.h, g.w}, 1), w = random_pair(Shape{g.o, g.c, g.kh, g.kw}, 2, 0.3);
    Pair b = c.bias ? random_pair(Shape{g.o}, 3) : Pair{};
    Pair dy = random_pair(Shape{c.n, g.o, g.ho(), g.wo()}, 4), dres = random_pair(x.b.shape(), 5);
    Pair y = empty_pair(dy.b.shape()), dx = empty_pair(x.b.shape());
    if (c.inplace) dx = Pair{clone(dres.b), clone(dres.f)};
    const Tensor dw0 = random_f32(w.f.shape(), 6), db0 = random_f32(Shape{g.o}, 7);
    Tensor dw_b = clone(dw0), dw_f = clone(dw0), db_b = c.bias ? clone(db0) : Tensor{}, db_f = c.bias ? clone(db0) : Tensor{};

    ops::ConvPlan pb(ex, g, c.n, DType::bf16, c.name), pf(ex, g, c.n, DType::f32, c.name);
    pb.forward(ex, x.b, w.b, b.b, y.b);
    pf.forward(ex, x.f, w.f, b.f, y.f);
    CHECK_REL(y.b, y.f, kRounded);
    const Tensor rb = c.inplace ? dx.b : (c.dres ? dres.b : Tensor{});
    const Tensor rf = c.inplace ? dx.f : (c.dres ? dres.f : Tensor{});
    pb.backward(ex, x.b, w.b, dy.b, rb, dx.b, dw_b, db_b);
    pf.backward(ex, x.f, w.f, dy.f, rf, dx.f, dw_f, db_f);
    CHECK_REL(dx.b, dx.f, kRounded);
    CHECK_REL(dw_b, dw_f, kSums);
    if (c.bias) CHECK_REL(db_b, db_f, kSums);
  }
}

TEST_CASE("cnn ops bf16: a bf16 convolution refuses bf16 weight gradients") {
  const ops::ConvGeom g = geom(2, 5, 5, 3, 3, 1, 1);
  Pair x = random_pair(Shape{2, 2, 5, 5}, 1), w = random_pair(Shape{3, 2, 3, 3}, 2), dy = random_pair(Shape{2, 3, 5, 5}, 3);
  ops::ConvPlan pb(ex, g, 2, DType::bf16);
  CHECK_THROWS_WITH_AS(pb.backward(ex, x.b, w.b, dy.b, Tensor{}, Tensor{}, Tensor::zeros(Shape{3, 2, 3, 3}, DType::bf16),
                                   Tensor{}),
                       doctest::Contains("bf16 gradient for bf16 operands"), InternalError);
}

TEST_CASE("cnn ops bf16: batch norm (training, evaluation, residual, ReLU) keeps fp32 statistics") {
  for (bool training : {true, false})
    for (bool relu : {false, true})
      for (bool res : {false, true}) {
        INFO("training " << training << " relu " << relu << " res " << res);
        ops::BatchNormArgs a;
        a.n = 6, a.c = 5, a.hw = 7 * 3, a.relu = relu;
        const Shape s{6, 5, 7, 3}, cs{5};
        Pair x = random_pair(s, 11, 2.0, 3.0), w = random_pair(cs, 12), b = random_pair(cs, 13);
        Pair r = res ? random_pair(s, 14) : Pair{}, dy = random_pair(s, 15);
        Pair y = empty_pair(s), dx = empty_pair(s), dz = empty_pair(s);
        Tensor stats[2][4];  // [bf16, fp32][mean, rstd, running mean, running var]
        Tensor grads[2][2];  // dw, db
        for (int k = 0; k < 2; ++k) {
          for (int i = 0; i < 2; ++i) stats[k][i] = Tensor::empty(cs, DType::f32);
          stats[k][2] = random_f32(cs, 16);
          stats[k][3] = random_f32(cs, 17);
          for (int64_t i = 0; i < 5; ++i) stats[k][3].data<float>()[i] = 1.f + std::abs(stats[k][3].data<float>()[i]);
          grads[k][0] = random_f32(cs, 18);
          grads[k][1] = random_f32(cs, 19);
        }
        auto run = [&](int k, const Tensor& xx, const Tensor& ww, const Tensor& bb, const Tensor& rr, const Tensor& dyy,
                       const Tensor& yy, const Tensor& dxx, const Tensor& dzz) {
          Tensor* st = stats[k];
          if (training)
            ops::batchnorm_forward_train(ex, a, xx, ww, bb, rr, yy, st[0], st[1], st[2], st[3]);
          else
            ops::batchnorm_forward_eval(ex, a, xx, ww, bb, rr, st[2], st[3], yy, st[0], st[1]);
          ops::batchnorm_backward(ex, a, training, dyy, yy, xx, ww, st[0], st[1], dxx, res ? dzz : Tensor{},
                                  grads[k][0], grads[k][1]);
        };
        run(0, x.b, w.b, b.b, r.b, dy.b, y.b, dx.b, dz.b);
        run(1, x.f, w.f, b.f, r.f, dy.f, y.f, dx.f, dz.f);
        CHECK_REL(y.b, y.f, kRounded);
        for (int i = 0; i < 4; ++i) CHECK_REL(stats[0][i], stats[1][i], kSums);
        // dx reads the ReLU mask from each side's own y: where a rounded y
        // crossed zero the masks could differ; with these values none does.
        CHECK_REL(dx.b, dx.f, kRounded);
        if (res) CHECK_REL(dz.b, dz.f, kRounded);
        CHECK_REL(grads[0][0], grads[1][0], kSums);
        CHECK_REL(grads[0][1], grads[1][1], kSums);
      }
}

TEST_CASE("cnn ops bf16: max and average pooling, relu") {
  ops::PoolGeom g;
  g.h = 9, g.w = 8, g.k = 3, g.stride = 2, g.pad = 1;  // overlapping windows
  const Shape in{3, 4, 9, 8}, out{3, 4, g.ho(), g.wo()};
  Pair x = random_pair(in, 21), dy = random_pair(out, 22), y = empty_pair(out), dx = empty_pair(in);
  Tensor idx_b = Tensor::empty(out, DType::i32), idx_f = Tensor::empty(out, DType::i32);
  ops::maxpool_forward(ex, g, x.b, y.b, idx_b);
  ops::maxpool_forward(ex, g, x.f, y.f, idx_f);
  CHECK(rel_diff(y.b, y.f) == 0);
  CHECK(std::memcmp(idx_b.raw(), idx_f.raw(), idx_b.bytes()) == 0);
  ops::maxpool_backward(ex, g, dy.b, idx_b, dx.b);
  ops::maxpool_backward(ex, g, dy.f, idx_f, dx.f);
  CHECK_REL(dx.b, dx.f, kRounded);

  Pair p = empty_pair(Shape{3, 4}), dp = random_pair(Shape{3, 4}, 23);
  ops::avgpool_forward(ex, x.b, p.b);
  ops::avgpool_forward(ex, x.f, p.f);
  CHECK_REL(p.b, p.f, kRounded);
  ops::avgpool_backward(ex, dp.b, dx.b);
  ops::avgpool_backward(ex, dp.f, dx.f);
  CHECK_REL(dx.b, dx.f, kRounded);

  Pair ry = empty_pair(in), rdx = empty_pair(in);
  ops::relu_forward(ex, x.b, ry.b);
  ops::relu_forward(ex, x.f, ry.f);
  CHECK(rel_diff(ry.b, ry.f) == 0);
  ops::relu_backward(ex, ry.b, x.b, rdx.b);
  ops::relu_backward(ex, ry.f, x.f, rdx.f);
  CHECK(rel_diff(rdx.b, rdx.f) == 0);
}
