// The GPT's memory-bound ops on the GPU against the same ops on the CPU, in
// f32 and bf16, on small odd shapes and GPT-2 124M-like shapes (rows 4 x 64,
// C 768, V 50304), inputs from a seeded RNG, GPU outputs poisoned with NaN
// before each run. Every GPU op runs twice and must give the same bits.
// Stated tolerances (normalised error ||gpu - cpu|| / ||cpu||):
//   bit-identical: add, scale, fill_columns, convert, broadcast_rows, add_rows, dropout
//     masks and dropout_backward, embedding forward/shard/position and
//     embedding_backward, row maxima and argmax, the bf16 optimizer copy
//     (against bf16 of the GPU's own master);
//   fp32 1e-5 (bf16 1e-2 for bf16 outputs, 1e-4 for their fp32 gradients):
//     gelu, swiglu, layernorm, rmsnorm, sum_rows_acc, cross-entropy and its
//     vp pieces;
//   1e-6: dropout outputs with a residual (an FMA may differ), AdamW/SGD
//     (the compilers contract multiply-adds differently), rope in fp32 (the
//     same cosine and sine tables; bf16 1e-2) and rope's inverse after it
//     (the input back), with the values' third of qkv bit-identical;
//   1e-12: sum_squares (double).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "cuda/compare.h"
#include "ops/ops.h"
#include "ops/optim.h"
#include "ops/runtime.h"

using namespace dtrain;
using namespace dtrain::cudatest;

namespace {

struct Dims {
  int64_t B, T, C, V;
  const char* name;
  int64_t rows() const { return B * T; }
};
const Dims kDims[] = {{1, 7, 37, 101, "small odd"}, {4, 64, 768, 50304, "GPT-2 124M"}};
const DType kTypes[] = {DType::f32, DType::bf16};

double tol(DType dt, double f32, double bf) { return dt == DType::bf16 ? bf : f32; }

// Runs `run` (returning host copies of its outputs) twice; the runs must agree bit for bit.
std::vector<Tensor> twice(const std::function<std::vector<Tensor>()>& run) {
  std::vector<Tensor> a = run(), b = run();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(bit_diffs(a[i], b[i]) == 0, "output " << i << " differs between two GPU runs");
  return a;
}

struct Ctx {
  std::unique_ptr<ops::Runtime> rt = ops::Runtime::open("cuda", 0, false);
  const Exec& gpu() const { return rt->exec(); }
  const Exec& cpu() const { return Exec::cpu(); }
};

}  // namespace

TEST_CASE("cuda ops: add, scale, convert, broadcast_rows and add_rows are the CPU's bits") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      const Shape s{d.rows(), d.C};
      Tensor a = random(s, dt, 1), b = random(s, dt, 2), bias = random(Shape{d.C}, dt, 3);
      Tensor y = Tensor::empty(s, dt);
      ops::add(c.cpu(), a, b, y);
      auto g = twice([&] {
        Tensor yd = poisoned(ex, s, dt);
        ops::add(ex, upload(ex, a), upload(ex, b), yd);
        return std::vector<Tensor>{download(yd)};
      });
      CHECK(bit_diffs(g[0], y) == 0);

      Tensor x = clone(a);
      ops::scale(c.cpu(), x, 0.37);
      g = twice([&] {
        Tensor xd = upload(ex, a);
        ops::scale(ex, xd, 0.37);
        return std::vector<Tensor>{download(xd)};
      });
      CHECK(bit_diffs(g[0], x) == 0);

      // A padded vocabulary's columns: -inf before the loss, 0 in its gradient (and none at from = C).
      for (const auto& [from, value] : {std::pair{d.C - 3, -INFINITY}, {1, 0.0}, {0, 2.5}, {d.C, -1.0}}) {
        Tensor f = clone(a);
        ops::fill_columns(c.cpu(), f, from, value);
        g = twice([&] {
          Tensor fd = upload(ex, a);
          ops::fill_columns(ex, fd, from, value);
          return std::vector<Tensor>{download(fd)};
        });
        CAPTURE(from);
        CHECK(bit_diffs(g[0], f) == 0);
      }

      Tensor br = Tensor::empty(s, dt), ar = clone(a);
      ops::broadcast_rows(c.cpu(), bias, br);
      ops::add_rows(c.cpu(), bias, ar);
      g = twice([&] {
        Tensor brd = poisoned(ex, s, dt), ard = upload(ex, a), bd = upload(ex, bias);
        ops::broadcast_rows(ex, bd, brd);
        ops::add_rows(ex, bd, ard);
        return std::vector<Tensor>{download(brd), download(ard)};
      });
      CHECK(bit_diffs(g[0], br) == 0);
      CHECK(bit_diffs(g[1], ar) == 0);

      // convert to the other dtype and back
      const DType other = dt == DType::f32 ? DType::bf16 : DType::f32;
      Tensor o = Tensor::empty(s, other);
      ops::convert(c.cpu(), a, o);
      g = twice([&] {
        Tensor od = poisoned(ex, s, other), same = poisoned(ex, s, dt);
        Tensor ad = upload(ex, a);
        ops::convert(ex, ad, od);
        ops::convert(ex, ad, same);  // same dtype: a copy
        return std::vector<Tensor>{download(od), download(same)};
      });
      CHECK(bit_diffs(g[0], o) == 0);
      CHECK(bit_diffs(g[1], a) == 0);
    }
}

