// The sgemm ceiling of this machine, and dtrain's AVX-512 kernel against
// OpenBLAS side by side on every product shape a GPT-2 124M step and the CNN
// use (forward, input gradient and weight gradient: NT, NN and TN), with the
// largest difference between the two results.
//
//   sgemm_peak [threads] [reps] [cold]
//
// With "cold", every timing starts from caches flushed by writing 96 MiB, and
// runs the product once: the weights of a training step come from memory.
// Each case runs the two backends alternately, `reps` times each, and reports
// the best and the median GFLOP/s of each; the last column is the median
// ratio dtrain / OpenBLAS. OpenBLAS runs whatever kernels it chose for this
// CPU (OPENBLAS_CORETYPE overrides its choice; the name is printed).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/sgemm_avx512.h"

extern "C" char* openblas_get_corename(void) __attribute__((weak));

using dtrain::bench::median;

namespace {

struct Case {
  const char* what;
  bool ta, tb;
  long m, n, k;
  bool single;  // one thread: the per-head products run inside a parallel loop
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 7;
  const bool cold = argc > 3 && std::string(argv[3]) == "cold";
  std::vector<char> flush(cold ? 96 << 20 : 0);
  dtrain::cpu::set_num_threads(threads);
  const int nt = dtrain::cpu::num_threads();
  const bool have = dtrain::cpu::sgemm_avx512_supported();
  const Case cases[] = {
      {"square 2048", false, false, 2048, 2048, 2048, false},
      {"124M qkv fwd (x W^T)", false, true, 256, 2304, 768, false},
      {"124M qkv dx (g W)", false, false, 256, 768, 2304, false},
      {"124M qkv dW (g^T x)", true, false, 2304, 768, 256, false},
      {"124M fc fwd", false, true, 256, 3072, 768, false},
      {"124M fc dx", false, false, 256, 768, 3072, false},
      {"124M fc dW", true, false, 3072, 768, 256, false},
      {"124M proj fwd", false, true, 256, 768, 3072, false},
      {"124M logits fwd", false, true, 256, 50304, 768, false},
      {"124M logits dx", false, false, 256, 768, 50304, false},
      {"124M logits dW", true, false, 50304, 768, 256, false},
      {"small logits fwd (C=256)", false, true, 256, 50304, 256, false},
      {"small qkv fwd (C=256)", false, true, 256, 768, 256, false},
      {"small proj fwd", false, true, 256, 256, 256, false},
      {"small fc2 fwd", false, true, 256, 256, 1024, false},
      {"small fc dx", false, false, 256, 256, 1024, false},
      {"small fc dW", true, false, 1024, 256, 256, false},
      {"attention q k^T (1 thread)", false, true, 64, 64, 64, true},
      {"attention p v (1 thread)", false, false, 64, 64, 64, true},
      {"CNN conv2 fwd (1 thread)", false, false, 16, 784, 144, true},
      {"CNN conv3 dW (1 thread)", false, true, 32, 288, 196, true},
  };
  const char* core = openblas_get_corename ? openblas_get_corename() : nullptr;
  std::printf("threads %d, OpenBLAS kernels %s, AVX-512 kernel %s, best and median of %d%s\n", nt,
              core ? core : "?", have ? "available" : "NOT available on this CPU", reps,
              cold ? ", caches flushed before each product" : "");
  std::printf("%-28s %2s %6s %6s %6s | %9s %9s | %9s %9s | %6s %8s\n", "case", "op", "m", "n", "k",
              "blas best", "median", "dtrain", "median", "ratio", "max diff");
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (const Case& c : cases) {
    const long ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k;
    const long br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
    std::vector<float> a(ar * ac), b(br * bc), c0(c.m * c.n), c1(c.m * c.n);
    for (float& v : a) v = u(rng);
    for (float& v : b) v = u(rng);
    const double flops = 2.0 * c.m * c.n * c.k;
    int r_flush = 1;
    const int inner = cold ? 1 : std::max(1, static_cast<int>(2e8 / flops));  // ~0.5 ms per timing at least
    auto evict = [&] {
      if (cold) std::memset(flush.data(), r_flush++ & 0xFF, flush.size());
    };
    const int use = c.single ? 1 : nt;
    std::vector<double> tb, td;
    for (int r = 0; r < reps; ++r) {
      omp_set_num_threads(use);
      openblas_set_num_threads(use);
      evict();
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < inner; ++i)
        cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans, c.tb ? CblasTrans : CblasNoTrans,
                    c.m, c.n, c.k, 1.f, a.data(), ac, b.data(), bc, 0.f, c0.data(), c.n);
      tb.push_back(flops * inner / seconds_since(t0) / 1e9);
      if (!have) continue;
      evict();
      t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < inner; ++i)
        dtrain::cpu::sgemm_avx512(c.ta, c.tb, c.m, c.n, c.k, 1.f, a.data(), ac, b.data(), bc, 0.f,
                                  c1.data(), c.n, use);
      td.push_back(flops * inner / seconds_since(t0) / 1e9);
    }
    omp_set_num_threads(nt);
    openblas_set_num_threads(nt);
    double diff = 0;
    for (long i = 0; i < c.m * c.n; ++i) diff = std::max(diff, double(std::fabs(c0[i] - c1[i])));
    const char* op = c.ta ? (c.tb ? "TT" : "TN") : (c.tb ? "NT" : "NN");
    if (!have) {
      std::printf("%-28s %2s %6ld %6ld %6ld | %9.1f %9.1f |\n", c.what, op, c.m, c.n, c.k,
                  *std::max_element(tb.begin(), tb.end()), median(tb));
      continue;
    }
    std::printf("%-28s %2s %6ld %6ld %6ld | %9.1f %9.1f | %9.1f %9.1f | %5.2fx %8.1e\n", c.what, op,
                c.m, c.n, c.k, *std::max_element(tb.begin(), tb.end()), median(tb),
                *std::max_element(td.begin(), td.end()), median(td), median(td) / median(tb), diff);
  }
  return 0;
}
