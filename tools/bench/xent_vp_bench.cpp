// The vocabulary-parallel loss's CPU passes (kernels/cpu/cross_entropy.cpp:
// cpu::row_max, cpu::vp_exp_sums) against the scalar loops ops.cpp had before
// (kept here as the reference): a tensor-parallel rank's slice of GPT-2's
// padded vocabulary (50304 / 2 = 25152 columns), 256 rows, fp32 and bf16,
// best of 20. Results: xent_results.md.
//
//   g++ -O3 -DNDEBUG -DROWS=256 -fno-trapping-math -fopenmp -march=native -std=c++20 -Ilib \
//     tools/bench/xent_vp_bench.cpp build/lib/kernels/libdtrain_kernels.a build/lib/core/libdtrain_core.a \
//     -lfmt -o /tmp/xent_vp_bench
//   OMP_NUM_THREADS=1 /tmp/xent_vp_bench; OMP_NUM_THREADS=2 /tmp/xent_vp_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
#include <climits>
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/vmath.h"
using namespace dtrain;
template <class T> void old_max(const T* x, int64_t rows, int64_t v, compute_t<T>* m) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) { const T* xr = x + r * v; A mr = xr[0];
    for (int64_t j = 1; j < v; ++j) if (A(xr[j]) > mr) mr = xr[j]; m[r] = mr; }
}
template <class T> void old_first(const T* x, int64_t rows, int64_t v, const compute_t<T>* m, int32_t* a) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) { const T* xr = x + r * v; int64_t first=-1;
    for (int64_t j = 0; j < v && first < 0; ++j) if (A(xr[j]) == m[r]) first = j; a[r] = first<0?INT32_MAX:first; }
}
template <class T> void run(const char* name) {
  const int64_t rows = ROWS, v = 25152;
  std::vector<T> x(rows * v); std::vector<compute_t<T>> m(rows), s(2*rows); std::vector<int32_t> a(rows), tg(rows, 5);
  std::vector<T> p(rows*v);
  uint32_t st = 1; for (auto& e : x) { st = st * 1664525u + 1013904223u; e = T(float(st >> 8) / 16777216.0f * 10); }
  auto time = [&](auto f) { double best = 1e9; for (int k = 0; k < 20; ++k) { auto t0 = std::chrono::steady_clock::now(); f(); best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()); } return best; };
  double a1 = time([&] { old_max<T>(x.data(), rows, v, m.data()); });
  double a2 = time([&] { cpu::row_max<T>(x.data(), rows, v, m.data()); });
  double b1 = time([&] { old_first<T>(x.data(), rows, v, m.data(), a.data()); });
  double b2 = time([&] { cpu::vp_exp_sums<T>(x.data(), tg.data(), 0, rows, v, m.data(), p.data(), s.data(), a.data()); });
  std::printf("%s rows %ld v %ld: row max old %.2f ms new %.2f ms; first-max scan old %.2f ms; new exp_sums total %.2f ms\n", name, rows, v, a1, a2, b1, b2);
}
int main() { run<float>("fp32"); run<bf16>("bf16"); }