TEST_CASE("cuda ops: sum_rows_acc within 1e-5 of the CPU, deterministic") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      Tensor x = random(Shape{d.rows(), d.C}, dt, 4), acc0 = random(Shape{d.C}, DType::f32, 5);
      Tensor acc = clone(acc0);
      ops::sum_rows_acc(c.cpu(), x, acc);
      auto g = twice([&] {
        Tensor ad = upload(ex, acc0);
        ops::sum_rows_acc(ex, upload(ex, x), ad);
        return std::vector<Tensor>{download(ad)};
      });
      CHECK(nerr(g[0], acc) <= 1e-5);
    }
}

TEST_CASE("cuda ops: gelu forward and backward within 1e-5 (fp32) and 1e-2 (bf16)") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      const Shape s{d.rows(), 4 * d.C};
      Tensor x = random(s, dt, 6, 2.0), dy = random(s, dt, 7);
      Tensor y = Tensor::empty(s, dt), dx = Tensor::empty(s, dt);
      ops::gelu_forward(c.cpu(), x, y);
      ops::gelu_backward(c.cpu(), x, dy, dx);
      auto g = twice([&] {
        Tensor xd = upload(ex, x), yd = poisoned(ex, s, dt), dxd = upload(ex, dy);
        ops::gelu_forward(ex, xd, yd);
        ops::gelu_backward(ex, xd, dxd, dxd);  // in place, as the MLP does
        return std::vector<Tensor>{download(yd), download(dxd)};
      });
      CHECK(nerr(g[0], y) <= tol(dt, 1e-5, 1e-2));
      CHECK(nerr(g[1], dx) <= tol(dt, 1e-5, 1e-2));
    }
}

TEST_CASE("cuda ops: swiglu forward and backward within 1e-5 (fp32) and 1e-2 (bf16)") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      const int64_t rows = d.rows(), h = 3 * d.C;  // h odd for the small dims
      const Shape sf{rows, 2 * h}, sg{rows, h};
      Tensor f = random(sf, dt, 30, 2.0), dg = random(sg, dt, 31);
      Tensor g = Tensor::empty(sg, dt), df = Tensor::empty(sf, dt);
      ops::swiglu_forward(c.cpu(), f, g);
      ops::swiglu_backward(c.cpu(), f, dg, df);
      auto r = twice([&] {
        Tensor fd = upload(ex, f), gd = poisoned(ex, sg, dt), dfd = poisoned(ex, sf, dt);
        ops::swiglu_forward(ex, fd, gd);
        ops::swiglu_backward(ex, fd, upload(ex, dg), dfd);
        return std::vector<Tensor>{download(gd), download(dfd)};
      });
      CHECK(nerr(r[0], g) <= tol(dt, 1e-5, 1e-2));
      CHECK(nerr(r[1], df) <= tol(dt, 1e-5, 1e-2));
    }
}

