// AdamW's fp32 update with AVX-512, 16 elements per instruction: the
// optimizer's pass over every parameter (masters, both moments, the gradient
// and, under bf16 mixed precision, the bf16 compute copy), which is the
// largest memory-bound item of a GPT step. The scalar loop (ops/optim.cpp,
// math::adamw_element) compiled by GCC with -march=native auto-vectorises
// nothing here (sqrt's errno path keeps it scalar), so this kernel does by
// hand exactly the operations GCC emits for that loop, in the same order and
// with the same fused multiply-adds, and gives the same bits:
//   gi = g * grad_scale
//   m  = fma(b1, m, (1 - b1) * gi)
//   v  = fma(b2, v, ((1 - b2) * gi) * gi)
//   w  = w * decay - (step_size * m) / fma(sqrt(v), inv_sqrt_bc2, eps)
// (the last line: a multiply, a division and a subtraction, not fused).
// tests/ops/optim_vec_test.cpp checks the bits against the scalar loop.
// Declarations only: adamw_avx512.cpp is compiled for AVX-512 (F, BW, VL) and FMA
// whatever the build's -march, so nothing inline from shared headers may be
// compiled there (as gemm_bf16_x86.h).
#pragma once

#include <cstdint>

namespace dtrain::cpu::x86 {

// The step's folded coefficients, as the scalar loop has them in float.
struct AdamWStepF32 {
  float b1, one_minus_b1, b2, one_minus_b2;
  float step_size, inv_sqrt_bc2, eps, grad_scale, decay;
};

// Elements [0, n) of w, m, v updated from g; when wc is not null, wc[i] =
// the updated w[i] rounded to bf16 (bits; core/bf16.h's rounding); when
// zero_g, g[i] = 0 once read. Single-threaded. Requires AVX512F and FMA.
void adamw_f32_avx512(const AdamWStepF32& c, float* w, float* g, float* m, float* v, uint16_t* wc, int64_t n,
                      bool zero_g);

// Whether this CPU can run it (compiled for any x86-64).
bool adamw_avx512_supported();

}  // namespace dtrain::cpu::x86
