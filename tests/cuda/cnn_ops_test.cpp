// The CNN's ops on a GPU against the same ops on the CPU, on the shipped
// MNIST CNN's shapes (walked from configs/cnn-mnist.toml) and on odd ones
// (bias, stride 2 without padding, 1x1 and 5x5 kernels, a smaller batch than
// planned, overlapping pooling windows with ties), then twice more to check
// that the GPU gives the same bits every run.
//
// Tolerances, as the largest |gpu - cpu| over the largest |cpu| of a tensor:
// - fp32 (strict: no TF32): 1e-5. The CPU's own fp32 convolutions are within
//   1e-6 of fp64 on these shapes (measured), cuDNN's fp32 sums differ from
//   them only in order; batch norm's moments are in double on both sides.
// - exact (0): max-pool forward and its indices, max-pool backward (the
//   gather adds in the CPU's order), ReLU.
// - bf16 storage against fp32 on the same (bf16) inputs: 1e-2, a few bf16
//   roundings (2^-8 relative each) of outputs and of cuDNN's bf16 weight
//   gradient before it is added into fp32.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/rng.h"
#include "model/model.h"
#include "ops/cnn.h"
#include "ops/ops.h"
#include "ops/runtime.h"

using namespace dtrain;

namespace {

constexpr double kFp32 = 1e-5, kBf16 = 1e-2;
// fp32 weight gradients sum N x Ho x Wo products per element (12,544 for the
// MNIST CNN's 14 x 14 stage at batch 64) in the engine's own order: cuDNN's
// engine 17 on an H200 came 1.1e-5 and 1.6e-5 from the CPU's order.
constexpr double kFp32Wgrad = 4e-5;

const Exec& cpu_ex() { return Exec::cpu(); }

Tensor randn(const Shape& s, uint64_t seed, double scale = 1.0) {
  Tensor t = Tensor::empty(s, DType::f32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.normal() * scale);
  return t;
}

// Values on a coarse grid (many ties, many zeros).
Tensor coarse(const Shape& s, uint64_t seed) {
  Tensor t = randn(s, seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::round(t.data<float>()[i] * 2.f) / 2.f;
  return t;
}

Tensor clone(const Tensor& h) {
  Tensor t = Tensor::empty(h.shape(), h.dtype());
  t.copy_from(h);
  return t;
}

// Host fp32 -> device `act` (f32, or bf16 rounded to nearest even).
Tensor up(const Exec& ex, const Tensor& h, DType act = DType::f32) {
  Tensor src = h;
  if (act == DType::bf16) {
    src = Tensor::empty(h.shape(), DType::bf16);
    for (int64_t i = 0; i < h.numel(); ++i) src.data<bf16>()[i] = bf16(h.data<float>()[i]);
  }
  Tensor d = Tensor::empty(h.shape(), act, ex.device);
  d.copy_from(src);
  return d;
}

// The fp32 values a bf16 upload holds (the CPU reference's inputs).
Tensor rounded(const Tensor& h, DType act) {
  if (act == DType::f32) return h;
  Tensor t = clone(h);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(bf16(t.data<float>()[i]));
  return t;
}

// Device tensor -> host fp32 (after the stream is done).
Tensor down(const ops::Runtime& rt, const Tensor& d) {
  rt.sync();
  Tensor h = d.to_host();
  if (h.dtype() != DType::bf16) return h;
  Tensor f = Tensor::empty(h.shape(), DType::f32);
  for (int64_t i = 0; i < h.numel(); ++i) f.data<float>()[i] = float(h.data<bf16>()[i]);
  return f;
}

double rel_err(const Tensor& got, const Tensor& want) {
  REQUIRE(got.numel() == want.numel());
  double d = 0, m = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double a = got.data<float>()[i], b = want.data<float>()[i];
    d = std::isnan(a) != std::isnan(b) ? INFINITY : std::max(d, std::fabs(a - b));
    m = std::max(m, std::fabs(b));
  }
  return m > 0 ? d / m : d;
}

bool same_bits(const ops::Runtime& rt, const Tensor& a, const Tensor& b) {
  rt.sync();
  Tensor ha = a.to_host(), hb = b.to_host();
  return ha.bytes() == hb.bytes() && std::memcmp(ha.raw(), hb.raw(), ha.bytes()) == 0;
}

#define CHECK_CLOSE(got, want, tol)                                     \
  do {                                                                  \
    const double e_ = rel_err(got, want);                               \
    INFO(#got << " vs " << #want << ": relative error " << e_);         \
    CHECK(e_ <= (tol));                                                 \
  } while (0)

std::unique_ptr<ops::Runtime> gpu() { return ops::Runtime::open("cuda", 0, /*tf32=*/false); }

// ---------------------------------------------------------------- convolution

struct ConvCase {
  std::string name;
  ops::ConvGeom g;
  int64_t max_batch, n;  // planned, run
  bool bias;
  int dres;  // 0: none, 1: a separate residual gradient, 2: added in place (dres is dx)
};

// One forward and backward on the CPU and (twice) on the GPU.
void check_conv(const ops::Runtime& rt, const ConvCase& c, DType act) {
  INFO(c.name << " " << std::string(dtype_name(act)) << " n=" << c.n << " of " << c.max_batch);
  const Exec& ex = rt.exec();
  const ops::ConvGeom& g = c.g;
  const uint64_t s = std::hash<std::string>{}(c.name);
  const Tensor x = rounded(randn(Shape{c.n, g.c, g.h, g.w}, s + 1), act);
  const Tensor w = rounded(randn(Shape{g.o, g.c, g.kh, g.kw}, s + 2, 0.2), act);
  const Tensor b = c.bias ? rounded(randn(Shape{g.o}, s + 3), act) : Tensor{};
  const Tensor dy = rounded(randn(Shape{c.n, g.o, g.ho(), g.wo()}, s + 4), act);
  const Tensor dw0 = randn(w.shape(), s + 5), db0 = randn(Shape{g.o}, s + 6);
  const Tensor dres = c.dres ? rounded(randn(x.shape(), s + 7), act) : Tensor{};

  // CPU, fp32.
  ops::ConvPlan cp(cpu_ex(), g, c.max_batch, DType::f32);
  Tensor y_c = Tensor::empty(dy.shape(), DType::f32);
  cp.forward(cpu_ex(), x, w, b, y_c);
  Tensor dw_c = clone(dw0), db_c = c.bias ? clone(db0) : Tensor{};
  Tensor dx_c = c.dres == 2 ? clone(dres) : Tensor::empty(x.shape(), DType::f32);
  cp.backward(cpu_ex(), x, w, dy, c.dres == 2 ? dx_c : dres, dx_c, dw_c, db_c);

  // GPU, twice from the same inputs.
  ops::ConvPlan gp(ex, g, c.max_batch, act, c.name);
  MESSAGE(c.name << " " << std::string(dtype_name(act)) << ": " << gp.engines());
  const Tensor xg = up(ex, x, act), wg = up(ex, w, act), dyg = up(ex, dy, act);
  const Tensor bg = c.bias ? up(ex, b, act) : Tensor{};
  Tensor y_g[2], dx_g[2], dw_g[2], db_g[2];
  for (int r = 0; r < 2; ++r) {
    y_g[r] = Tensor::empty(dy.shape(), act, ex.device);
    gp.forward(ex, xg, wg, bg, y_g[r]);
    dw_g[r] = up(ex, dw0);
    db_g[r] = c.bias ? up(ex, db0) : Tensor{};
    dx_g[r] = c.dres == 2 ? up(ex, dres, act) : Tensor::empty(x.shape(), act, ex.device);
    const Tensor dres_g = c.dres == 1 ? up(ex, dres, act) : (c.dres == 2 ? dx_g[r] : Tensor{});
    gp.backward(ex, xg, wg, dyg, dres_g, dx_g[r], dw_g[r], db_g[r]);
  }
  const double tol = act == DType::f32 ? kFp32 : kBf16;
  CHECK_CLOSE(down(rt, y_g[0]), y_c, tol);
  CHECK_CLOSE(down(rt, dx_g[0]), dx_c, tol);
  CHECK_CLOSE(down(rt, dw_g[0]), dw_c, act == DType::f32 ? kFp32Wgrad : kBf16);
  if (c.bias) CHECK_CLOSE(down(rt, db_g[0]), db_c, tol);
  CHECK(same_bits(rt, y_g[0], y_g[1]));
  CHECK(same_bits(rt, dx_g[0], dx_g[1]));
  CHECK(same_bits(rt, dw_g[0], dw_g[1]));
  if (c.bias) CHECK(same_bits(rt, db_g[0], db_g[1]));
}

// The convolutions of configs/cnn-mnist.toml at its micro-batch.
std::vector<ConvCase> mnist_convs() {
  const Config cfg = load_config(std::string(DTRAIN_SOURCE_DIR) + "/configs/cnn-mnist.toml");
  auto m = describe_model(cfg.model, 0);
  Shape in = m->input_shape(cfg.train.micro_batch);
  std::vector<std::pair<std::string, ops::ConvGeom>> convs;
  for (const auto& layer : m->layers) {
    layer->list_convolutions(in, convs);
    in = layer->output_shape(in);
  }
  std::vector<ConvCase> out;
  for (auto& [name, g] : convs) out.push_back({name, g, cfg.train.micro_batch, cfg.train.micro_batch, false, 1});
  return out;
}

ops::ConvGeom geom(int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int64_t s, int64_t p) {
  ops::ConvGeom g;
  g.c = c, g.h = h, g.w = w, g.o = o, g.kh = g.kw = k, g.stride = s, g.pad = p;
  return g;
}

std::vector<ConvCase> odd_convs() {
  return {
      {"odd.k3s2p1.bias", geom(5, 11, 9, 7, 3, 2, 1), 3, 3, true, 0},
      {"odd.k3s2p0.bias.inplace", geom(3, 8, 10, 4, 3, 2, 0), 4, 4, true, 2},
      {"odd.k1s2.shortcut", geom(6, 9, 9, 10, 1, 2, 0), 2, 2, false, 1},
      {"odd.k5s1p2.bias", geom(2, 13, 7, 3, 5, 1, 2), 5, 5, true, 2},
      {"odd.smaller-batch", geom(4, 12, 12, 8, 3, 1, 1), 6, 3, true, 1},
  };
}

}  // namespace

TEST_CASE("cuda cnn: convolutions of the MNIST CNN match the CPU in fp32, and rerun bit for bit") {
  auto rt = gpu();
  for (const ConvCase& c : mnist_convs()) check_conv(*rt, c, DType::f32);
}

TEST_CASE("cuda cnn: odd convolutions (bias, strides, 1x1 and 5x5, residual, smaller batch) match the CPU in fp32") {
  auto rt = gpu();
  for (const ConvCase& c : odd_convs()) check_conv(*rt, c, DType::f32);
}

TEST_CASE("cuda cnn: convolutions in bf16 storage match the fp32 CPU on the same values") {
  auto rt = gpu();
  for (const ConvCase& c : mnist_convs()) check_conv(*rt, c, DType::bf16);
  for (const ConvCase& c : odd_convs()) check_conv(*rt, c, DType::bf16);
}

TEST_CASE("cuda cnn: a convolution run on a batch beyond its plan is refused in one line") {
  auto rt = gpu();
  const Exec& ex = rt->exec();
  const ops::ConvGeom g = geom(2, 6, 6, 3, 3, 1, 1);
  ops::ConvPlan gp(ex, g, 2, DType::f32, "too.big");
  Tensor x = Tensor::zeros(Shape{3, 2, 6, 6}, DType::f32, ex.device), w = Tensor::zeros(Shape{3, 2, 3, 3}, DType::f32, ex.device);
  Tensor y = Tensor::empty(Shape{3, 3, 6, 6}, DType::f32, ex.device);
  CHECK_THROWS_WITH_AS(gp.forward(ex, x, w, Tensor{}, y), doctest::Contains("too.big: batch 3 beyond the planned 2"),
                       InternalError);
}

// ---------------------------------------------------------------- batch norm

namespace {

struct BnCase {
  int64_t n, c, h, w;
  bool relu, res, dz;
};

void check_batchnorm(const ops::Runtime& rt, const BnCase& k, bool training, DType act) {
  INFO("bn (" << k.n << ", " << k.c << ", " << k.h << ", " << k.w << ") relu " << k.relu << " res " << k.res
              << " dz " << k.dz << " training " << training << " " << std::string(dtype_name(act)));
  const Exec& ex = rt.exec();
  ops::BatchNormArgs a;
  a.n = k.n, a.c = k.c, a.hw = k.h * k.w, a.relu = k.relu;
  const Shape s{k.n, k.c, k.h, k.w}, cs{k.c};
  const uint64_t seed = static_cast<uint64_t>(k.n * 1000 + k.c * 10 + k.relu + 2 * k.res + 4 * k.dz);
  Tensor x = rounded(randn(s, seed, 2.0), act);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] += 3.f;  // a mean far from 0
  x = rounded(x, act);
  const Tensor w = rounded(randn(cs, seed + 1), act), b = rounded(randn(cs, seed + 2), act);
  const Tensor res = k.res ? rounded(randn(s, seed + 3), act) : Tensor{};
  const Tensor dy = rounded(randn(s, seed + 4), act);
  Tensor rm = randn(cs, seed + 5), rv = randn(cs, seed + 6);
  for (int64_t i = 0; i < k.c; ++i) rv.data<float>()[i] = 0.5f + std::fabs(rv.data<float>()[i]);
  const Tensor dw0 = randn(cs, seed + 7), db0 = randn(cs, seed + 8);

