// cuBLASLt products (ops::MatmulPlan on a CUDA Exec) against the CPU's
// (the same plan on Exec::cpu()) on the same inputs. Bounds (normalised error
// max |gpu - cpu| / max |cpu|): products whose output is fp32 or f64 differ
// only in the order of accumulation: 1e-5 for fp32 (strict mode, no TF32),
// 1e-5 for bf16 inputs into fp32 (same bf16 inputs, fp32 accumulation on
// both sides), 1e-12 for f64; a bf16 output adds the rounding of a result
// that may sit on the other side of a bf16 rounding boundary: 2^-7. TF32
// (opt-in) is held to 1e-2.
#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/blas_compare.h"
#include "ops/ops.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/matmul.h"
#include "ops/runtime.h"

using namespace dtrain;

namespace {

double bound(DType ab, DType c) {
  if (c == DType::bf16) return 1.0 / 128;
  if (c == DType::f64) return 1e-12;
  return 1e-5;
}

struct Case {
  ops::Gemm g;
  DType ab, c;
  double alpha = 1.0, beta = 0.0;
};

Shape a_shape(const ops::Gemm& g) { return g.trans_a ? Shape{g.k, g.m} : Shape{g.m, g.k}; }
Shape b_shape(const ops::Gemm& g) { return g.trans_b ? Shape{g.n, g.k} : Shape{g.k, g.n}; }

// Runs one product on the CPU and the GPU from the same inputs; returns the normalised error.
double compare(const ops::Runtime& rt, const Case& k, uint32_t seed) {
  const Exec& ex = rt.exec();
  Tensor a = test::random_host(a_shape(k.g), k.ab, seed);
  Tensor b = test::random_host(b_shape(k.g), k.ab, seed + 1);
  Tensor c0 = test::random_host(Shape{k.g.m, k.g.n}, k.c, seed + 2);
  Tensor want = Tensor::empty(c0.shape(), k.c);
  want.copy_from(c0);
  ops::MatmulPlan(Exec::cpu(), k.g, k.ab, k.c).run(Exec::cpu(), k.g, a, b, want, k.alpha, k.beta);
  Tensor da = test::upload(a, ex.device), db = test::upload(b, ex.device), dc = test::upload(c0, ex.device);
  ops::MatmulPlan(ex, k.g, k.ab, k.c).run(ex, k.g, da, db, dc, k.alpha, k.beta);
  rt.sync();
  return test::norm_err(test::values(dc), test::values(want));
}

std::string name(const Case& k) {
  return std::string(k.g.trans_a ? "A^T" : "A") + (k.g.trans_b ? " B^T" : " B") + " m " + std::to_string(k.g.m) +
         " n " + std::to_string(k.g.n) + " k " + std::to_string(k.g.k) + " " + dtype_name(k.ab) + "->" +
         dtype_name(k.c) + " beta " + std::to_string(k.beta);
}

// The three products of a Linear of `rows` x in -> out, as model/linear.cpp plans them.
void linear_cases(std::vector<Case>& v, int64_t rows, int64_t in, int64_t out, DType act) {
  const DType acc = act == DType::f64 ? DType::f64 : DType::f32;
  v.push_back({{.trans_a = false, .trans_b = true, .m = rows, .n = out, .k = in}, act, act});
  v.push_back({{.trans_a = false, .trans_b = false, .m = rows, .n = in, .k = out}, act, act});
  v.push_back({{.trans_a = true, .trans_b = false, .m = out, .n = in, .k = rows}, act, acc, 1.0, 1.0});
}

}  // namespace

TEST_CASE("cuda matmul: GPT-2 124M products against the CPU in fp32 and bf16 (wgrad beta = 1 into fp32)") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  CHECK(ops::matmul_path(rt->exec(), DType::f32) == "cuBLASLt fp32 (no TF32)");
  CHECK(ops::matmul_path(rt->exec(), DType::bf16) == "cuBLASLt bf16 (fp32 accumulate)");
  std::vector<Case> cases;
  for (DType act : {DType::f32, DType::bf16}) {
    const int64_t rows = 256, C = 768;  // fewer rows than a step: the CPU reference's time
    linear_cases(cases, rows, C, 3 * C, act);  // attn.qkv
    linear_cases(cases, rows, C, C, act);      // attn.proj
    linear_cases(cases, rows, C, 4 * C, act);  // mlp.fc
    linear_cases(cases, rows, 4 * C, C, act);  // mlp.proj
    linear_cases(cases, 64, C, 50304, act);    // lm_head
    linear_cases(cases, rows, C, 3 * C / 2, act);  // tp = 2 qkv shard
  }
  uint32_t seed = 1;
  for (const Case& k : cases) {
    CAPTURE(name(k));
    CHECK(compare(*rt, k, seed += 3) <= bound(k.ab, k.c));
  }
}

