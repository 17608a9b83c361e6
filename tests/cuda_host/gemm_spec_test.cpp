// The row-major -> column-major mapping of kernels/cuda/gemm_spec.h, checked
// without a GPU: the spec is interpreted by a plain column-major GEMM (what
// cuBLASLt computes, in double) and compared with dtrain's row-major product
// (the definition and cpu::gemm). Small-integer operands make every sum exact,
// so the comparison is for equality. The shipped models' products are too
// large to multiply here: for them every index the spec reads or writes is
// mapped back to the row-major element it must be (corners and random
// samples) and the layouts are checked to cover exactly the operands.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cuda/gemm_spec.h"
#include "model/model.h"
#include "cuda_host/model_gemms.h"

using namespace dtrain;

namespace {

// What cuBLASLt computes for a spec: D = alpha op(first) op(second) + beta C,
// column-major, batched; `first` is dtrain's B buffer, `second` its A (swap).
void interpret(const cuda::LtGemmSpec& s, const double* first, const double* second, double* c, double alpha,
               double beta) {
  for (int64_t bt = 0; bt < s.c.batch; ++bt) {
    const double* A = first + bt * s.a.stride;
    const double* B = second + bt * s.b.stride;
    double* D = c + bt * s.c.stride;
    for (int64_t j = 0; j < s.n; ++j)
      for (int64_t i = 0; i < s.m; ++i) {
        double acc = 0;
        for (int64_t p = 0; p < s.k; ++p) {
          const double a = s.transa ? A[p + i * s.a.ld] : A[i + p * s.a.ld];
          const double b = s.transb ? B[j + p * s.b.ld] : B[p + j * s.b.ld];
          acc += a * b;
        }
        D[i + j * s.c.ld] = alpha * acc + beta * D[i + j * s.c.ld];
      }
  }
}

// dtrain's definition: C (m, n) = alpha op(A) op(B) + beta C, row-major with leading dimensions.
void row_major(const cuda::RowGemm& g, const double* a, const double* b, double* c, double alpha, double beta) {
  for (int64_t bt = 0; bt < g.batch; ++bt)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const double x = g.trans_a ? a[bt * g.stride_a + p * g.lda + i] : a[bt * g.stride_a + i * g.lda + p];
          const double y = g.trans_b ? b[bt * g.stride_b + j * g.ldb + p] : b[bt * g.stride_b + p * g.ldb + j];
          acc += x * y;
        }
        double& d = c[bt * g.stride_c + i * g.ldc + j];
        d = alpha * acc + beta * d;
      }
}

int64_t extent(int64_t rows_stored, int64_t ld, const cuda::RowGemm& g, int64_t stride) {
  return (g.batch - 1) * stride + (rows_stored - 1) * ld + ld;
}

std::vector<double> small_ints(int64_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(-3, 3);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = d(rng);
  return v;
}

// Interprets the spec of g and compares with the row-major product, exactly.
void check_numerically(const cuda::RowGemm& g) {
  CAPTURE(g.trans_a);
  CAPTURE(g.trans_b);
  CAPTURE(g.m);
  CAPTURE(g.n);
  CAPTURE(g.k);
  CAPTURE(g.batch);
  std::mt19937 rng(static_cast<unsigned>(g.m * 131 + g.n * 17 + g.k));
  const int64_t a_rows = g.trans_a ? g.k : g.m, b_rows = g.trans_b ? g.n : g.k;
  std::vector<double> a = small_ints(extent(a_rows, g.lda, g, g.stride_a), rng);
  std::vector<double> b = small_ints(extent(b_rows, g.ldb, g, g.stride_b), rng);
  std::vector<double> c0 = small_ints(extent(g.m, g.ldc, g, g.stride_c), rng);
  const cuda::LtGemmSpec s = cuda::lt_spec(g);
  REQUIRE(cuda::lt_layout_valid(s.a));
  REQUIRE(cuda::lt_layout_valid(s.b));
  REQUIRE(cuda::lt_layout_valid(s.c));
  for (double beta : {0.0, 1.0}) {
    std::vector<double> want = c0, got = c0;
    row_major(g, a.data(), b.data(), want.data(), 2.0, beta);
    interpret(s, b.data(), a.data(), got.data(), 2.0, beta);  // swap: first = B, second = A
    REQUIRE(got == want);
    if (g.batch == 1 && g.lda == (g.trans_a ? g.m : g.k) && g.ldb == (g.trans_b ? g.k : g.n) && g.ldc == g.n) {
      std::vector<double> ref = c0;
      cpu::gemm<double>(g.trans_a, g.trans_b, g.m, g.n, g.k, 2.0, a.data(), g.lda, b.data(), g.ldb, beta,
                        ref.data(), g.ldc);
      REQUIRE(got == ref);
    }
  }
}

