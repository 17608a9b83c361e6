#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/cpu/sgemm_avx512.h"

namespace dtrain::cpu {
namespace {

GemmBackend choose_backend() {
  const char* env = std::getenv("DTRAIN_CPU_GEMM");
  const std::string want = env ? env : "auto";
  const bool avx512 = sgemm_avx512_supported();
  if (want == "blas") return GemmBackend::kBlas;
  if (want == "avx512") {
    if (!avx512)
      throw ConfigError("environment DTRAIN_CPU_GEMM=avx512: this CPU has no AVX-512 (expected auto or blas)");
    return GemmBackend::kAvx512;
  }
  if (want != "auto" && !want.empty())
    throw ConfigError("environment DTRAIN_CPU_GEMM='" + want + "': expected auto, avx512 or blas");
  return avx512 ? GemmBackend::kAvx512 : GemmBackend::kBlas;
}

}  // namespace

GemmBackend gemm_backend() {
  static const GemmBackend backend = choose_backend();  // decided once, never changed
  return backend;
}

const char* gemm_backend_name() {
  return gemm_backend() == GemmBackend::kAvx512 ? "dtrain-avx512" : "openblas";
}

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (gemm_backend() == GemmBackend::kAvx512) {
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (!sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads))
      throw RuntimeError("sgemm: out of memory for the packing buffers");
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void set_num_threads(int n) {
  gemm_backend();  // a bad DTRAIN_CPU_GEMM fails here, at setup, not in the first step
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dtrain::cpu