  // CPU, fp32.
  Tensor y_c = Tensor::empty(s, DType::f32), mean_c = Tensor::empty(cs, DType::f32), rstd_c = Tensor::empty(cs, DType::f32);
  Tensor rm_c = clone(rm), rv_c = clone(rv);
  if (training)
    ops::batchnorm_forward_train(cpu_ex(), a, x, w, b, res, y_c, mean_c, rstd_c, rm_c, rv_c);
  else
    ops::batchnorm_forward_eval(cpu_ex(), a, x, w, b, res, rm_c, rv_c, y_c, mean_c, rstd_c);
  Tensor dx_c = Tensor::empty(s, DType::f32), dz_c = k.dz ? Tensor::empty(s, DType::f32) : Tensor{};
  Tensor dw_c = clone(dw0), db_c = clone(db0);
  ops::batchnorm_backward(cpu_ex(), a, training, dy, y_c, x, w, mean_c, rstd_c, dx_c, dz_c, dw_c, db_c);

  // GPU, twice.
  const Tensor xg = up(ex, x, act), wg = up(ex, w, act), bg = up(ex, b, act), dyg = up(ex, dy, act);
  const Tensor resg = k.res ? up(ex, res, act) : Tensor{};
  Tensor y_g[2], mean_g[2], rstd_g[2], rm_g[2], rv_g[2], dx_g[2], dz_g[2], dw_g[2], db_g[2];
  for (int r = 0; r < 2; ++r) {
    y_g[r] = Tensor::empty(s, act, ex.device);
    mean_g[r] = Tensor::empty(cs, DType::f32, ex.device);
    rstd_g[r] = Tensor::empty(cs, DType::f32, ex.device);
    rm_g[r] = up(ex, rm), rv_g[r] = up(ex, rv);
    if (training)
      ops::batchnorm_forward_train(ex, a, xg, wg, bg, resg, y_g[r], mean_g[r], rstd_g[r], rm_g[r], rv_g[r]);
    else
      ops::batchnorm_forward_eval(ex, a, xg, wg, bg, resg, rm_g[r], rv_g[r], y_g[r], mean_g[r], rstd_g[r]);
    dx_g[r] = Tensor::empty(s, act, ex.device);
    dz_g[r] = k.dz ? Tensor::empty(s, act, ex.device) : Tensor{};
    dw_g[r] = up(ex, dw0), db_g[r] = up(ex, db0);
    // Backward from the CPU's forward output, so that the ReLU mask is the same on both sides.
    const Tensor yc_g = up(ex, y_c, act);
    ops::batchnorm_backward(ex, a, training, dyg, yc_g, xg, wg, mean_g[r], rstd_g[r], dx_g[r], dz_g[r], dw_g[r],
                            db_g[r]);
  }
  const double tol = act == DType::f32 ? kFp32 : kBf16;
  CHECK_CLOSE(down(rt, y_g[0]), y_c, tol);
  CHECK_CLOSE(down(rt, mean_g[0]), mean_c, kFp32);
  CHECK_CLOSE(down(rt, rstd_g[0]), rstd_c, kFp32);
  CHECK_CLOSE(down(rt, rm_g[0]), rm_c, kFp32);
  CHECK_CLOSE(down(rt, rv_g[0]), rv_c, kFp32);
  CHECK_CLOSE(down(rt, dx_g[0]), dx_c, tol);
  if (k.dz) CHECK_CLOSE(down(rt, dz_g[0]), dz_c, act == DType::f32 ? 0.0 : kBf16);
  CHECK_CLOSE(down(rt, dw_g[0]), dw_c, tol);
  CHECK_CLOSE(down(rt, db_g[0]), db_c, tol);
  for (const Tensor* t : {y_g, mean_g, rstd_g, rm_g, rv_g, dx_g, dw_g, db_g}) CHECK(same_bits(rt, t[0], t[1]));
  if (k.dz) CHECK(same_bits(rt, dz_g[0], dz_g[1]));
}

const std::vector<BnCase> kBnCases = {
    {64, 16, 28, 28, true, false, false},  // the MNIST stem and stage 0
    {64, 32, 14, 14, true, true, true},    // a block's bn2: residual, ReLU, residual gradient
    {64, 64, 7, 7, false, false, false},   // a shortcut's bn
    {3, 5, 7, 9, true, true, false},       // odd sizes
    {2, 3, 1, 1, false, true, true},       // two values per channel
    {5, 300, 2, 3, true, false, true},     // more channels than threads in a block
};

}  // namespace