// For products too large to multiply: the element the spec reads for
// op(first)(r, p) and op(second)(p, q) and writes for D(r, q) is exactly the
// row-major op(B)(p, r), op(A)(q, p) and C(q, r); layouts within the operands.
void check_indices(const cuda::RowGemm& g, std::mt19937& rng) {
  const cuda::LtGemmSpec s = cuda::lt_spec(g);
  REQUIRE(cuda::lt_layout_valid(s.a));
  REQUIRE(cuda::lt_layout_valid(s.b));
  REQUIRE(cuda::lt_layout_valid(s.c));
  REQUIRE(s.swap);
  REQUIRE(s.m == g.n);
  REQUIRE(s.n == g.m);
  REQUIRE(s.k == g.k);
  // The stored shapes are exactly the operands' (so the layouts cover them, no more).
  CHECK(s.a.rows * s.a.cols == g.k * g.n);
  CHECK(s.b.rows * s.b.cols == g.m * g.k);
  CHECK(s.a.ld * (s.a.cols - 1) + s.a.rows <= extent(g.trans_b ? g.n : g.k, g.ldb, g, 0));
  CHECK(s.b.ld * (s.b.cols - 1) + s.b.rows <= extent(g.trans_a ? g.k : g.m, g.lda, g, 0));
  CHECK(s.c.ld * (s.c.cols - 1) + s.c.rows <= extent(g.m, g.ldc, g, 0));
  CHECK(s.a.stride == g.stride_b);
  CHECK(s.b.stride == g.stride_a);
  CHECK(s.c.stride == g.stride_c);
  std::uniform_int_distribution<int64_t> rm(0, g.m - 1), rn(0, g.n - 1), rk(0, g.k - 1);
  for (int t = 0; t < 200; ++t) {
    // Corners first, then random samples.
    const int64_t i = t < 8 ? ((t & 1) ? g.m - 1 : 0) : rm(rng);
    const int64_t j = t < 8 ? ((t & 2) ? g.n - 1 : 0) : rn(rng);
    const int64_t p = t < 8 ? ((t & 4) ? g.k - 1 : 0) : rk(rng);
    // cuBLASLt: D(r = j, q = i) = sum_p first(j, p) second(p, i).
    const int64_t first = s.transa ? p + j * s.a.ld : j + p * s.a.ld;
    const int64_t second = s.transb ? i + p * s.b.ld : p + i * s.b.ld;
    const int64_t d = j + i * s.c.ld;
    const int64_t rb = g.trans_b ? j * g.ldb + p : p * g.ldb + j;  // op(B)(p, j)
    const int64_t ra = g.trans_a ? p * g.lda + i : i * g.lda + p;  // op(A)(i, p)
    const int64_t rc = i * g.ldc + j;                              // C(i, j)
    REQUIRE(first == rb);
    REQUIRE(second == ra);
    REQUIRE(d == rc);
  }
}

}  // namespace

TEST_CASE("cuda host: the cuBLASLt mapping of row-major products, every transpose and odd sizes") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t m : {1, 3, 17})
        for (int64_t n : {1, 5, 33})
          for (int64_t k : {1, 7, 64}) check_numerically(cuda::contiguous_row_gemm(ta, tb, m, n, k));
}

TEST_CASE("cuda host: the cuBLASLt mapping with padded leading dimensions and batches") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      cuda::RowGemm g = cuda::contiguous_row_gemm(ta, tb, 9, 6, 11);
      g.lda += 3;  // a view into a wider matrix (the attention's qkv rows)
      g.ldb += 5;
      g.ldc += 2;
      check_numerically(g);
      cuda::RowGemm h = test::batched(ta, tb, 7, 5, 13, 4);  // per-head products
      check_numerically(h);
      h.stride_a += 10;  // gaps between batch members
      h.stride_c += 3;
      check_numerically(h);
    }
}

