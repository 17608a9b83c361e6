// AdamW's fp32 update with AVX-512 (see adamw_avx512.h). This file alone is
// compiled with -mavx512f -mavx512bw -mavx512vl -mfma; it includes only C headers and intrinsics,
// and runs only after adamw_avx512_supported() said yes.
#include "kernels/cpu/adamw_avx512.h"

// GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined_*().
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // GCC's name; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/bf16_avx512.h"

namespace dtrain::cpu::x86 {
namespace {


struct Coeffs {
  __m512 b1, omb1, b2, omb2, step, isb, eps, gs, decay;
};

// Lanes `k` of elements [i, i + 16): every lane runs the same operations, so a
// masked tail gives the bits a full vector would.
template <bool Masked>
inline void update16(const Coeffs& c, float* w, float* g, float* m, float* v, uint16_t* wc, int64_t i,
                     __mmask16 k, bool zero_g) {
  __m512 gv, mv, vv, wv;
  if constexpr (Masked) {
    gv = _mm512_maskz_loadu_ps(k, g + i);
    mv = _mm512_maskz_loadu_ps(k, m + i);
    vv = _mm512_maskz_loadu_ps(k, v + i);
    wv = _mm512_maskz_loadu_ps(k, w + i);
  } else {
    gv = _mm512_loadu_ps(g + i);
    mv = _mm512_loadu_ps(m + i);
    vv = _mm512_loadu_ps(v + i);
    wv = _mm512_loadu_ps(w + i);
  }
  const __m512 gi = _mm512_mul_ps(gv, c.gs);
  mv = _mm512_fmadd_ps(c.b1, mv, _mm512_mul_ps(c.omb1, gi));
  vv = _mm512_fmadd_ps(c.b2, vv, _mm512_mul_ps(_mm512_mul_ps(c.omb2, gi), gi));
  const __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vv), c.isb, c.eps);
  const __m512 q = _mm512_div_ps(_mm512_mul_ps(c.step, mv), den);
  wv = _mm512_sub_ps(_mm512_mul_ps(wv, c.decay), q);
  if constexpr (Masked) {
    _mm512_mask_storeu_ps(m + i, k, mv);
    _mm512_mask_storeu_ps(v + i, k, vv);
    _mm512_mask_storeu_ps(w + i, k, wv);
    if (wc) _mm256_mask_storeu_epi16(wc + i, k, round_bf16(wv));
    if (zero_g) _mm512_mask_storeu_ps(g + i, k, _mm512_setzero_ps());
  } else {
    _mm512_storeu_ps(m + i, mv);
    _mm512_storeu_ps(v + i, vv);
    _mm512_storeu_ps(w + i, wv);
    if (wc) _mm256_storeu_si256(reinterpret_cast<__m256i*>(wc + i), round_bf16(wv));
    if (zero_g) _mm512_storeu_ps(g + i, _mm512_setzero_ps());
  }
}

}  // namespace

void adamw_f32_avx512(const AdamWStepF32& s, float* w, float* g, float* m, float* v, uint16_t* wc, int64_t n,
                      bool zero_g) {
  const Coeffs c{_mm512_set1_ps(s.b1),           _mm512_set1_ps(s.one_minus_b1), _mm512_set1_ps(s.b2),
                 _mm512_set1_ps(s.one_minus_b2), _mm512_set1_ps(s.step_size),    _mm512_set1_ps(s.inv_sqrt_bc2),
                 _mm512_set1_ps(s.eps),          _mm512_set1_ps(s.grad_scale),   _mm512_set1_ps(s.decay)};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) update16<false>(c, w, g, m, v, wc, i, 0xFFFF, zero_g);
  if (i < n) update16<true>(c, w, g, m, v, wc, i, static_cast<__mmask16>((1u << (n - i)) - 1), zero_g);
}

}  // namespace dtrain::cpu::x86
