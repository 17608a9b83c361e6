// dtrain's own single-precision GEMM for CPUs with AVX-512 (BLIS/Goto
// structure: packed panels of A and B sized for the caches, an 8 x 48 or
// 12 x 32 register-blocked micro-kernel, the threads splitting C into blocks).
// Row-major, C = alpha * op(A) @ op(B) + beta * C, the cblas_sgemm contract.
//
// Why not only OpenBLAS: Debian's OpenBLAS picks its kernels per CPU and can
// be held to its AVX2 kernels (OPENBLAS_CORETYPE, or a CPU it does not know),
// which halves a 512-bit machine's rate. This kernel is measured against
// OpenBLAS on every shape the models use (apps/bench/sgemm_peak.cpp, results
// in apps/bench/sgemm_peak.results.md); cpu::gemm chooses between the two.
#pragma once

#include <cstdint>

namespace dtrain::cpu {

// Whether this CPU (and OS) can run the AVX-512 kernel (defined in gemm.cpp,
// compiled for any x86-64).
bool sgemm_avx512_supported();

// Uses up to `threads` OpenMP threads (1 inside a parallel region is the
// caller's business: pass 1 there). Requires sgemm_avx512_supported().
// Returns false when its packing buffers could not be allocated; C is then
// untouched (every thread allocates before any writes). Never throws.
bool sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, int threads);

}  // namespace dtrain::cpu
