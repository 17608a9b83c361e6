// The bf16 GEMM (cpu::gemm_bf16) on each of its paths against a double
// reference computed from the same bf16 inputs: every transpose combination,
// shapes on and off the tile and block edges of both kernels, padded leading
// dimensions, alpha and beta, fp32 and bf16 C, beta = 0 over NaN, k = 0; every
// matrix-product shape of the shipped GPT and CNN configs and the benchmark's
// GPT-2 124M; 1, 2 and 3 threads giving identical bits; and cpu::convert
// against core/bf16.h's scalar rounding on special values.
//
// Error bound, per element: the products of two bf16 are exact in fp32, and a
// sum of k of them in fp32 (any order, any grouping) is off by at most
// (k - 1) * 2^-24 * sum |a b|; alpha, beta and the slices add a few roundings:
//   |got - want| <= (k + 4) * 2^-24 * (|alpha| sum |a b| + |beta c|)
// and for a bf16 C, half an ulp of bf16 more: + 2^-8 * |want|.
// A path this CPU lacks is reported as skipped (a doctest MESSAGE), never passed.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_bf16.h"

namespace {

using dtrain::bf16;
using dtrain::cpu::Bf16GemmPath;

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  float alpha = 1.f, beta = 0.f;
  int64_t pad = 3;  // extra columns in every leading dimension
  int outs = 3;      // C types to try: 1 fp32, 2 bf16, 3 both
};

struct Data {
  std::vector<bf16> a, b;
  std::vector<float> c;  // C's initial values (exact bf16 values, so a bf16 C starts equal)
  int64_t lda, ldb, ldc;
};

// Uniform in (-1, 1), rounded to bf16 (a cheap generator: the 124M
// vocabulary's matrices hold 40 million values).
struct Uniform {
  uint64_t s;
  float operator()() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float(int32_t(s >> 32)) * 0x1p-31f;
  }
};

Data make(const Problem& p, uint32_t seed) {
  Uniform u{seed * 0x9E3779B97F4A7C15ull + 1};
  Data d;
  const int64_t ar = p.ta ? p.k : p.m, ac = p.ta ? p.m : p.k;
  const int64_t br = p.tb ? p.n : p.k, bc = p.tb ? p.k : p.n;
  d.lda = ac + p.pad;
  d.ldb = bc + p.pad;
  d.ldc = p.n + p.pad;
  d.a.resize(ar * d.lda);
  d.b.resize(br * d.ldb);
  d.c.resize(p.m * d.ldc);
  for (bf16& v : d.a) v = bf16(u());
  for (bf16& v : d.b) v = bf16(u());
  for (float& v : d.c) v = float(bf16(u()));
  return d;
}

// The product on `path` with `threads` OpenMP threads; C fp32 or bf16 (then
// returned widened to float, exactly).
std::vector<float> run(Bf16GemmPath path, const Problem& p, const Data& d, bool bf16_out, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::vector<float> out = d.c;
  if (bf16_out) {
    std::vector<bf16> c(d.c.size());
    for (size_t i = 0; i < c.size(); ++i) c[i] = bf16(d.c[i]);
    dtrain::cpu::gemm_bf16_on(path, p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(), d.ldb,
                              p.beta, c.data(), d.ldc);
    for (size_t i = 0; i < c.size(); ++i) out[i] = float(c[i]);
  } else {
    dtrain::cpu::gemm_bf16_on(path, p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(), d.ldb,
                              p.beta, out.data(), d.ldc);
  }
  omp_set_num_threads(saved);
  return out;
}

struct Check {
  double worst = 0;  // largest |error| in units of the bound; <= 1 passes
  int64_t checked = 0;
  bool padding_kept = true;
};