TEST_CASE("cuda ops: dropout masks are the CPU's bit for bit") {
  Ctx c;
  const Exec& ex = c.gpu();
  const uint64_t key = ops::dropout_key(1234, 17, hash_string("blocks.3.attn.resid_dropout"));
  for (const Dims& d : kDims)
    for (DType dt : kTypes)
      for (bool with_resid : {false, true}) {
        INFO("dims: " << std::string(d.name));
        INFO("dtype: " << std::string(dtype_name(dt)));
        CAPTURE(with_resid);
        const Shape s{d.B, d.T, d.C};
        const int64_t n = d.rows() * d.C;
        Tensor x = random(s, dt, 8), r = with_resid ? random(s, dt, 9) : Tensor();
        Tensor mask = Tensor::empty(Shape{n}, DType::u8), y = Tensor::empty(s, dt), dx = Tensor::empty(s, dt);
        ops::dropout_forward(c.cpu(), x, r, 0.1, key, 5, mask, y);
        ops::dropout_backward(c.cpu(), x, mask, 0.1, dx);
        auto g = twice([&] {
          Tensor md = poisoned(ex, Shape{n}, DType::u8), yd = poisoned(ex, s, dt), dxd = poisoned(ex, s, dt);
          Tensor xd = upload(ex, x);
          ops::dropout_forward(ex, xd, with_resid ? upload(ex, r) : Tensor(), 0.1, key, 5, md, yd);
          ops::dropout_backward(ex, xd, md, 0.1, dxd);
          return std::vector<Tensor>{download(md), download(yd), download(dxd)};
        });
        CHECK(bit_diffs(g[0], mask) == 0);
        CHECK(nerr(g[1], y) <= tol(dt, 1e-6, 1e-2));
        if (!with_resid) CHECK(bit_diffs(g[1], y) == 0);
        CHECK(bit_diffs(g[2], dx) == 0);
      }
}

TEST_CASE("cuda ops: layernorm forward and backward against the CPU") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes)
      for (bool bias : {true, false}) {
        INFO("dims: " << std::string(d.name));
        INFO("dtype: " << std::string(dtype_name(dt)));
        CAPTURE(bias);
        const int64_t rows = d.rows(), C = d.C;
        const Shape s{rows, C};
        Tensor x = random(s, dt, 10, 1.0, 0.5), w = random(Shape{C}, dt, 11, 0.1, 1.0);
        Tensor b = bias ? random(Shape{C}, dt, 12, 0.1) : Tensor();
        Tensor y = Tensor::empty(s, dt), mean = Tensor::empty(Shape{rows}, DType::f32),
               rstd = Tensor::empty(Shape{rows}, DType::f32);
        ops::layernorm_forward(c.cpu(), x, w, b, 1e-5, y, mean, rstd);
        auto g = twice([&] {
          Tensor yd = poisoned(ex, s, dt), md = poisoned(ex, Shape{rows}, DType::f32),
                 rd = poisoned(ex, Shape{rows}, DType::f32);
          ops::layernorm_forward(ex, upload(ex, x), upload(ex, w), bias ? upload(ex, b) : Tensor(), 1e-5,
                                 yd, md, rd);
          return std::vector<Tensor>{download(yd), download(md), download(rd)};
        });
        CHECK(nerr(g[0], y) <= tol(dt, 1e-5, 1e-2));
        CHECK(nerr(g[1], mean) <= 1e-5);
        CHECK(nerr(g[2], rstd) <= 1e-5);

        // backward from the CPU's statistics, with a residual gradient when biased
        Tensor dy = random(s, dt, 13), dres = bias ? random(s, dt, 14) : Tensor();
        Tensor dw0 = random(Shape{C}, DType::f32, 15), db0 = random(Shape{C}, DType::f32, 16);
        Tensor dx = Tensor::empty(s, dt), dw = clone(dw0), db = bias ? clone(db0) : Tensor();
        Tensor scratch = Tensor::empty(Shape{ops::layernorm_scratch(C)}, DType::f32);
        ops::layernorm_backward(c.cpu(), dy, x, w, mean, rstd, dres, dx, dw, db, scratch);
        g = twice([&] {
          Tensor dxd = poisoned(ex, s, dt), dwd = upload(ex, dw0), dbd = bias ? upload(ex, db0) : Tensor();
          Tensor sd = poisoned(ex, Shape{ops::layernorm_scratch(C)}, DType::f32);
          ops::layernorm_backward(ex, upload(ex, dy), upload(ex, x), upload(ex, w), upload(ex, mean),
                                  upload(ex, rstd), bias ? upload(ex, dres) : Tensor(), dxd, dwd, dbd, sd);
          std::vector<Tensor> out{download(dxd), download(dwd)};
          if (bias) out.push_back(download(dbd));
          return out;
        });
        CHECK(nerr(g[0], dx) <= tol(dt, 1e-5, 1e-2));
        CHECK(nerr(g[1], dw) <= tol(dt, 1e-5, 1e-4));
        if (bias) CHECK(nerr(g[2], db) <= tol(dt, 1e-5, 1e-4));
      }
}