TEST_CASE("cuda host: BGRADB of the mapped weight gradient is the bias gradient, dy's column sums") {
  // cuBLASLt's BGRADB (cublasLt.h): a vector of D's columns, the reduction of
  // its second operand op(B) over k, written to the bias pointer. Interpreted
  // on the spec of dW (out, in) += dy^T x, with small integers (exact sums), it
  // must be dtrain's bias gradient: per output feature, dy summed over rows.
  std::mt19937 rng(11);
  for (int64_t rows : {1, 6, 40})
    for (int64_t out : {1, 5, 24}) {
      const int64_t in = 7;
      CAPTURE(rows);
      CAPTURE(out);
      const cuda::RowGemm g = cuda::contiguous_row_gemm(true, false, out, in, rows);  // A = dy, B = x
      const cuda::LtGemmSpec s = cuda::lt_spec(g);
      const cuda::LtEpilogueSpec es = cuda::lt_epilogue_spec(g, cuda::LtEpilogue::bgradb);
      REQUIRE(es.ok);
      REQUIRE(es.bias_len == s.n);
      const std::vector<double> dy = small_ints(rows * out, rng);
      const double* second = dy.data();  // cuBLASLt's second operand is dtrain's A (the swap)
      std::vector<double> lt(static_cast<size_t>(s.n), 0.0), want(static_cast<size_t>(out), 0.0);
      for (int64_t j = 0; j < s.n; ++j)
        for (int64_t p = 0; p < s.k; ++p)
          lt[j] += s.transb ? second[j + p * s.b.ld] : second[p + j * s.b.ld];  // op(B)[p, j]
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) want[o] += dy[r * out + o];
      CHECK(lt == want);
    }
}

TEST_CASE("cuda host: the cuBLASLt mapping of every product the shipped configs plan") {
  std::mt19937 rng(7);
  size_t count = 0;
  for (const std::string& path : test::shipped_configs()) {
    const Config c = load_config(path);
    const std::string name = std::filesystem::path(path).filename().string();
    for (int64_t t : {1, 2, 4})
      for (const test::ModelGemm& mg : test::config_gemms(c, name, t)) {
        CAPTURE(mg.what);
        check_indices(mg.g, rng);
        // The same shape scaled down (odd sizes kept odd), multiplied out.
        cuda::RowGemm s = mg.g;
        s.m = std::max<int64_t>(1, s.m / 97) | 1;
        s.n = std::max<int64_t>(1, s.n / 97) | 1;
        s.k = std::max<int64_t>(1, s.k / 97) | 1;
        s.batch = std::min<int64_t>(s.batch, 2);
        cuda::RowGemm small = s.batch > 1 ? test::batched(s.trans_a, s.trans_b, s.m, s.n, s.k, s.batch)
                                          : cuda::contiguous_row_gemm(s.trans_a, s.trans_b, s.m, s.n, s.k);
        check_numerically(small);
        ++count;
      }
  }
  CHECK(count > 50);
}

// The list above against the models themselves: the forward products' FLOPs
// (2 m n k each) plus the loss's 5 per logit equal Model::cost, so a layer that
// plans another product breaks this test instead of escaping the mapping tests.
TEST_CASE("cuda host: the listed products are the ones the shipped models count") {
  for (const std::string& path : test::shipped_configs()) {
    const Config c = load_config(path);
    CAPTURE(path);
    const std::string name = std::filesystem::path(path).filename().string();
    if (c.model.classifier()) continue;  // its convolutions are cuDNN's; its one Linear is listed
    auto model = describe_model(c.model, train_seq_len(c));
    const int64_t B = c.train.micro_batch, T = train_seq_len(c);
    double flops = 0;
    for (const test::ModelGemm& mg : test::config_gemms(c, name, 1)) {
      const double f = 2.0 * static_cast<double>(mg.g.m) * mg.g.n * mg.g.k * mg.g.batch;
      if (mg.forward) flops += f * (mg.what.find("lm_head") != std::string::npos ? 1 : c.model.n_layer);
      if (mg.scores) flops += 2 * f * c.model.n_layer;  // Q K^T and P V, the same FLOPs each
    }
    flops += 5.0 * B * T * c.model.vocab_size;  // the loss
    CHECK(model->cost(B).fwd_flops == doctest::Approx(flops).epsilon(1e-12));
  }
}