// Against the double reference on every element, or on an even spread of
// about 3e6 / k of them where the product is large (the 124M vocabulary).
Check check(const Problem& p, const Data& in, const std::vector<float>& out, bool bf16_out) {
  Check r;
  const auto A = [&](int64_t i, int64_t q) { return double(p.ta ? in.a[q * in.lda + i] : in.a[i * in.lda + q]); };
  const auto B = [&](int64_t q, int64_t j) { return double(p.tb ? in.b[j * in.ldb + q] : in.b[q * in.ldb + j]); };
  const double mnk = double(p.m) * double(p.n) * double(p.k);
  const int64_t stride = mnk <= 3e6 ? 1 : static_cast<int64_t>(mnk / 3e6) | 1;
  const double u = std::ldexp(1.0, -24);
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = (i * 7) % stride; j < p.n; j += stride) {
      double s = 0, mag = 0;
      for (int64_t q = 0; q < p.k; ++q) {
        s += A(i, q) * B(q, j);
        mag += std::fabs(A(i, q) * B(q, j));
      }
      const double c0 = in.c[i * in.ldc + j];
      const double want = p.alpha * s + (p.beta == 0.f ? 0.0 : p.beta * c0);
      double tol = (p.k + 4) * u * (std::fabs(p.alpha) * mag + std::fabs(p.beta * c0));
      if (bf16_out) tol = tol * (1 + std::ldexp(1.0, -8)) + std::ldexp(std::fabs(want), -8);
      tol += 1e-30;
      const double e = std::fabs(out[i * in.ldc + j] - want) / tol;
      if (!(e <= r.worst)) r.worst = std::isnan(e) ? 1e30 : e;
      ++r.checked;
    }
    for (int64_t j = p.n; j < in.ldc; ++j)
      if (out[i * in.ldc + j] != in.c[i * in.ldc + j]) r.padding_kept = false;
  }
  return r;
}

bool skipped(Bf16GemmPath path) {
  if (dtrain::cpu::gemm_bf16_path_supported(path)) return false;
  MESSAGE("skipped: " << std::string(dtrain::cpu::gemm_bf16_path_name(path)) << " path: this CPU has no "
                      << (path == Bf16GemmPath::kAmx ? "AMX-BF16" : "AVX512_BF16"));
  return true;
}

// Around the kernels' tiles and blocks: AMX 32 x 32, k padded to 32, KC 512
// (one slice up to 1024), MC 256, NC 1024, 1024-row fp32 blocks behind a bf16
// C, x W^T with m < n computed as C^T; AVX512-BF16 8 x 48 and 12 x 32, k
// padded to 2, KC 512, MC 192 / 288, NC 1536 / 1024; degenerate ones.
std::vector<Problem> edge_problems() {
  std::vector<Problem> ps;
  const int64_t shapes[][3] = {{1, 1, 1},     {7, 47, 5},      {8, 48, 16},     {9, 49, 17},   {16, 16, 32},
                               {17, 33, 33},  {31, 31, 31},    {32, 32, 64},    {33, 97, 65},  {64, 64, 64},
                               {13, 33, 1},   {16, 784, 144},  {33, 5, 513},    {200, 130, 385},
                               {3, 1600, 20}, {290, 256, 70},  {257, 1025, 40}, {12, 1056, 400},
                               {36, 2080, 200}, {1100, 70, 1030}, {70, 1100, 1030}};
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) ps.push_back({bool(t & 1), bool(t & 2), s[0], s[1], s[2]});
  ps.push_back({false, true, 50, 70, 90, 0.5f, 1.f});
  ps.push_back({true, false, 50, 70, 90, -2.f, 0.25f});
  ps.push_back({true, true, 45, 77, 1100, 1.f, -1.f});
  ps.push_back({false, false, 300, 1100, 1030, 1.f, 1.f, 0});  // two blocks of every kind, no padding
  return ps;
}

