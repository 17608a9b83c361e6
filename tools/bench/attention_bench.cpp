// The CPU attention backward (kernels/cpu/attention.cpp) of GPT-2 124M's
// heads (12 of 64) at T = 1024, batch 1, fp32: multi-head, grouped-query (4
// key/value heads) and multi-query (1), on one thread and on two. With one
// (batch, key/value head) pair and two threads the backward runs as three
// parallel passes; otherwise an item per pair. Prints the times and whether
// the two thread counts gave the same bits. Results: results_cpu.md.
//
//   g++ -O3 -DNDEBUG -fno-trapping-math -fopenmp -march=native -std=c++20 -DDTRAIN_BLAS_OPENMP=1 -Ilib \
//     -I/usr/include/x86_64-linux-gnu/openblas-openmp tools/bench/attention_bench.cpp \
//     build/lib/kernels/libdtrain_kernels.a build/lib/core/libdtrain_core.a -lopenblas -lfmt -o /tmp/attention_bench
//   /tmp/attention_bench
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "kernels/cpu/attention.h"

using namespace dtrain;

int main() {
  const int64_t B = 1, T = 1024, nh = 12, hs = 64, C = nh * hs;
  std::printf("| key/value heads | backward, 1 thread | backward, 2 threads | path on 2 threads | same bits |\n");
  std::printf("|---|---|---|---|---|\n");
  for (int64_t nkv : {12, 4, 1}) {
    const int64_t W = C + 2 * nkv * hs;
    std::vector<float> qkv(B * T * W), dy(B * T * C), y(B * T * C), d1(B * T * W), d2(B * T * W);
    for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = float((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < dy.size(); ++i) dy[i] = float((i * 40503u) % 1000) / 1000.0f - 0.5f;
    std::vector<float> att(B * nh * T * T);
    std::vector<float> scratch(2 * cpu::attention_scratch_size(T, hs));
    double best[3] = {1e9, 1e9, 1e9};
    for (int rep = 0; rep < 5; ++rep)
      for (int slots : {1, 2}) {
        cpu::attention_forward<float>(qkv.data(), B, T, C, nh, nkv, att.data(), y.data(), scratch.data(), slots);
        const auto t0 = std::chrono::steady_clock::now();
        cpu::attention_backward<float>(dy.data(), qkv.data(), att.data(), B, T, C, nh, nkv, scratch.data(), slots,
                                       slots == 1 ? d1.data() : d2.data());
        best[slots] = std::min(best[slots], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    std::printf("| %ld | %.1f ms | %.1f ms | %s | %s |\n", nkv, 1e3 * best[1], 1e3 * best[2],
                B * nkv >= 2 ? "an item per pair" : "three parallel passes", d1 == d2 ? "yes" : "NO");
  }
}