TEST_CASE("cuda matmul: odd shapes, every transpose and dtype combination") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  uint32_t seed = 100;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {129, 7, 300},
                         {64, 96, 24}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [ab, c] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::bf16},
                             std::pair{DType::bf16, DType::f32}, std::pair{DType::f64, DType::f64}})
          for (double beta : {0.0, 1.0}) {
            const Case kc{{.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k}, ab, c, 0.5, beta};
            CAPTURE(name(kc));
            CHECK(compare(*rt, kc, seed += 3) <= bound(ab, c));
          }
}

TEST_CASE("cuda matmul: smaller products than planned and operands off cudaMalloc's alignment") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  const Exec& ex = rt->exec();
  for (DType ab : {DType::f32, DType::bf16}) {
    const ops::Gemm max{.trans_a = false, .trans_b = true, .m = 300, .n = 77, .k = 65};
    const ops::MatmulPlan plan(ex, max, ab, ab);
    for (int64_t m : {300, 123, 1}) {
      const ops::Gemm g{.trans_a = false, .trans_b = true, .m = m, .n = 77, .k = 65};
      // A starts one element into its buffer: 2- or 4-byte aligned.
      Tensor abuf = test::random_host(Shape{m * 65 + 1}, ab, 7);
      Tensor b = test::random_host(Shape{77, 65}, ab, 8);
      Tensor a = abuf.flat_range(1, m * 65).view(Shape{m, 65});
      Tensor want = Tensor::empty(Shape{m, 77}, ab);
      ops::MatmulPlan(Exec::cpu(), g, ab, ab).run(Exec::cpu(), g, a, b, want, 1.0, 0.0);
      Tensor dabuf = test::upload(abuf, ex.device), db = test::upload(b, ex.device);
      Tensor da = dabuf.flat_range(1, m * 65).view(Shape{m, 65});
      Tensor dc = Tensor::empty(Shape{m, 77}, ab, ex.device);
      plan.run(ex, g, da, db, dc, 1.0, 0.0);
      rt->sync();
      CAPTURE(m);
      CHECK(test::norm_err(test::values(dc), test::values(want)) <= bound(ab, ab));
    }
  }
  // Larger than planned: refused.
  const ops::MatmulPlan plan(ex, {.m = 4, .n = 4, .k = 4}, DType::f32, DType::f32);
  Tensor a = Tensor::empty(Shape{5, 4}, DType::f32, ex.device), b = Tensor::empty(Shape{4, 4}, DType::f32, ex.device);
  Tensor c = Tensor::empty(Shape{5, 4}, DType::f32, ex.device);
  CHECK_THROWS_AS(plan.run(ex, {.m = 5, .n = 4, .k = 4}, a, b, c, 1.0, 0.0), InternalError);
}

TEST_CASE("cuda matmul: two runs give the same bits (fp32, bf16, bf16 into fp32 with beta = 1)") {
  auto rt = ops::Runtime::open("cuda", 0, false);
  const Exec& ex = rt->exec();
  for (auto [ab, c] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::bf16},
                       std::pair{DType::bf16, DType::f32}}) {
    const ops::Gemm g{.trans_a = true, .trans_b = false, .m = 768, .n = 3072, .k = 4096};  // a wgrad
    const ops::MatmulPlan plan(ex, g, ab, c);
    Tensor a = test::upload(test::random_host(Shape{4096, 768}, ab, 1), ex.device);
    Tensor b = test::upload(test::random_host(Shape{4096, 3072}, ab, 2), ex.device);
    Tensor c0 = test::random_host(Shape{768, 3072}, c, 3);
    Tensor x = test::upload(c0, ex.device), y = test::upload(c0, ex.device);
    plan.run(ex, g, a, b, x, 1.0, 1.0);
    plan.run(ex, g, a, b, y, 1.0, 1.0);
    rt->sync();
    CHECK(test::same_bits(x, y));
  }
}

TEST_CASE("cuda matmul: TF32 only when asked for") {
  auto rt = ops::Runtime::open("cuda", 0, true);
  CHECK(ops::matmul_path(rt->exec(), DType::f32) == "cuBLASLt fp32 (TF32)");
  const Case k{{.trans_a = false, .trans_b = true, .m = 256, .n = 512, .k = 768}, DType::f32, DType::f32};
  CHECK(compare(*rt, k, 9) <= 1e-2);
}