// Every matrix product of the shipped configs and the benchmarks, as the
// layers call them: forward x W^T (NT), input gradient g W (NN), weight
// gradient g^T x (TN, accumulated: beta 1).
std::vector<Problem> model_problems() {
  std::vector<Problem> ps;
  // C as the layers will have it: bf16 activations and activation
  // gradients, fp32 weight gradients.
  const auto linear = [&](int64_t tokens, int64_t in, int64_t out) {
    ps.push_back({false, true, tokens, out, in, 1.f, 0.f, 0, 2});
    ps.push_back({false, false, tokens, in, out, 1.f, 0.f, 0, 2});
    ps.push_back({true, false, out, in, tokens, 1.f, 1.f, 0, 1});
  };
  // GPT-2 124M (tools/bench: batch 4 x 64 tokens, width 768, 12 heads of 64).
  for (int64_t v : {50304, 50257}) linear(256, 768, v);
  linear(256, 768, 2304);
  linear(256, 768, 768);
  linear(256, 768, 3072);
  linear(256, 3072, 768);
  // Small GPT (configs/bench/gpt-small.toml: width 256, 4 heads of 64, vocab 50304).
  linear(256, 256, 50304);
  linear(256, 256, 768);
  linear(256, 256, 256);
  linear(256, 256, 1024);
  linear(256, 1024, 256);
  // configs/gpt.toml: 16 x 128 tokens, width 128, 4 heads of 32, vocab 256.
  linear(2048, 128, 384);
  linear(2048, 128, 128);
  linear(2048, 128, 512);
  linear(2048, 512, 128);
  linear(2048, 128, 256);
  // Attention per head (T x hs): scores q k^T, p v, and their gradients.
  for (const auto& th : {std::pair<int64_t, int64_t>{64, 64}, {128, 32}}) {
    const int64_t T = th.first, hs = th.second;
    ps.push_back({false, true, T, T, hs});    // q k^T, dp = g v^T
    ps.push_back({false, false, T, hs, T});   // p v, dq = ds k
    ps.push_back({true, false, T, hs, T});    // dv = p^T g, dk = ds^T q
  }
  // The MNIST CNN (configs/cnn-mnist.toml) as im2col products (O, N, K):
  // forward W col (NN), weight gradient d col^T (NT, beta 0 then 1), input
  // gradient W^T d (TN); N = the columns of one group of images.
  const int64_t conv[][3] = {{16, 840, 9},   {16, 840, 144}, {32, 392, 144}, {32, 392, 288},
                             {32, 392, 16},  {64, 294, 288}, {64, 294, 576}, {64, 294, 32}};
  for (const auto& c : conv) {
    ps.push_back({false, false, c[0], c[1], c[2], 1.f, 0.f, 0, 2});
    ps.push_back({false, true, c[0], c[2], c[1], 1.f, 1.f, 0, 1});
    ps.push_back({true, false, c[2], c[1], c[0], 1.f, 0.f, 0, 2});
  }
  return ps;
}

void check_path(Bf16GemmPath path, const std::vector<Problem>& problems, bool all_threads) {
  // The fallback's bits follow cpu::gemm<float>'s: thread-count independent
  // with dtrain's AVX-512 sgemm, not promised by OpenBLAS.
  const bool same_bits = path != Bf16GemmPath::kFallback ||
                         dtrain::cpu::gemm_backend() == dtrain::cpu::GemmBackend::kAvx512;
  if (!same_bits)
    MESSAGE("skipped: fallback on OpenBLAS: bits identical across thread counts not checked (not promised)");
  uint32_t seed = 1;
  for (const Problem& p : problems) {
    const Data d = make(p, seed++);
    for (bool bf16_out : {false, true}) {
      if (!(p.outs & (bf16_out ? 2 : 1))) continue;
      CAPTURE(p.ta);
      CAPTURE(p.tb);
      CAPTURE(p.m);
      CAPTURE(p.n);
      CAPTURE(p.k);
      CAPTURE(p.alpha);
      CAPTURE(p.beta);
      CAPTURE(bf16_out);
      const std::vector<float> one = run(path, p, d, bf16_out, 1);
      const Check r = check(p, d, one, bf16_out);
      CHECK(r.worst <= 1.0);
      CHECK(r.padding_kept);
      for (int threads : {2, 3}) {
        if (!same_bits || (!all_threads && threads == 3)) continue;
        CAPTURE(threads);
        const std::vector<float> many = run(path, p, d, bf16_out, threads);
        CHECK(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
      }
    }
  }
}

const Bf16GemmPath kPaths[] = {Bf16GemmPath::kAmx, Bf16GemmPath::kAvx512Bf16, Bf16GemmPath::kFallback};

}  // namespace

TEST_CASE("bf16 GEMM AMX path matches a double reference on every transpose, edge and thread count") {
  if (skipped(Bf16GemmPath::kAmx)) return;
  check_path(Bf16GemmPath::kAmx, edge_problems(), true);
}

TEST_CASE("bf16 GEMM AVX512-BF16 path matches a double reference on every transpose, edge and thread count") {
  if (skipped(Bf16GemmPath::kAvx512Bf16)) return;
  check_path(Bf16GemmPath::kAvx512Bf16, edge_problems(), true);
}

TEST_CASE("bf16 GEMM fp32 fallback matches a double reference on every transpose, edge and thread count") {
  check_path(Bf16GemmPath::kFallback, edge_problems(), true);
}