TEST_CASE("cuda cnn: batch norm (training, evaluation, fused residual and ReLU) matches the CPU in fp32 and bf16") {
  auto rt = gpu();
  for (const BnCase& k : kBnCases)
    for (bool training : {true, false})
      for (DType act : {DType::f32, DType::bf16}) check_batchnorm(*rt, k, training, act);
}

// ---------------------------------------------------------------- pooling, relu

TEST_CASE("cuda cnn: max pooling matches the CPU exactly (first maximum on ties), and average pooling") {
  auto rt = gpu();
  const Exec& ex = rt->exec();
  struct P {
    int64_t n, c, h, w, k, s, p;
  };
  for (const P& q : {P{64, 16, 28, 28, 3, 2, 1}, P{2, 3, 7, 9, 2, 2, 0}, P{3, 4, 8, 8, 3, 1, 1}, P{1, 2, 5, 5, 5, 3, 2}})
    for (DType act : {DType::f32, DType::bf16}) {
      INFO("maxpool (" << q.n << ", " << q.c << ", " << q.h << ", " << q.w << ") k" << q.k << " s" << q.s << " p"
                       << q.p << " " << std::string(dtype_name(act)));
      ops::PoolGeom g;
      g.h = q.h, g.w = q.w, g.k = q.k, g.stride = q.s, g.pad = q.p;
      const Shape in{q.n, q.c, q.h, q.w}, out{q.n, q.c, g.ho(), g.wo()};
      const Tensor x = coarse(in, 11), dy = rounded(randn(out, 12), act);  // x: many ties
      Tensor y_c = Tensor::empty(out, DType::f32), idx_c = Tensor::empty(out, DType::i32), dx_c = Tensor::empty(in, DType::f32);
      ops::maxpool_forward(cpu_ex(), g, x, y_c, idx_c);
      ops::maxpool_backward(cpu_ex(), g, dy, idx_c, dx_c);
      Tensor y_g[2], idx_g[2], dx_g[2];
      const Tensor xg = up(ex, x, act), dyg = up(ex, dy, act);
      for (int r = 0; r < 2; ++r) {
        y_g[r] = Tensor::empty(out, act, ex.device);
        idx_g[r] = Tensor::empty(out, DType::i32, ex.device);
        dx_g[r] = Tensor::empty(in, act, ex.device);
        ops::maxpool_forward(ex, g, xg, y_g[r], idx_g[r]);
        ops::maxpool_backward(ex, g, dyg, idx_g[r], dx_g[r]);
      }
      CHECK_CLOSE(down(*rt, y_g[0]), y_c, 0.0);  // coarse values are exact in bf16
      CHECK(same_bits(*rt, idx_g[0], idx_c));
      CHECK_CLOSE(down(*rt, dx_g[0]), dx_c, act == DType::f32 ? 0.0 : kBf16);
      for (const Tensor* t : {y_g, idx_g, dx_g}) CHECK(same_bits(*rt, t[0], t[1]));
    }
  for (const Shape& in : {Shape{64, 64, 7, 7}, Shape{3, 5, 1, 1}, Shape{2, 3, 9, 11}})
    for (DType act : {DType::f32, DType::bf16}) {
      INFO("avgpool " << in.str() << " " << std::string(dtype_name(act)));
      const Shape out{in[0], in[1]};
      const Tensor x = rounded(randn(in, 21), act), dy = rounded(randn(out, 22), act);
      Tensor y_c = Tensor::empty(out, DType::f32), dx_c = Tensor::empty(in, DType::f32);
      ops::avgpool_forward(cpu_ex(), x, y_c);
      ops::avgpool_backward(cpu_ex(), dy, dx_c);
      const Tensor xg = up(ex, x, act), dyg = up(ex, dy, act);
      Tensor y_g = Tensor::empty(out, act, ex.device), dx_g = Tensor::empty(in, act, ex.device);
      ops::avgpool_forward(ex, xg, y_g);
      ops::avgpool_backward(ex, dyg, dx_g);
      const double tol = act == DType::f32 ? 1e-6 : kBf16;
      CHECK_CLOSE(down(*rt, y_g), y_c, tol);
      CHECK_CLOSE(down(*rt, dx_g), dx_c, tol);
    }
}

