#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/cpu/sgemm_avx512.h"

namespace dtrain::cpu {
namespace {

// The backend, or why DTRAIN_CPU_GEMM cannot be honoured (then OpenBLAS).
struct BackendChoice {
  GemmBackend backend = GemmBackend::kBlas;
  std::string error;
};

BackendChoice choose_backend() {
  const char* env = std::getenv("DTRAIN_CPU_GEMM");
  const std::string want = env ? env : "auto";
  const bool avx512 = sgemm_avx512_supported();
  BackendChoice c;
  if (want == "avx512" && !avx512)
    c.error = "environment DTRAIN_CPU_GEMM=avx512: this CPU has no AVX-512 (expected auto or blas)";
  else if (want != "auto" && want != "avx512" && want != "blas" && !want.empty())
    c.error = "environment DTRAIN_CPU_GEMM='" + want + "': expected auto, avx512 or blas";
  else if (avx512 && want != "blas")
    c.backend = GemmBackend::kAvx512;
  return c;
}

// Decided once, never changed; never throws (gemm runs inside parallel regions).
const BackendChoice& backend_choice() {
  static const BackendChoice choice = choose_backend();
  return choice;
}

}  // namespace

bool sgemm_avx512_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

GemmBackend gemm_backend() {
  const BackendChoice& c = backend_choice();
  if (!c.error.empty()) throw ConfigError(c.error);
  return c.backend;
}

const char* gemm_backend_name() {
  return gemm_backend() == GemmBackend::kAvx512 ? "dtrain-avx512" : "openblas";
}

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // No throwing here: kernels call gemm from inside their parallel loops. A
  // bad DTRAIN_CPU_GEMM was reported at setup (set_num_threads); should the
  // packing buffers not fit in memory, OpenBLAS (its own buffers) does it.
  if (backend_choice().backend == GemmBackend::kAvx512) {
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads)) return;
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

void set_num_threads(int n, int cores) {
  gemm_backend();  // a bad DTRAIN_CPU_GEMM fails here, at setup, not in the first step
  if (n <= 0) {  // train.threads = 0: OMP_NUM_THREADS where it gives a count (its first, as OpenMP reads it), else the cores
    const char* env = std::getenv("OMP_NUM_THREADS");
    char* end = nullptr;
    const long v = env ? std::strtol(env, &end, 10) : 0;
    n = v > 0 && v <= 4096 && end != env && (*end == '\0' || *end == ',') ? static_cast<int>(v)
        : cores > 0                                                          ? cores
                                                                             : omp_get_num_procs();
  }
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dtrain::cpu