TEST_CASE("bf16 GEMM AMX path on every GPT and CNN product shape") {
  if (skipped(Bf16GemmPath::kAmx)) return;
  check_path(Bf16GemmPath::kAmx, model_problems(), false);
}

TEST_CASE("bf16 GEMM AVX512-BF16 path on every GPT and CNN product shape") {
  if (skipped(Bf16GemmPath::kAvx512Bf16)) return;
  check_path(Bf16GemmPath::kAvx512Bf16, model_problems(), false);
}

TEST_CASE("bf16 GEMM fp32 fallback on every GPT and CNN product shape") {
  check_path(Bf16GemmPath::kFallback, model_problems(), false);
}

TEST_CASE("bf16 GEMM with beta 0 ignores what C held (even NaN), and k = 0 or alpha = 0 scale C by beta") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Bf16GemmPath path : kPaths) {
    if (skipped(path)) continue;
    const std::string path_name = dtrain::cpu::gemm_bf16_path_name(path);
    CAPTURE(path_name);
    // 40 x 70 x 50 reaches both kernels' edge tiles and AMX's k padding.
    std::vector<bf16> a(40 * 50, bf16(1.f)), b(50 * 70, bf16(2.f));
    std::vector<float> c(40 * 70, nan);
    std::vector<bf16> h(40 * 70, bf16(nan));
    const auto f32 = [&](int64_t k, float alpha, float beta) {
      dtrain::cpu::gemm_bf16_on(path, false, false, 40, 70, k, alpha, a.data(), 50, b.data(), 70, beta, c.data(), 70);
    };
    const auto b16 = [&](int64_t k, float alpha, float beta) {
      dtrain::cpu::gemm_bf16_on(path, false, false, 40, 70, k, alpha, a.data(), 50, b.data(), 70, beta, h.data(), 70);
    };
    f32(50, 1.f, 0.f);
    b16(50, 1.f, 0.f);
    for (float v : c) REQUIRE(v == 100.f);
    for (bf16 v : h) REQUIRE(float(v) == 100.f);
    f32(0, 1.f, 0.5f);  // k = 0: C = beta * C
    b16(0, 1.f, 0.5f);
    for (float v : c) REQUIRE(v == 50.f);
    for (bf16 v : h) REQUIRE(float(v) == 50.f);
    f32(50, 0.f, 2.f);  // alpha = 0
    b16(50, 0.f, 2.f);
    for (float v : c) REQUIRE(v == 100.f);
    for (bf16 v : h) REQUIRE(float(v) == 100.f);
    std::fill(c.begin(), c.end(), nan);
    std::fill(h.begin(), h.end(), bf16(nan));
    f32(0, 1.f, 0.f);
    b16(50, 0.f, 0.f);
    for (float v : c) REQUIRE(v == 0.f);
    for (bf16 v : h) REQUIRE(float(v) == 0.f);
    f32(50, 1.f, 1.f);  // beta 1 accumulates
    b16(50, 1.f, 1.f);
    for (float v : c) REQUIRE(v == 100.f);
    for (bf16 v : h) REQUIRE(float(v) == 100.f);
  }
}

TEST_CASE("bf16 GEMM through the dispatching entry point, on whichever path this CPU gets") {
  // A DTRAIN_CPU_GEMM_BF16 this CPU cannot honour is refused at setup; the
  // product itself then runs the fallback.
  Bf16GemmPath path = Bf16GemmPath::kFallback;
  try {
    path = dtrain::cpu::gemm_bf16_path();
  } catch (const dtrain::ConfigError& e) {
    MESSAGE("refused (so the fallback): " << e.what());
  }
  MESSAGE("bf16 GEMM path: " << std::string(dtrain::cpu::gemm_bf16_path_name(path)));
  const Problem p{false, true, 70, 90, 110, 1.f, 0.f};
  const Data d = make(p, 99);
  std::vector<float> c = d.c;
  dtrain::cpu::gemm_bf16(p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(), d.ldb, p.beta, c.data(),
                         d.ldc);
  CHECK(check(p, d, c, false).worst <= 1.0);
  CHECK(c == run(path, p, d, false, 2));
}