TEST_CASE("cuda ops: rmsnorm forward and backward against the CPU") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes)
      for (bool with_dres : {true, false}) {
        INFO("dims: " << std::string(d.name));
        INFO("dtype: " << std::string(dtype_name(dt)));
        CAPTURE(with_dres);
        const int64_t rows = d.rows(), C = d.C;
        const Shape s{rows, C};
        Tensor x = random(s, dt, 32, 1.0, 0.5), w = random(Shape{C}, dt, 33, 0.1, 1.0);
        Tensor y = Tensor::empty(s, dt), rstd = Tensor::empty(Shape{rows}, DType::f32);
        ops::rmsnorm_forward(c.cpu(), x, w, 1e-5, y, rstd);
        auto g = twice([&] {
          Tensor yd = poisoned(ex, s, dt), rd = poisoned(ex, Shape{rows}, DType::f32);
          ops::rmsnorm_forward(ex, upload(ex, x), upload(ex, w), 1e-5, yd, rd);
          return std::vector<Tensor>{download(yd), download(rd)};
        });
        CHECK(nerr(g[0], y) <= tol(dt, 1e-5, 1e-2));
        CHECK(nerr(g[1], rstd) <= 1e-5);

        // backward from the CPU's statistics: with a residual gradient, or in place on dy
        Tensor dy = random(s, dt, 34), dres = with_dres ? random(s, dt, 35) : Tensor();
        Tensor dw0 = random(Shape{C}, DType::f32, 36);
        Tensor dx = Tensor::empty(s, dt), dw = clone(dw0);
        Tensor scratch = Tensor::empty(Shape{ops::rmsnorm_scratch(C)}, DType::f32);
        ops::rmsnorm_backward(c.cpu(), dy, x, w, rstd, dres, dx, dw, scratch);
        g = twice([&] {
          Tensor dyd = upload(ex, dy), dxd = with_dres ? poisoned(ex, s, dt) : dyd, dwd = upload(ex, dw0);
          Tensor sd = poisoned(ex, Shape{ops::rmsnorm_scratch(C)}, DType::f32);
          ops::rmsnorm_backward(ex, dyd, upload(ex, x), upload(ex, w), upload(ex, rstd),
                                with_dres ? upload(ex, dres) : Tensor(), dxd, dwd, sd);
          return std::vector<Tensor>{download(dxd), download(dwd)};
        });
        CHECK(nerr(g[0], dx) <= tol(dt, 1e-5, 1e-2));
        CHECK(nerr(g[1], dw) <= tol(dt, 1e-5, 1e-4));
      }
}

namespace {

struct RopeDims {
  int64_t B, T, C, n_head, pos0;
  math::Rope theta;  // the base, and LLaMA 3.1's scaling in the last case
  const char* name;
};
// kDims' shapes with head widths that divide C evenly: the small odd C (37)
// has none, so a small one of its own (head width 8); positions from 0 and
// from a later start (a continued sequence), LLaMA 2's and LLaMA 3's bases.
const RopeDims kRopeDims[] = {{2, 7, 24, 3, 0, 10000.0, "small"},
                              {2, 7, 24, 3, 1000, 500000.0, "small, from 1000"},
                              {4, 64, 768, 12, 0, 10000.0, "GPT-2 124M"},
                              {4, 64, 768, 12, 1000, 500000.0, "GPT-2 124M, from 1000"},
                              {4, 64, 768, 12, 1000, math::Rope(500000.0, 8, 1, 4, 8192), "LLaMA 3.1 scaling, from 1000"}};

// How many elements of the values (the last C of each row of qkv) differ in their bits.
int64_t value_diffs(const Tensor& a, const Tensor& b, int64_t rows, int64_t C) {
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r)
    n += bit_diffs(a.flat_range(r * 3 * C + 2 * C, C), b.flat_range(r * 3 * C + 2 * C, C));
  return n;
}

}  // namespace