TEST_CASE("cuda cnn: relu forward and backward match the CPU exactly") {
  auto rt = gpu();
  const Exec& ex = rt->exec();
  for (int64_t n : {int64_t{1}, int64_t{1000003}, int64_t{64 * 16 * 28 * 28}}) {
    INFO("relu n=" << n);
    const Tensor x = coarse(Shape{n}, 31), dy = randn(Shape{n}, 32);  // coarse: exact zeros too
    Tensor y_c = Tensor::empty(Shape{n}, DType::f32), dx_c = Tensor::empty(Shape{n}, DType::f32);
    ops::relu_forward(cpu_ex(), x, y_c);
    ops::relu_backward(cpu_ex(), y_c, dy, dx_c);
    const Tensor xg = up(ex, x), dyg = up(ex, dy);
    Tensor y_g = Tensor::empty(Shape{n}, DType::f32, ex.device), dx_g = Tensor::empty(Shape{n}, DType::f32, ex.device);
    ops::relu_forward(ex, xg, y_g);
    ops::relu_backward(ex, y_g, dyg, dx_g);
    CHECK(same_bits(*rt, y_g, y_c));
    CHECK(same_bits(*rt, dx_g, dx_c));
    ops::relu_backward(ex, y_g, dyg, dyg);  // in place
    CHECK(same_bits(*rt, dyg, dx_c));
  }
}