TEST_CASE("bf16 convert matches the scalar rounding on special values, ties and denormals") {
  std::vector<float> x;
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.f, -0.f, 1.f, -1.f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest(),
                  std::numeric_limits<float>::min(), std::numeric_limits<float>::denorm_min(), 3.0e-39f, -1.0e-40f})
    x.push_back(v);
  // Ties (halfway, both parities), just above and below, a signalling NaN,
  // NaNs whose payload sits only in the low bits, values rounding to inf.
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x7f800001u, 0xff800001u, 0x7fc00000u,
                        0x7f7fffffu, 0x7f7f8000u, 0x007f8000u, 0x00018000u, 0x80008000u, 0x7fbfffffu})
    x.push_back(dtrain::float_from_bits(bits));
  std::mt19937 rng(5);
  for (int i = 0; i < 100000; ++i) x.push_back(dtrain::float_from_bits(static_cast<uint32_t>(rng())));
  for (int64_t n : {int64_t(x.size()), int64_t(1), int64_t(15), int64_t(17)}) {
    std::vector<bf16> y(n);
    dtrain::cpu::convert(x.data(), n, y.data());
    for (int64_t i = 0; i < n; ++i) {
      CAPTURE(i);
      REQUIRE(y[i].bits == bf16(x[i]).bits);
    }
    std::vector<float> back(n);
    dtrain::cpu::convert(y.data(), n, back.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(dtrain::float_bits(back[i]) == dtrain::float_bits(float(y[i])));
  }
  // Large enough to be split among threads.
  std::vector<float> big(300001);
  for (size_t i = 0; i < big.size(); ++i) big[i] = dtrain::float_from_bits(static_cast<uint32_t>(rng()));
  std::vector<bf16> y(big.size());
  dtrain::cpu::convert(big.data(), int64_t(big.size()), y.data());
  for (size_t i = 0; i < big.size(); ++i) REQUIRE(y[i].bits == bf16(big[i]).bits);
}

// ctest runs this case under DTRAIN_CPU_GEMM_BF16 = fallback, amx, avx512bf16
// and a bad value too (tests/CMakeLists.txt); run plainly, the variable is unset.
TEST_CASE("DTRAIN_CPU_GEMM_BF16 forces a path, or is refused naming the variable") {
  const char* env = std::getenv("DTRAIN_CPU_GEMM_BF16");
  const std::string want = env ? env : "auto";
  CAPTURE(want);
  const bool amx = dtrain::cpu::gemm_bf16_path_supported(Bf16GemmPath::kAmx);
  const bool avx = dtrain::cpu::gemm_bf16_path_supported(Bf16GemmPath::kAvx512Bf16);
  const auto refused = [&](const std::string& text) {
    try {
      dtrain::cpu::gemm_bf16_path();
      FAIL("accepted DTRAIN_CPU_GEMM_BF16=" << want);
    } catch (const dtrain::ConfigError& e) {
      const std::string what = e.what();
      CHECK(what.find("DTRAIN_CPU_GEMM_BF16") != std::string::npos);
      CHECK(what.find(text) != std::string::npos);
    }
  };
  if (want == "auto" || want.empty()) {
    CHECK(dtrain::cpu::gemm_bf16_path() == (amx ? Bf16GemmPath::kAmx
                                            : avx ? Bf16GemmPath::kAvx512Bf16
                                                  : Bf16GemmPath::kFallback));
  } else if (want == "fallback") {
    CHECK(dtrain::cpu::gemm_bf16_path() == Bf16GemmPath::kFallback);
  } else if (want == "amx" || want == "avx512bf16") {
    const bool have = want == "amx" ? amx : avx;
    if (have)
      CHECK(dtrain::cpu::gemm_bf16_path() == (want == "amx" ? Bf16GemmPath::kAmx : Bf16GemmPath::kAvx512Bf16));
    else
      refused("this CPU has no");
  } else {
    refused("expected auto, amx, avx512bf16 or fallback");
  }
  // gemm_bf16 itself never throws: a refused choice runs the fallback.
  const Problem p{true, false, 20, 30, 40, 1.f, 0.f};
  const Data d = make(p, 3);
  std::vector<float> c = d.c;
  dtrain::cpu::gemm_bf16(p.ta, p.tb, p.m, p.n, p.k, p.alpha, d.a.data(), d.lda, d.b.data(), d.ldb, p.beta, c.data(),
                         d.ldc);
  CHECK(check(p, d, c, false).worst <= 1.0);
}
