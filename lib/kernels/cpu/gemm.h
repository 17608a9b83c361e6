// Row-major GEMM on the CPU through cblas (OpenBLAS), for float and double.
// C = alpha * op(A) @ op(B) + beta * C, with op(X) = X or X^T.
// Inside an OpenMP parallel region OpenBLAS's OpenMP build runs single-threaded,
// so kernels may call gemm per (batch, head) from their own parallel loops.
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