TEST_CASE("cuda ops: rope and its inverse against the CPU, values untouched") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const RopeDims& d : kRopeDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      const Shape s{d.B, d.T, 3 * d.C};
      const int64_t rows = d.B * d.T;
      Tensor x = random(s, dt, 37);
      Tensor fwd = clone(x), inv = clone(x);
      ops::rope(c.cpu(), fwd, d.n_head, d.theta, d.pos0, false);
      ops::rope(c.cpu(), inv, d.n_head, d.theta, d.pos0, true);
      auto g = twice([&] {
        Tensor fd = upload(ex, x), id = upload(ex, x);
        ops::rope(ex, fd, d.n_head, d.theta, d.pos0, false);
        ops::rope(ex, id, d.n_head, d.theta, d.pos0, true);
        Tensor f = download(fd);
        ops::rope(ex, fd, d.n_head, d.theta, d.pos0, true);  // back
        return std::vector<Tensor>{f, download(id), download(fd)};
      });
      MESSAGE(std::string(d.name) << " " << std::string(dtype_name(dt)) << ": forward " << nerr(g[0], fwd)
                                  << " (worst " << worst(g[0], fwd, 3 * d.C) << "), inverse " << nerr(g[1], inv)
                                  << ", round trip " << nerr(g[2], x));
      CHECK(nerr(g[0], fwd) <= tol(dt, 1e-6, 1e-2));
      CHECK(nerr(g[1], inv) <= tol(dt, 1e-6, 1e-2));
      if (dt == DType::f32) CHECK(nerr(g[2], x) <= 1e-6);
      CHECK(value_diffs(g[0], x, rows, d.C) == 0);
      CHECK(value_diffs(g[1], x, rows, d.C) == 0);
    }
}

TEST_CASE("cuda ops: embeddings forward and backward are the CPU's bits") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      // the tables once per shape and dtype (50304 x 768 for GPT-2)
      Tensor wte = random(Shape{d.V, d.C}, dt, 18, 0.02), wpe = random(Shape{d.T + 3, d.C}, dt, 19, 0.02);
      Tensor dwte0 = random(Shape{d.V, d.C}, DType::f32, 21, 0.01);
      for (int64_t id_range : {d.V, int64_t{5}}) {  // all ids, and many repeats
        INFO("dims: " << std::string(d.name));
        INFO("dtype: " << std::string(dtype_name(dt)));
        CAPTURE(id_range);
        const int64_t B = d.B, T = d.T, C = d.C, V = d.V;
        const Shape s{B, T, C};
        Tensor tok = random_ids(Shape{B, T}, id_range, 17);
        Tensor y = Tensor::empty(s, dt);
        ops::embedding_forward(c.cpu(), tok, wte, wpe, y);
        Tensor tokd = upload(ex, tok), wted = upload(ex, wte), wped = upload(ex, wpe);
        auto g = twice([&] {
          Tensor yd = poisoned(ex, s, dt);
          ops::embedding_forward(ex, tokd, wted, wped, yd);
          return std::vector<Tensor>{download(yd)};
        });
        CHECK(bit_diffs(g[0], y) == 0);

        // one tensor-parallel rank's rows [v0, v0 + vn), then the positions
        const int64_t v0 = id_range == 5 ? 2 : V / 3, vn = id_range == 5 ? 2 : V / 3;
        Tensor shard = wte.flat_range(v0 * C, vn * C).view(Shape{vn, C});
        Tensor ys = Tensor::empty(s, dt);
        ops::token_embedding_shard_forward(c.cpu(), tok, shard, v0, ys);
        ops::position_embedding_add(c.cpu(), wpe, ys);
        g = twice([&] {
          Tensor yd = poisoned(ex, s, dt);
          ops::token_embedding_shard_forward(ex, tokd, upload(ex, shard), v0, yd);
          ops::position_embedding_add(ex, wped, yd);
          return std::vector<Tensor>{download(yd)};
        });
        CHECK(bit_diffs(g[0], ys) == 0);

        // backward, full table and a shard; accumulates into nonzero gradients
        Tensor dy = random(s, dt, 20);
        Tensor dwpe0 = random(Shape{T + 3, C}, DType::f32, 22, 0.01);
        Tensor dwte = clone(dwte0), dwpe = clone(dwpe0);
        ops::embedding_backward(c.cpu(), dy, tok, 0, dwte, dwpe);
        Tensor dws0 = random(Shape{vn, C}, DType::f32, 23, 0.01), dws = clone(dws0), dwp2 = clone(dwpe0);
        ops::embedding_backward(c.cpu(), dy, tok, v0, dws, dwp2);
        Tensor dyd = upload(ex, dy);
        g = twice([&] {
          Tensor a = upload(ex, dwte0), p = upload(ex, dwpe0), sh = upload(ex, dws0), p2 = upload(ex, dwpe0);
          ops::embedding_backward(ex, dyd, tokd, 0, a, p);
          ops::embedding_backward(ex, dyd, tokd, v0, sh, p2);
          return std::vector<Tensor>{download(a), download(p), download(sh), download(p2)};
        });
        CHECK(bit_diffs(g[0], dwte) == 0);
        CHECK(bit_diffs(g[1], dwpe) == 0);
        CHECK(bit_diffs(g[2], dws) == 0);
        CHECK(bit_diffs(g[3], dwp2) == 0);
      }
    }
}