namespace {

// One epilogue product on the GPU and on the CPU (whose plan runs the unfused
// ops) from the same inputs; returns the normalised errors of C and of aux
// (0 when the epilogue writes none).
std::pair<double, double> compare_epilogue(const ops::Runtime& rt, ops::Epilogue e, DType dt, int64_t m, int64_t n,
                                           int64_t k, uint32_t seed) {
  const Exec& ex = rt.exec();
  const bool dgelu = e == ops::Epilogue::dgelu;
  // Forward epilogues: x (m, k) W^T (n, k); dgelu: dy (m, k) W (k, n) with aux (m, n).
  const ops::Gemm g{.trans_a = false, .trans_b = !dgelu, .m = m, .n = n, .k = k};
  Tensor a = test::random_host(Shape{m, k}, dt, seed);
  Tensor b = test::random_host(dgelu ? Shape{k, n} : Shape{n, k}, dt, seed + 1);
  Tensor bias = test::random_host(Shape{n}, dt, seed + 2);
  Tensor aux = test::random_host(Shape{m, n}, dt, seed + 3);  // dgelu's pre-GELU input
  const bool has_bias = e == ops::Epilogue::bias || e == ops::Epilogue::bias_gelu;
  const Tensor hb = has_bias ? bias : Tensor{};
  const bool has_aux = e != ops::Epilogue::bias;
  Tensor want = Tensor::empty(Shape{m, n}, dt), want_aux = Tensor::empty(Shape{m, n}, dt);
  want_aux.copy_from(aux);
  ops::MatmulPlan(Exec::cpu(), g, dt, dt, e).run(Exec::cpu(), g, a, b, want, 1.0, 0.0, hb,
                                                  has_aux ? want_aux : Tensor{});
  Tensor da = test::upload(a, ex.device), db = test::upload(b, ex.device), dbias = test::upload(bias, ex.device);
  Tensor daux = test::upload(aux, ex.device), dc = Tensor::empty(Shape{m, n}, dt, ex.device);
  const ops::MatmulPlan plan(ex, g, dt, dt, e);
  CHECK(plan.fused() == ops::fused_epilogue(ex, e, dt, n));
  plan.run(ex, g, da, db, dc, 1.0, 0.0, has_bias ? dbias : Tensor{}, has_aux ? daux : Tensor{});
  rt.sync();
  const double ec = test::norm_err(test::values(dc), test::values(want));
  const double ea = has_aux && !dgelu ? test::norm_err(test::values(daux), test::values(want_aux)) : 0.0;
  return {ec, ea};
}

}  // namespace

TEST_CASE("cuda matmul: bias, GELU and GELU-derivative epilogues against the CPU's unfused ops") {
  // fp32: the bias fused (one rounding of acc + bias, as beta = 1 over the
  // broadcast bias), GELU unfused (own kernel): 1e-5. bf16: all fused; the
  // CPU rounds the pre-GELU sum to bf16 before GELU (and the product before
  // GELU's derivative), the epilogue computes from the fp32 value: within
  // the bf16 output bound 2^-7. Shapes: GPT-2 124M's mlp.fc and mlp.proj at
  // 256 rows, a bias-only attention projection, and an odd width (12: not a
  // multiple of 8, so unfused on every dtype).
  auto rt = ops::Runtime::open("cuda", 0, false);
  uint32_t seed = 500;
  for (DType dt : {DType::f32, DType::bf16})
    for (auto [e, m, n, k] : {std::tuple{ops::Epilogue::bias, 256, 768, 768},
                              std::tuple{ops::Epilogue::bias_gelu, 256, 3072, 768},
                              std::tuple{ops::Epilogue::gelu, 256, 3072, 768},
                              std::tuple{ops::Epilogue::dgelu, 256, 3072, 768},
                              std::tuple{ops::Epilogue::bias_gelu, 33, 12, 7},
                              std::tuple{ops::Epilogue::dgelu, 33, 12, 7}}) {
      INFO("dtype: " << std::string(dtype_name(dt)));
      CAPTURE(static_cast<int>(e));
      CAPTURE(n);
      const auto [ec, ea] = compare_epilogue(*rt, e, dt, m, n, k, seed += 5);
      CHECK(ec <= bound(dt, dt));
      CHECK(ea <= bound(dt, dt));
    }
}

