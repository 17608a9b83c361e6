// ops::MatmulPlan's epilogues on the CPU: the same bits as the unfused ops
// the layers ran before (broadcast_rows then beta = 1, gelu_forward,
// gelu_backward, sum_rows_acc for the bias gradient), in fp32 and bf16; and
// the refusals of a misused epilogue.
// The GPU's fused epilogues are compared with these in tests/cuda/matmul_test.cpp.
#include <doctest/doctest.h>

#include <cstring>

#include "core/rng.h"
#include "ops/ops.h"

using namespace dtrain;

namespace {

const Exec& ex = Exec::cpu();

Tensor random(const Shape& s, DType dt, uint64_t seed) {
  Tensor f = Tensor::empty(s, DType::f32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = static_cast<float>(rng.normal());
  if (dt == DType::f32) return f;
  Tensor t = Tensor::empty(s, dt);
  ops::convert(ex, f, t);
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

}  // namespace

TEST_CASE("ops: matmul epilogues on the CPU are the unfused ops, bit for bit") {
  const int64_t m = 6, n = 16, k = 5;
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    const ops::Gemm fwd{.trans_a = false, .trans_b = true, .m = m, .n = n, .k = k};
    Tensor x = random(Shape{m, k}, dt, 1), w = random(Shape{n, k}, dt, 2), b = random(Shape{n}, dt, 3);
    const ops::MatmulPlan plain(ex, fwd, dt, dt);
    // bias: y = x W^T + b
    Tensor want = Tensor::empty(Shape{m, n}, dt), got = Tensor::empty(Shape{m, n}, dt);
    ops::broadcast_rows(ex, b, want);
    plain.run(ex, fwd, x, w, want, 1.0, 1.0);
    const ops::MatmulPlan with_bias(ex, fwd, dt, dt, ops::Epilogue::bias);
    CHECK_FALSE(with_bias.fused());
    with_bias.run(ex, fwd, x, w, got, 1.0, 0.0, b);
    CHECK(same_bits(got, want));
    // bias_gelu: aux = x W^T + b, g = gelu(aux)
    Tensor want_g = Tensor::empty(Shape{m, n}, dt), aux = Tensor::empty(Shape{m, n}, dt);
    ops::gelu_forward(ex, want, want_g);
    ops::MatmulPlan(ex, fwd, dt, dt, ops::Epilogue::bias_gelu).run(ex, fwd, x, w, got, 1.0, 0.0, b, aux);
    CHECK(same_bits(aux, want));
    CHECK(same_bits(got, want_g));
    // gelu without bias
    Tensor nob = Tensor::empty(Shape{m, n}, dt);
    plain.run(ex, fwd, x, w, nob, 1.0, 0.0);
    ops::gelu_forward(ex, nob, want_g);
    ops::MatmulPlan(ex, fwd, dt, dt, ops::Epilogue::gelu).run(ex, fwd, x, w, got, 1.0, 0.0, Tensor{}, aux);
    CHECK(same_bits(aux, nob));
    CHECK(same_bits(got, want_g));
    // dgelu: dx = (dy W) * gelu'(pre), pre (m, k) the GELU input of this product's output
    const ops::Gemm bwd{.trans_a = false, .trans_b = false, .m = m, .n = k, .k = n};
    Tensor dy = random(Shape{m, n}, dt, 4), pre = random(Shape{m, k}, dt, 5);
    Tensor want_dx = Tensor::empty(Shape{m, k}, dt), dx = Tensor::empty(Shape{m, k}, dt);
    ops::MatmulPlan(ex, bwd, dt, dt).run(ex, bwd, dy, w, want_dx, 1.0, 0.0);
    ops::gelu_backward(ex, pre, want_dx, want_dx);
    ops::MatmulPlan(ex, bwd, dt, dt, ops::Epilogue::dgelu).run(ex, bwd, dy, w, dx, 1.0, 0.0, Tensor{}, pre);
    CHECK(same_bits(dx, want_dx));
    // A smaller product than planned (a last micro-batch) writes only its rows.
    const ops::Gemm small{.trans_a = false, .trans_b = true, .m = m - 2, .n = n, .k = k};
    Tensor ys = Tensor::empty(Shape{m - 2, n}, dt);
    with_bias.run(ex, small, x, w, ys, 1.0, 0.0, b);
    CHECK(std::memcmp(ys.raw(), want.raw(), ys.bytes()) == 0);
  }
}

TEST_CASE("ops: a misused matmul epilogue is refused in one line") {
  const ops::Gemm g{.trans_a = false, .trans_b = true, .m = 4, .n = 8, .k = 3};
  Tensor x = random(Shape{4, 3}, DType::f32, 1), w = random(Shape{8, 3}, DType::f32, 2);
  Tensor y = Tensor::empty(Shape{4, 8}, DType::f32);
  const ops::MatmulPlan p(ex, g, DType::f32, DType::f32, ops::Epilogue::bias);
  auto message = [&](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message([&] { p.run(ex, g, x, w, y, 1.0, 0.0); }).find("the epilogue's bias is missing for 8 outputs") !=
        std::string::npos);
  CHECK(message([&] { p.run(ex, g, x, w, y, 1.0, 1.0, random(Shape{8}, DType::f32, 3)); })
            .find("an epilogue with alpha 1 and beta 1") != std::string::npos);
  const ops::MatmulPlan d(ex, g, DType::f32, DType::f32, ops::Epilogue::dgelu);
  CHECK(message([&] { d.run(ex, g, x, w, y, 1.0, 0.0); }).find("the epilogue's aux is missing for (4, 8)") !=
        std::string::npos);
  // Weight gradients into fp32 take no epilogue but the bias gradient, and
  // that only on a weight gradient's transposes.
  CHECK_THROWS_AS(ops::MatmulPlan(ex, g, DType::bf16, DType::f32, ops::Epilogue::bias), InternalError);
  CHECK_THROWS_AS(ops::MatmulPlan(ex, g, DType::f32, DType::f32, ops::Epilogue::bias_grad), InternalError);
  const ops::Gemm wg{.trans_a = true, .trans_b = false, .m = 8, .n = 3, .k = 4};
  const ops::MatmulPlan bg(ex, wg, DType::f32, DType::f32, ops::Epilogue::bias_grad);
  Tensor dw = Tensor::zeros(Shape{8, 3}, DType::f32);
  CHECK(message([&] { bg.run(ex, wg, y, x, dw, 1.0, 1.0, Tensor::zeros(Shape{4}, DType::f32)); })
            .find("the bias gradient is (4) for 8 rows") != std::string::npos);
}

TEST_CASE("ops: the bias-gradient epilogue accumulates the weight gradient and writes dy's column sums") {
  // dW (out, in) += dy^T (out, rows) x (rows, in); db (out) = column sums of dy
  // (rows, out): what Linear::backward ran as the product then sum_rows_acc.
  const int64_t rows = 7, in = 5, out = 12;
  const ops::Gemm wg{.trans_a = true, .trans_b = false, .m = out, .n = in, .k = rows};
  CHECK_FALSE(ops::fused_epilogue(ex, ops::Epilogue::bias_grad, DType::f32, in));
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    Tensor dy = random(Shape{rows, out}, dt, 11), x = random(Shape{rows, in}, dt, 12);
    Tensor dw0 = random(Shape{out, in}, DType::f32, 13);
    Tensor want_dw = Tensor::empty(Shape{out, in}, DType::f32), dw = Tensor::empty(Shape{out, in}, DType::f32);
    ops::copy(ex, dw0, want_dw);
    ops::copy(ex, dw0, dw);
    ops::MatmulPlan(ex, wg, dt, DType::f32).run(ex, wg, dy, x, want_dw, 1.0, 1.0);
    Tensor want_db = Tensor::zeros(Shape{out}, DType::f32);
    ops::sum_rows_acc(ex, dy, want_db);
    Tensor db = random(Shape{out}, DType::f32, 14);  // written over, not accumulated into
    const ops::MatmulPlan p(ex, wg, dt, DType::f32, ops::Epilogue::bias_grad);
    CHECK_FALSE(p.fused());
    p.run(ex, wg, dy, x, dw, 1.0, 1.0, db);
    CHECK(same_bits(dw, want_dw));
    CHECK(same_bits(db, want_db));
    // A smaller last micro-batch: its rows only.
    const ops::Gemm small{.trans_a = true, .trans_b = false, .m = out, .n = in, .k = rows - 3};
    Tensor want_small = Tensor::zeros(Shape{out}, DType::f32);
    ops::sum_rows_acc(ex, dy.narrow0(0, rows - 3), want_small);
    p.run(ex, small, dy, x, dw, 1.0, 1.0, db);
    CHECK(same_bits(db, want_small));
  }
}