namespace {

void check_totals(const ops::LossTotals& g, const ops::LossTotals& w) {
  CHECK(std::abs(g.mean_sum - w.mean_sum) <= 1e-5 * std::abs(w.mean_sum));
  CHECK(std::abs(g.weighted_sum - w.weighted_sum) <= 1e-5 * std::abs(w.weighted_sum));
  CHECK(g.count == w.count);
  CHECK(g.correct == w.correct);
  CHECK(g.batches == w.batches);
}

}  // namespace

TEST_CASE("cuda ops: softmax cross-entropy forward and backward, losses on the device") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      const int64_t rows = d.rows(), V = d.V;
      const Shape s{rows, V};
      Tensor x = random(s, dt, 24, 2.0), tgt = random_ids(Shape{rows}, V, 25);
      // a few rows whose target is the maximum (correct predictions)
      for (int64_t r = 0; r < rows; r += 3) set(x, r * V + tgt.data<int32_t>()[r], 20.0);
      Tensor mx = Tensor::empty(Shape{rows}, DType::f32), sm = Tensor::empty(Shape{rows}, DType::f32),
             rl = Tensor::empty(Shape{rows}, DType::f64), am = Tensor::empty(Shape{rows}, DType::i32);
      ops::LossAccum acc = ops::make_loss_accum(c.cpu());
      ops::softmax_xent_forward(c.cpu(), x, tgt, mx, sm, rl, am, acc);
      ops::softmax_xent_forward(c.cpu(), x, tgt, mx, sm, rl, am, acc);
      const ops::LossTotals want = ops::read_and_reset(c.cpu(), acc);
      Tensor dx = Tensor::empty(s, dt);
      const double scale = 1.0 / static_cast<double>(rows);
      ops::softmax_xent_backward(c.cpu(), x, tgt, mx, sm, scale, dx);

      Tensor xd = upload(ex, x), td = upload(ex, tgt);
      std::vector<ops::LossTotals> totals;
      auto g = twice([&] {
        Tensor mxd = poisoned(ex, Shape{rows}, DType::f32), smd = poisoned(ex, Shape{rows}, DType::f32),
               rld = poisoned(ex, Shape{rows}, DType::f64), amd = poisoned(ex, Shape{rows}, DType::i32);
        ops::LossAccum a = ops::make_loss_accum(ex);
        ops::softmax_xent_forward(ex, xd, td, mxd, smd, rld, amd, a);
        ops::softmax_xent_forward(ex, xd, td, mxd, smd, rld, amd, a);
        totals.push_back(ops::read_and_reset(ex, a));
        const ops::LossTotals zero = ops::read_and_reset(ex, a);
        CHECK(zero.batches == 0);
        CHECK(zero.mean_sum == 0.0);
        Tensor dxd = poisoned(ex, s, dt), inplace = clone(xd);
        ops::softmax_xent_backward(ex, xd, td, mxd, smd, scale, dxd);
        ops::softmax_xent_backward(ex, inplace, td, mxd, smd, scale, inplace);
        return std::vector<Tensor>{download(mxd), download(smd), download(rld), download(amd),
                                   download(dxd), download(inplace)};
      });
      MESSAGE(std::string(d.name) << " " << std::string(dtype_name(dt)) << ": sums " << nerr(g[1], sm) << " (worst "
                                  << worst(g[1], sm) << "), dx " << nerr(g[4], dx) << " (worst " << worst(g[4], dx, V)
                                  << ")");
      CHECK(bit_diffs(g[0], mx) == 0);
      CHECK(nerr(g[1], sm) <= 1e-5);
      CHECK(nerr(g[2], rl) <= 1e-5);
      CHECK(bit_diffs(g[3], am) == 0);
      CHECK(nerr(g[4], dx) <= tol(dt, 1e-5, 1e-2));
      CHECK(bit_diffs(g[5], g[4]) == 0);
      REQUIRE(totals.size() == 2);
      check_totals(totals[0], want);
      CHECK(totals[0].mean_sum == totals[1].mean_sum);
      CHECK(want.correct > 0);
    }
}

