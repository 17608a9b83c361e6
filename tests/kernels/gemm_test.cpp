// The float GEMM (dtrain's AVX-512 kernel where the CPU has it, and the
// dispatching cpu::gemm) against a double-precision reference: every
// transpose combination, shapes on and off the tile and block edges, padded
// leading dimensions, alpha and beta, and 1 to 3 threads splitting C where a
// product is large enough to split (2^22 FLOPs per thread). ctest also runs
// the cpu::gemm case with DTRAIN_CPU_GEMM=blas (tests/CMakeLists.txt).
// (No ";" in test names: doctest_discover_tests cuts names there.)
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/sgemm_avx512.h"

namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  int64_t pad = 3;  // extra columns in every leading dimension
};

struct Data {
  std::vector<float> a, b, c;
  int64_t lda, ldb, ldc;
};

Data make(const Problem& p, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Data d;
  const int64_t ar = p.ta ? p.k : p.m, ac = p.ta ? p.m : p.k;
  const int64_t br = p.tb ? p.n : p.k, bc = p.tb ? p.k : p.n;
  d.lda = ac + p.pad;
  d.ldb = bc + p.pad;
  d.ldc = p.n + p.pad;
  d.a.resize(ar * d.lda);
  d.b.resize(br * d.ldb);
  d.c.resize(p.m * d.ldc);
  for (float& v : d.a) v = u(rng);
  for (float& v : d.b) v = u(rng);
  for (float& v : d.c) v = u(rng);
  return d;
}

// Largest |got - want| over the m x n block, in units of the rounding one may
// expect (k * eps * sum of |products|), and whether C's padding is untouched.
struct Check {
  double worst = 0;  // in units of the tolerance; <= 1 passes
  bool padding_kept = true;
};

Check check(const Problem& p, const Data& in, const std::vector<float>& out) {
  Check r;
  const auto A = [&](int64_t i, int64_t q) { return double(p.ta ? in.a[q * in.lda + i] : in.a[i * in.lda + q]); };
  const auto B = [&](int64_t q, int64_t j) { return double(p.tb ? in.b[j * in.ldb + q] : in.b[q * in.ldb + j]); };
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double s = 0, mag = 0;
      for (int64_t q = 0; q < p.k; ++q) {
        s += A(i, q) * B(q, j);
        mag += std::fabs(A(i, q) * B(q, j));
      }
      const double c0 = in.c[i * in.ldc + j];
      const double want = p.alpha * s + (p.beta == 0.f ? 0.0 : p.beta * c0);
      const double tol = 1e-6 * (std::fabs(p.alpha) * mag + std::fabs(p.beta * c0)) * (1 + p.k / 64.0) + 1e-30;
      const double e = std::fabs(out[i * in.ldc + j] - want) / tol;
      if (!(e <= r.worst)) r.worst = std::isnan(e) ? 1e30 : e;
    }
    for (int64_t j = p.n; j < in.ldc; ++j)
      if (out[i * in.ldc + j] != in.c[i * in.ldc + j]) r.padding_kept = false;
  }
  return r;
}

std::vector<Problem> problems() {
  std::vector<Problem> ps;
    // Around both tiles (8 x 48 and 12 x 32: 64 and 256 columns, and the last
  // two shapes, take the second), the 192 / 288-row, 384-deep and 1024 /
  // 1536-column blocks, and degenerate ones.
  const int64_t shapes[][3] = {{1, 1, 1},       {7, 47, 5},     {8, 48, 16},   {9, 49, 17},
                               {17, 97, 33},    {64, 64, 64},   {13, 33, 31},  {16, 784, 144},
                               {33, 5, 400},    {200, 130, 385}, {3, 1600, 20}, {290, 256, 70},
                               {25, 1100, 40},  {12, 1056, 400}, {36, 2080, 200}};
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) ps.push_back({bool(t & 1), bool(t & 2), s[0], s[1], s[2], 1.f, 0.f});
  ps.push_back({false, true, 50, 70, 90, 0.5f, 1.f});
  ps.push_back({true, false, 50, 70, 90, -2.f, 0.25f});
  ps.push_back({false, false, 199, 1601, 390, 1.f, 1.f, 0});  // two blocks of every kind
  return ps;
}

}  // namespace

TEST_CASE("AVX-512 sgemm matches a double reference on every transpose, edge and thread count") {
  if (!dtrain::cpu::sgemm_avx512_supported()) {
    MESSAGE("this CPU has no AVX-512: the kernel is not used here, nothing to check");
    return;
  }
  uint32_t seed = 1;
  for (const Problem& p : problems()) {
    for (int threads : {1, 2, 3}) {
      CAPTURE(p.ta);
      CAPTURE(p.tb);
      CAPTURE(p.m);
      CAPTURE(p.n);
      CAPTURE(p.k);
      CAPTURE(p.alpha);
      CAPTURE(p.beta);
      CAPTURE(threads);
      const Data d = make(p, seed++);
      std::vector<float> c = d.c;
      REQUIRE(dtrain::cpu::sgemm_avx512(p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(),
                                        d.ldb, p.beta, c.data(), d.ldc, threads));
      const Check r = check(p, d, c);
      CHECK(r.worst <= 1.0);
      CHECK(r.padding_kept);
    }
  }
}

TEST_CASE("sgemm with beta 0 ignores what C held (even NaN), and k = 0 or alpha = 0 scale C by beta") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int backend = 0; backend < 2; ++backend) {
    if (backend == 1 && !dtrain::cpu::sgemm_avx512_supported()) continue;
    const auto run = [&](int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b, float beta,
                         float* c) {
      if (backend == 0)
        dtrain::cpu::gemm<float>(false, false, m, n, k, alpha, a, k, b, n, beta, c, n);
      else
        REQUIRE(dtrain::cpu::sgemm_avx512(false, false, m, n, k, alpha, a, k, b, n, beta, c, n, 2));
    };
    std::vector<float> a(20 * 30, 1.f), b(30 * 50, 2.f), c(20 * 50, nan);
    run(20, 50, 30, 1.f, a.data(), b.data(), 0.f, c.data());
    for (float v : c) REQUIRE(v == 60.f);
    run(20, 50, 0, 1.f, a.data(), b.data(), 0.5f, c.data());  // k = 0: C = beta * C
    for (float v : c) REQUIRE(v == 30.f);
    run(20, 50, 30, 0.f, a.data(), b.data(), 2.f, c.data());  // alpha = 0
    for (float v : c) REQUIRE(v == 60.f);
    std::fill(c.begin(), c.end(), nan);
    run(20, 50, 30, 0.f, a.data(), b.data(), 0.f, c.data());
    for (float v : c) REQUIRE(v == 0.f);
  }
}

TEST_CASE("cpu::gemm<float> (whichever backend this CPU gets) matches the reference") {
  const std::string backend = dtrain::cpu::gemm_backend_name();
  MESSAGE("float GEMM backend: " << backend);
  uint32_t seed = 100;
  for (const Problem& p : problems()) {
    CAPTURE(p.ta);
    CAPTURE(p.tb);
    CAPTURE(p.m);
    CAPTURE(p.n);
    CAPTURE(p.k);
    const Data d = make(p, seed++);
    std::vector<float> c = d.c;
    dtrain::cpu::gemm<float>(p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(), d.ldb, p.beta,
                             c.data(), d.ldc);
    const Check r = check(p, d, c);
    CHECK(r.worst <= 1.0);
    CHECK(r.padding_kept);
  }
}
