// The cross-entropy forward's exp sum over a row of logits, in fp32 (as it
// was) and in double (as kernels/cpu/cross_entropy.cpp sums it now), side by
// side in one run: what the double sum costs, and how far each is from an
// exact (long double) sum on rows with a confident target.
//
//   g++ -O3 -march=native -fopenmp -std=c++20 -I lib tools/bench/xent_sum_bench.cpp -o /tmp/xent_sum_bench
//   /tmp/xent_sum_bench [rows] [vocab] [threads]     (default 256 x 50304, 1 thread)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/vmath.h"

namespace {

using dtrain::cpu::exp_fast;

float sum_f32(const float* x, int64_t v, float mx) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < v; ++j) sum += exp_fast(x[j] - mx);
  return sum;
}

double sum_f64(const float* x, int64_t v, float mx) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < v; ++j) sum += static_cast<double>(exp_fast(x[j] - mx));
  return sum;
}

template <class F>
double seconds_per_pass(F&& pass, int reps) {
  pass();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pass();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 256, v = argc > 2 ? std::atoll(argv[2]) : 50304;
  omp_set_num_threads(argc > 3 ? std::atoi(argv[3]) : 1);
  std::vector<float> x(static_cast<size_t>(rows * v));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (float& e : x) e = nd(rng);
  std::vector<float> mx(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    if (r % 3 == 0) x[static_cast<size_t>(r * v + r % v)] = 20.0f;  // a confident row: the target 20 above the rest
    mx[static_cast<size_t>(r)] = *std::max_element(x.begin() + r * v, x.begin() + (r + 1) * v);
  }
  std::vector<double> s32(static_cast<size_t>(rows)), s64(static_cast<size_t>(rows));
  const double t32 = seconds_per_pass(
      [&] {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r) s32[static_cast<size_t>(r)] = sum_f32(&x[static_cast<size_t>(r * v)], v, mx[static_cast<size_t>(r)]);
      },
      20);
  const double t64 = seconds_per_pass(
      [&] {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r) s64[static_cast<size_t>(r)] = sum_f64(&x[static_cast<size_t>(r * v)], v, mx[static_cast<size_t>(r)]);
      },
      20);
  // Error against a long double sum of the same exp_fast values, in the loss
  // (log of the sum): worst over the confident rows and over the others.
  double e32_conf = 0, e64_conf = 0, e32_rest = 0, e64_rest = 0;
  for (int64_t r = 0; r < rows; ++r) {
    long double exact = 0;
    for (int64_t j = 0; j < v; ++j) exact += exp_fast(x[static_cast<size_t>(r * v + j)] - mx[static_cast<size_t>(r)]);
    const double l = std::log(static_cast<double>(exact));
    const double d32 = std::fabs(std::log(s32[static_cast<size_t>(r)]) - l), d64 = std::fabs(std::log(s64[static_cast<size_t>(r)]) - l);
    if (r % 3 == 0) {
      e32_conf = std::max(e32_conf, d32), e64_conf = std::max(e64_conf, d64);
    } else {
      e32_rest = std::max(e32_rest, d32), e64_rest = std::max(e64_rest, d64);
    }
  }
  const double gb = static_cast<double>(rows * v) * 4 / 1e9;
  std::printf("| exp sum, %lld rows x %lld, %d thread(s) | ms per pass | GB/s of logits | loss error, confident rows | loss error, others |\n",
              static_cast<long long>(rows), static_cast<long long>(v), omp_get_max_threads());
  std::printf("|---|---|---|---|---|\n");
  std::printf("| fp32 sum (before) | %.3f | %.1f | %.2e | %.2e |\n", 1e3 * t32, gb / t32, e32_conf, e32_rest);
  std::printf("| double sum (now) | %.3f | %.1f | %.2e | %.2e |\n", 1e3 * t64, gb / t64, e64_conf, e64_rest);
  return 0;
}