TEST_CASE("cuda ops: vocabulary-parallel cross-entropy pieces against the CPU") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (const Dims& d : kDims)
    for (DType dt : kTypes) {
      INFO("dims: " << std::string(d.name));
      INFO("dtype: " << std::string(dtype_name(dt)));
      const int64_t rows = d.rows(), v0 = d.V / 2, vs = d.V - v0;  // this rank: columns [v0, V)
      const Shape s{rows, vs};
      Tensor x = random(s, dt, 26, 2.0), tgt = random_ids(Shape{rows}, d.V, 27);
      Tensor lm = Tensor::empty(Shape{rows}, DType::f32);
      ops::vp_row_max(c.cpu(), x, lm);
      auto gm = twice([&] {
        Tensor lmd = poisoned(ex, Shape{rows}, DType::f32);
        ops::vp_row_max(ex, upload(ex, x), lmd);
        return std::vector<Tensor>{download(lmd)};
      });
      CHECK(bit_diffs(gm[0], lm) == 0);
      // the all-reduced maximum: another rank's on odd rows (no argmax here)
      Tensor m = clone(lm);
      for (int64_t r = 1; r < rows; r += 2) set(m, r, at(m, r) + 0.25);
      Tensor probs = Tensor::empty(s, dt), sums = Tensor::empty(Shape{2 * rows}, DType::f32),
             am = Tensor::empty(Shape{rows}, DType::i32);
      ops::vp_exp_sums(c.cpu(), x, tgt, v0, m, probs, sums, am);
      Tensor xd = upload(ex, x), td = upload(ex, tgt), md = upload(ex, m);
      auto g = twice([&] {
        Tensor pd = poisoned(ex, s, dt), sd = poisoned(ex, Shape{2 * rows}, DType::f32),
               ad = poisoned(ex, Shape{rows}, DType::i32);
        ops::vp_exp_sums(ex, xd, td, v0, md, pd, sd, ad);
        return std::vector<Tensor>{download(pd), download(sd), download(ad)};
      });
      CHECK(nerr(g[0], probs) <= tol(dt, 1e-5, 1e-2));
      CHECK(nerr(g[1], sums) <= 1e-5);
      CHECK(bit_diffs(g[2], am) == 0);

      // finish and backward from the CPU's intermediate results
      Tensor p_in = clone(probs), rl = Tensor::empty(Shape{rows}, DType::f64);
      ops::LossAccum acc = ops::make_loss_accum(c.cpu());
      ops::vp_finish(c.cpu(), tgt, m, sums, am, p_in, rl, acc);
      const ops::LossTotals want = ops::read_and_reset(c.cpu(), acc);
      Tensor p_fin = clone(p_in);
      ops::vp_backward(c.cpu(), tgt, v0, 0.125, p_in);
      std::vector<ops::LossTotals> totals;
      g = twice([&] {
        Tensor pd = upload(ex, probs), rld = poisoned(ex, Shape{rows}, DType::f64);
        ops::LossAccum a = ops::make_loss_accum(ex);
        ops::vp_finish(ex, td, md, upload(ex, sums), upload(ex, am), pd, rld, a);
        totals.push_back(ops::read_and_reset(ex, a));
        Tensor fin = download(pd);
        Tensor bd = upload(ex, p_fin);
        ops::vp_backward(ex, td, v0, 0.125, bd);
        return std::vector<Tensor>{fin, download(rld), download(bd)};
      });
      CHECK(nerr(g[0], p_fin) <= tol(dt, 1e-5, 1e-2));
      CHECK(nerr(g[1], rl) <= 1e-5);
      CHECK(nerr(g[2], p_in) <= tol(dt, 1e-6, 1e-2));
      REQUIRE(totals.size() == 2);
      check_totals(totals[0], want);
    }
}

TEST_CASE("cuda ops: sum_squares over many tensors within 1e-12 (double), deterministic") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (DType dt : kTypes) {
    INFO("dtype: " << std::string(dtype_name(dt)));
    std::vector<Tensor> hs, ds;
    CounterRng rng(28);
    for (int k = 0; k < 70; ++k) {  // more than one launch's worth of tensors
      const int64_t n = k == 3 ? 768 * 768 : k == 5 ? 50304 * 8 : 1 + static_cast<int64_t>(rng.below(3000));
      hs.push_back(random(Shape{n}, dt, 100 + k, 0.1));
      ds.push_back(upload(ex, hs.back()));
    }
    const double want = ops::sum_squares(c.cpu(), hs);
    const double a = ops::sum_squares(ex, ds), b = ops::sum_squares(ex, ds);
    CHECK(std::abs(a - want) <= 1e-12 * want);
    CHECK(a == b);
  }
}

