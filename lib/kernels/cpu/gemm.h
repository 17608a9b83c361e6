// Row-major GEMM on the CPU, for float and double: fp32 through oneDNN's sgemm
// when the build found it (AVX-512 JIT kernels; see lib/kernels/CMakeLists.txt),
// otherwise, and for fp64, through cblas (OpenBLAS).
// C = alpha * op(A) @ op(B) + beta * C, with op(X) = X or X^T.
// Both use the OpenMP pool and run single-threaded inside an OpenMP parallel
// region, so kernels may call gemm per (batch, head) from their own parallel
// loops. Results are deterministic for a given thread count.
#pragma once

#include <cstdint>

namespace dtrain::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Number of threads BLAS and our OpenMP loops use (0 = all cores).
void set_num_threads(int n);
int num_threads();

}  // namespace dtrain::cpu
