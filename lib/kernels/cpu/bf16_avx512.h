// bf16 rounding on 16 AVX-512 lanes, for the files compiled with AVX-512
// (gemm_bf16_x86.cpp, adamw_avx512.cpp; see lib/kernels/CMakeLists.txt).
#pragma once

#include <immintrin.h>

namespace dtrain::cpu::x86 {

// float -> bf16 bits, core/bf16.h's rounding on 16 lanes: to nearest even,
// NaN -> quiet NaN, denormals kept (VCVTNEPS2BF16 would flush them).
inline __m256i round_bf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}

}  // namespace dtrain::cpu::x86
