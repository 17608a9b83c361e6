// Measures the sgemm ceiling of this machine through the same cpu::gemm the
// layers use: the MFU denominator of the CPU benchmarks. Prints GFLOP/s for a
// few square and GPT-shaped products.
#include <chrono>
#include <cstdio>
#include <cstdlib>

extern "C" char* openblas_get_corename(void) __attribute__((weak));
#include <vector>

#include "kernels/cpu/gemm.h"

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  dtrain::cpu::set_num_threads(threads);
  struct Case { long m, n, k; const char* what; };
  const Case cases[] = {{2048, 2048, 2048, "square 2048"},
                        {256, 3072, 768, "GPT-2 MLP fc (B*T=256)"},
                        {256, 50304, 768, "GPT-2 logits (B*T=256)"},
                        {768, 3072, 256, "GPT-2 weight grad (B*T=256)"}};
  // OpenBLAS picks its kernels from the CPU unless OPENBLAS_CORETYPE says otherwise.
  const char* core = openblas_get_corename ? openblas_get_corename() : nullptr;
  std::printf("threads %d, OpenBLAS kernels %s\n", dtrain::cpu::num_threads(), core ? core : "?");
  for (const Case& c : cases) {
    std::vector<float> a(c.m * c.k, 0.5f), b(c.k * c.n, 0.25f), out(c.m * c.n);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      dtrain::cpu::gemm<float>(false, false, c.m, c.n, c.k, 1.f, a.data(), c.k, b.data(), c.n, 0.f,
                               out.data(), c.n);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double gf = 2.0 * c.m * c.n * c.k / s / 1e9;
      if (gf > best) best = gf;
    }
    std::printf("%-30s %5ldx%5ldx%5ld  %7.1f GFLOP/s\n", c.what, c.m, c.n, c.k, best);
  }
  return 0;
}
