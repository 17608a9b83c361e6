// Matrix products with bf16 inputs and fp32 accumulation on the CPU: the
// matrix products of bf16 mixed precision (bf16 weights' compute copy, bf16
// activations and activation gradients; fp32 weight gradients).
// C = alpha * op(A) @ op(B) + beta * C, row-major, op(X) = X or X^T, every
// product of two bf16 values summed in fp32.
//
// Three paths, chosen once at run time from the CPU (one binary runs on all):
// - AMX bf16 (Intel Sapphire Rapids and later): 16 x 16 fp32 accumulator tiles
//   fed by TDPBF16PS, gemm_bf16_x86.cpp;
// - AVX512-BF16 (AMD Zen 4/5, Intel Cooper Lake and later): VDPBF16PS in a
//   register-tiled kernel like the fp32 sgemm's, gemm_bf16_x86.cpp;
// - fp32 fallback: op(A) and op(B) converted to fp32 panels, then cpu::gemm<float>.
// The environment variable DTRAIN_CPU_GEMM_BF16=auto|amx|avx512bf16|fallback
// forces one. Inside an OpenMP parallel region a product runs single-threaded,
// else on omp_get_max_threads() threads. Each C element is summed in a fixed k
// order and the threads split C, never k: the bits do not depend on the thread
// count (the fallback: where cpu::gemm<float> is dtrain's AVX-512 kernel;
// OpenBLAS, on CPUs without AVX-512 or with DTRAIN_CPU_GEMM=blas, makes no such
// promise). They do depend on the path (the hardware orders each pair's two
// products differently, and AMX / VDPBF16PS treat bf16 denormal inputs as 0).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

enum class Bf16GemmPath { kAmx, kAvx512Bf16, kFallback };

// The path in use: chosen once from the CPU and DTRAIN_CPU_GEMM_BF16; throws
// ConfigError for a bad value or a path this CPU lacks (gemm_bf16 itself never
// throws, it uses the fallback then: callers report at setup).
Bf16GemmPath gemm_bf16_path();
const char* gemm_bf16_path_name();  // "AMX bf16", "AVX512-BF16", "fp32 fallback"
const char* gemm_bf16_path_name(Bf16GemmPath path);
// Whether this CPU (and OS) can run `path` (the fallback: always).
bool gemm_bf16_path_supported(Bf16GemmPath path);

// C (m, n) fp32. beta == 0 never reads C (NaN in C is fine); k == 0 or
// alpha == 0 make C = beta * C.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc);
// C (m, n) bf16: the fp32 result (alpha * AB + beta * C read as float)
// rounded once to bf16.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, bf16* c, int64_t ldc);

// The same on a given path, whatever DTRAIN_CPU_GEMM_BF16 says (tests and
// benchmarks); throws ConfigError where the CPU lacks the path.
void gemm_bf16_on(Bf16GemmPath path, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm_bf16_on(Bf16GemmPath path, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, bf16* c, int64_t ldc);

// Conversions, vectorised where the CPU has AVX-512, bit-identical to
// core/bf16.h's scalar rounding (to nearest even, NaN kept NaN, denormals
// kept): the optimizer writes the bf16 weight copy with this. Multi-threaded
// for large n outside a parallel region.
void convert(const float* x, int64_t n, bf16* y);
void convert(const bf16* x, int64_t n, float* y);

}  // namespace dtrain::cpu
