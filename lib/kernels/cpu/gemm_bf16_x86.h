// The AMX and AVX512-BF16 kernels behind cpu::gemm_bf16 (gemm_bf16.h), and
// the vector bf16 <-> float conversions. Declarations only: gemm_bf16_x86.cpp
// is compiled for AVX-512 / AMX whatever the build's -march, so nothing inline
// may come from there into shared code. bf16 travels as its uint16_t bits here
// (core/bf16.h's inline functions must not be compiled in that file).
// Callers check the CPU first (gemm_bf16.cpp, plain x86-64 code).
#pragma once

#include <cstdint>

namespace dtrain::cpu::x86 {

// C = alpha * op(A) @ op(B) + beta * C into exactly one of c32 (fp32) or c16
// (bf16 bits; the fp32 result rounded once), on up to `threads` OpenMP
// threads. m, n, k >= 1. Return false when packing buffers could not be
// allocated; C is then untouched. Never throw.
// Requires AMX-BF16 with the tile data permission granted (arch_prctl).
bool gemm_bf16_amx(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a,
                   int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c32, uint16_t* c16,
                   int64_t ldc, int threads);
// Requires AVX512F, AVX512BW, AVX512VL and AVX512_BF16.
bool gemm_bf16_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c32,
                      uint16_t* c16, int64_t ldc, int threads);

// Single-threaded; require AVX512F and AVX512BW. Same bits as core/bf16.h.
void convert_f32_to_bf16(const float* x, int64_t n, uint16_t* y);
void convert_bf16_to_f32(const uint16_t* x, int64_t n, float* y);

}  // namespace dtrain::cpu::x86
