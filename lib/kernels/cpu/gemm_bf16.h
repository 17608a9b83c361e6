// bf16 matrix products on the CPU (provisional header; the kernels land from wip-gemm).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {
enum class Bf16GemmPath { kAmx, kAvx512Bf16, kFallback };
Bf16GemmPath gemm_bf16_path();
const char* gemm_bf16_path_name();
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, bf16* c, int64_t ldc);
void convert(const float* x, int64_t n, bf16* y);
void convert(const bf16* x, int64_t n, float* y);
}  // namespace dtrain::cpu