TEST_CASE("cuda matmul: the bias-gradient epilogue (BGRADB) against the CPU's product and column sums") {
  // dW (out, in) += dy^T x with beta = 1 into the fp32 gradient, db = dy's
  // column sums written: a Linear's weight gradient (qkv, mlp.proj at 256
  // rows of GPT-2 124M) and an odd one. The sum of the same (bf16 or fp32)
  // values in fp32, in cuBLASLt's order: 1e-5; the same bits run to run.
  auto rt = ops::Runtime::open("cuda", 0, false);
  const Exec& ex = rt->exec();
  uint32_t seed = 900;
  for (DType dt : {DType::f32, DType::bf16})
    for (auto [rows, in, out] : {std::tuple{256, 768, 2304}, std::tuple{256, 3072, 768}, std::tuple{33, 7, 12}}) {
      INFO("dtype: " << std::string(dtype_name(dt)));
      CAPTURE(out);
      const ops::Gemm g{.trans_a = true, .trans_b = false, .m = out, .n = in, .k = rows};
      Tensor dy = test::random_host(Shape{rows, out}, dt, seed++), x = test::random_host(Shape{rows, in}, dt, seed++);
      Tensor w0 = test::random_host(Shape{out, in}, DType::f32, seed++);
      Tensor want = Tensor::empty(Shape{out, in}, DType::f32), want_db = Tensor::empty(Shape{out}, DType::f32);
      want.copy_from(w0);
      ops::MatmulPlan(Exec::cpu(), g, dt, DType::f32, ops::Epilogue::bias_grad)
          .run(Exec::cpu(), g, dy, x, want, 1.0, 1.0, want_db);
      const Tensor ddy = test::upload(dy, ex.device), dx = test::upload(x, ex.device);
      const ops::MatmulPlan plan(ex, g, dt, DType::f32, ops::Epilogue::bias_grad);
      if (!plan.fused()) MESSAGE("BGRADB: no cuBLASLt algorithm, unfused");
      std::vector<double> first;
      for (int run = 0; run < 2; ++run) {
        Tensor dw = test::upload(w0, ex.device), db = Tensor::empty(Shape{out}, DType::f32, ex.device);
        plan.run(ex, g, ddy, dx, dw, 1.0, 1.0, db);
        rt->sync();
        CHECK(test::norm_err(test::values(dw), test::values(want)) <= bound(dt, DType::f32));
        CHECK(test::norm_err(test::values(db), test::values(want_db)) <= 1e-5);
        if (run == 0) first = test::values(db);
        else CHECK(test::values(db) == first);
      }
    }
}

TEST_CASE("cuda matmul: cuBLASLt's own fp32 GELU epilogue against the CPU's tanh GELU (measured, for the fp32 policy)") {
  // dtrain keeps fp32 GELU unfused (ops::fused_epilogue). This measures what
  // fusing would cost: cuBLASLt's GELU_AUX_BIAS in fp32 (kernels level) against
  // the CPU's tanh GELU. A WARN, not a failure: the number goes into the
  // acceptance log; under 1e-5 the fp32 policy can fuse too.
  auto rt = ops::Runtime::open("cuda", 0, false);
  const Exec& ex = rt->exec();
  const int64_t m = 256, n = 3072, k = 768;
  const ops::Gemm g{.trans_a = false, .trans_b = true, .m = m, .n = n, .k = k};
  Tensor a = test::random_host(Shape{m, k}, DType::f32, 1), b = test::random_host(Shape{n, k}, DType::f32, 2);
  Tensor bias = test::random_host(Shape{n}, DType::f32, 3);
  Tensor want = Tensor::empty(Shape{m, n}, DType::f32), want_aux = Tensor::empty(Shape{m, n}, DType::f32);
  ops::MatmulPlan(Exec::cpu(), g, DType::f32, DType::f32, ops::Epilogue::bias_gelu)
      .run(Exec::cpu(), g, a, b, want, 1.0, 0.0, bias, want_aux);
  Tensor da = test::upload(a, ex.device), db = test::upload(b, ex.device), dbias = test::upload(bias, ex.device);
  Tensor dc = Tensor::empty(Shape{m, n}, DType::f32, ex.device), daux = Tensor::empty(Shape{m, n}, DType::f32, ex.device);
  const cuda::LtMatmul lt(*ex.cuda, cuda::contiguous_row_gemm(false, true, m, n, k), cuda::LtTypes::f32,
                          cuda::LtEpilogue::gelu_aux_bias);
  lt.run(cuda::contiguous_row_gemm(false, true, m, n, k), da.raw(), db.raw(), dc.raw(), 1.0, 0.0, ex.stream,
         dbias.raw(), daux.raw());
  rt->sync();
  const double ec = test::norm_err(test::values(dc), test::values(want));
  const double ea = test::norm_err(test::values(daux), test::values(want_aux));
  MESSAGE("cuBLASLt fp32 GELU_AUX_BIAS vs CPU tanh GELU: output " << ec << ", aux " << ea);
  CHECK(ea <= 1e-5);   // the bias sum: the same arithmetic
  WARN(ec <= 1e-5);    // GELU: fp32-strict only if this holds
  CHECK(ec <= 1e-2);   // an erf GELU would still be this close; a wrong epilogue would not
}