namespace {

struct Spans {
  std::vector<ops::UpdateSpan> host, dev;
};

// Spans of assorted lengths (more than one launch's worth), decay on every
// other one, a bf16 compute copy on every third.
Spans make_spans(const Exec& ex, bool adam) {
  Spans s;
  CounterRng rng(29);
  std::vector<int64_t> lens = {1, 37, 768, 768 * 3, 100003};
  for (int k = 0; k < 40; ++k) lens.push_back(1 + static_cast<int64_t>(rng.below(500)));
  for (size_t k = 0; k < lens.size(); ++k) {
    const Shape sh{lens[k]};
    ops::UpdateSpan h;
    h.w = random(sh, DType::f32, 200 + k, 0.02);
    h.g = random(sh, DType::f32, 300 + k, 0.1);
    h.s1 = random(sh, DType::f32, 400 + k, 0.01);
    if (adam) {
      h.s2 = random(sh, DType::f32, 500 + k, 1e-3);
      for (int64_t i = 0; i < lens[k]; ++i) set(h.s2, i, std::abs(at(h.s2, i)));
    }
    if (k % 3 == 0) h.wc = Tensor::zeros(sh, DType::bf16);
    h.decay = k % 2 == 0;
    ops::UpdateSpan d;
    d.w = upload(ex, h.w);
    d.g = upload(ex, h.g);
    d.s1 = upload(ex, h.s1);
    if (adam) d.s2 = upload(ex, h.s2);
    if (h.wc.defined()) d.wc = upload(ex, h.wc);
    d.decay = h.decay;
    s.host.push_back(h);
    s.dev.push_back(d);
  }
  return s;
}

void check_spans(const Spans& s, bool adam) {
  for (size_t k = 0; k < s.host.size(); ++k) {
    CAPTURE(k);
    const ops::UpdateSpan& h = s.host[k];
    const ops::UpdateSpan& d = s.dev[k];
    CHECK(nerr(d.w, h.w) <= 1e-6);
    CHECK(nerr(d.s1, h.s1) <= 1e-6);
    if (adam) CHECK(nerr(d.s2, h.s2) <= 1e-6);
    if (h.wc.defined()) {
      Tensor own = Tensor::empty(h.w.shape(), DType::bf16);
      ops::convert(Exec::cpu(), download(d.w), own);
      CHECK(bit_diffs(d.wc, own) == 0);  // the copy is bf16 of the GPU's master, exactly
      CHECK(nerr(d.wc, h.wc) <= 1e-2);  // a 1-ulp fp32 difference may flip a bf16 rounding
    }
  }
}

}  // namespace

TEST_CASE("cuda ops: fused AdamW over spans (decay, no decay, bf16 copy) against the CPU") {
  Ctx c;
  const Exec& ex = c.gpu();
  std::vector<Tensor> firsts;
  for (int run = 0; run < 2; ++run) {
    Spans s = make_spans(ex, true);
    ops::AdamWArgs a;
    a.lr = 6e-4;
    a.weight_decay = 0.1;
    a.grad_scale = 0.8;
    for (int64_t t = 1; t <= 2; ++t) {
      a.t = t;
      ops::adamw_update(c.cpu(), a, s.host);
      ops::adamw_update(ex, a, s.dev);
    }
    check_spans(s, true);
    if (run == 0)
      for (const auto& d : s.dev) firsts.push_back(download(d.w));
    else
      for (size_t k = 0; k < s.dev.size(); ++k) CHECK(bit_diffs(s.dev[k].w, firsts[k]) == 0);
  }
}

TEST_CASE("cuda ops: fused SGD over spans against the CPU") {
  Ctx c;
  const Exec& ex = c.gpu();
  for (double momentum : {0.0, 0.9})
    for (bool nesterov : {false, true}) {
      CAPTURE(momentum);
      CAPTURE(nesterov);
      Spans s = make_spans(ex, false);
      ops::SgdArgs a;
      a.momentum = momentum;
      a.nesterov = nesterov;
      a.weight_decay = 5e-4;
      a.lr = 0.05;
      a.grad_scale = 0.5;
      for (bool first : {true, false}) {
        a.first = first;
        ops::sgd_update(c.cpu(), a, s.host);
        ops::sgd_update(ex, a, s.dev);
      }
      check_spans(s, false);
    }
}

TEST_CASE("cuda ops: f64 is refused on the GPU in one line naming the op") {
  Ctx c;
  const Exec& ex = c.gpu();
  Tensor a = Tensor::zeros(Shape{4}, DType::f64, ex.device);
  try {
    ops::add(ex, a, a, a);
    FAIL("f64 add ran on the GPU");
  } catch (const InternalError& e) {
    const std::string m = e.what();
    CHECK(m.find("add: no fp64 kernel on cuda") != std::string::npos);
  }
}
