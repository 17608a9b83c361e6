// Provisional: widen to fp32 and use cpu::gemm<float> (replaced by wip-gemm's kernels).
#include "kernels/cpu/gemm_bf16.h"

#include <omp.h>

#include <vector>

#include "kernels/cpu/gemm.h"

namespace dtrain::cpu {
Bf16GemmPath gemm_bf16_path() { return Bf16GemmPath::kFallback; }
const char* gemm_bf16_path_name() { return "fp32 fallback"; }

void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int64_t ar = ta ? k : m, br = tb ? n : k;
  std::vector<float> fa(static_cast<size_t>(ar * lda)), fb(static_cast<size_t>(br * ldb));
  convert(a, ar * lda, fa.data());
  convert(b, br * ldb, fb.data());
  gemm<float>(ta, tb, m, n, k, alpha, fa.data(), lda, fb.data(), ldb, beta, c, ldc);
}

void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, bf16* c, int64_t ldc) {
  std::vector<float> fc(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) fc[i * n + j] = beta == 0.0f ? 0.0f : beta * float(c[i * ldc + j]);
  gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, 1.0f, fc.data(), n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = bf16(fc[i * n + j]);
}

void convert(const float* x, int64_t n, bf16* y) {
#pragma omp parallel for schedule(static) if (n > 65536 && !omp_in_parallel())
  for (int64_t i = 0; i < n; ++i) y[i] = bf16(x[i]);
}
void convert(const bf16* x, int64_t n, float* y) {
#pragma omp parallel for schedule(static) if (n > 65536 && !omp_in_parallel())
  for (int64_t i = 0; i < n; ++i) y[i] = float(x[i]);
}
}  // namespace dtrain::cpu
