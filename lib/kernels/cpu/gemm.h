// Row-major GEMM on the CPU, for float and double.
// C = alpha * op(A) @ op(B) + beta * C, with op(X) = X or X^T.
// float: dtrain's AVX-512 kernel where the CPU has AVX-512 (measured against
// OpenBLAS in apps/bench/sgemm_peak.results.md), else cblas (OpenBLAS); the
// environment variable DTRAIN_CPU_GEMM=auto|avx512|blas overrides the choice.
// double (tests, finite differences): cblas.
// Inside an OpenMP parallel region both run single-threaded, so kernels may
// call gemm per (batch, head) from their own parallel loops.
#pragma once

#include <cstdint>

namespace dtrain::cpu {

enum class GemmBackend { kBlas, kAvx512 };
// The float GEMM's backend, decided on first use from the CPU and
// DTRAIN_CPU_GEMM; throws ConfigError for a bad value of the variable (which
// set_num_threads calls it to report at setup; gemm itself never throws and
// uses OpenBLAS then).
GemmBackend gemm_backend();
const char* gemm_backend_name();  // "dtrain-avx512" or "openblas"

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Number of threads BLAS and our OpenMP loops use. 0: OMP_NUM_THREADS where
// it gives a count, else `cores` (this rank's share of its node's cores, see
// MpiRuntime::cores_for_rank), else every core the process may run on.
void set_num_threads(int n, int cores = 0);
int num_threads();

}  // namespace dtrain::cpu
