// The bf16 matrix-product kernels (see gemm_bf16_x86.h). This file alone is
// compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mamx-tile
// -mamx-bf16; it includes only C headers and intrinsics and defines nothing
// outside an anonymous namespace but the functions of gemm_bf16_x86.h, so no
// wide instruction leaks into shared code, and each function runs only after
// gemm_bf16.cpp (plain code) checked the CPU. (The compiler emits AMX
// instructions only for the _tile_* intrinsics, so the AVX512-BF16 kernel
// runs on CPUs without AMX.)
//
// Structure (Goto/BLIS, as sgemm_avx512.cpp): for each NC-wide column block
// and KC-deep slice, op(B) is packed into NR-wide micro-panels in the VNNI
// pair layout both instructions read: pair row r holds, for each column j,
// the two bf16 (B[2r][j], B[2r+1][j]) as one 32-bit word. op(A) is packed per
// MC-tall block (once per product when it is one block and one slice: the
// GPTs' 256 tokens) into MR-tall micro-panels: for AMX as rows of 32 k (a tile
// row is 64 bytes), for AVX512-BF16 as pair words per row (broadcast one word,
// VDPBF16PS against a pair row of B). Edges are zero padding in the panels
// (k to a multiple of 32 for AMX, of 2 otherwise) and masked stores of C.
// - AMX: a 32 x 32 block of C in four 16 x 16 fp32 tiles (2 x 2), two A
//   tiles and two B tiles per 32-deep step: 4 TDPBF16PS per 4 KiB loaded.
// - AVX512-BF16: 8 x 48 or 12 x 32 floats of C in 24 zmm, as in the sgemm.
// C is accumulated in fp32 across KC slices: in C itself when C is fp32, else
// in a per-thread fp32 block that is rounded to bf16 (adding beta * C) once
// its k is done. The threads split C into a grid of blocks, never k; every
// element's sum runs in the same order whichever thread or tile computes it.
#include "kernels/cpu/gemm_bf16_x86.h"

// GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined_*().
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // GCC's name; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/bf16_avx512.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

namespace dtrain::cpu::x86 {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

inline __mmask16 lanes16(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return 0xFFFF;
  return static_cast<__mmask16>((1u << n) - 1);
}
inline __mmask32 lanes32(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 32) return 0xFFFFFFFFu;
  return static_cast<__mmask32>((1u << n) - 1);
}

struct Operand {
  const uint16_t* p;
  int64_t ld;
  bool trans;
};

struct Problem {
  Operand a, b;
  int64_t m, n, k;
  float alpha, beta;
  float* c32;
  uint16_t* c16;
  int64_t ldc;
  // The product computed is C^T = op(B)^T op(A)^T (a and b swapped, m and n
  // too): element (i, j) of the kernel's product is C[j][i].
  bool tout = false;
};

// 16 bf16 from s (the first `count`, zeros past them), widened to 16 words.
inline __m512i load16(const uint16_t* s, int64_t count) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(lanes16(count), s));
}
// Pair words: bf16 lo[i] in the low half, hi[i] in the high half.
inline __m512i pair_words(__m512i lo, __m512i hi) { return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)); }

// In-place 16 x 16 transpose of 32-bit words: v[r] lane c -> v[c] lane r.
inline void transpose16(__m512i* v) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castsi512_ps(v[i]);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
  for (int i = 0; i < 16; ++i) v[i] = _mm512_castps_si512(r[i]);
}

inline __m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// Depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into ceil(nc / W)
// panels of kp / 2 pair rows x W words (kp >= kc even; zeros past kc and nc).
void pack_b(const Operand& b, int64_t p0, int64_t kc, int64_t kp, int64_t j0, int64_t nc, int64_t w,
            uint16_t* dst) {
  const int64_t pairs = kp / 2;
  const __m512i zero = _mm512_setzero_si512();
  if (!b.trans) {  // op(B)(p, j) = B[p * ld + j]: two rows make a pair row
    // Row by row across all panels, so that B is read in one sequential
    // stream per row (panel by panel, each row would be a 64-byte visit per
    // page, which the hardware prefetchers do not follow). Full 32-column
    // stretches of both rows are interleaved by unpacks within 128-bit
    // lanes, then put in column order by a 64-bit permute.
    const __m512i lo_order = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i hi_order = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    for (int64_t r = 0; r < pairs; ++r) {
      const int64_t p = 2 * r;
      const uint16_t* s0 = b.p + (p0 + p) * b.ld + j0;
      const uint16_t* s1 = s0 + b.ld;
      for (int64_t c = 0; c < nc; c += w) {
        const int64_t nv = min64(w, nc - c);
        uint16_t* d = dst + c * kp + r * w * 2;
        int64_t h = 0;
        if (p + 1 < kc)
          for (; h + 32 <= w && h + 32 <= nv; h += 32) {
            const __m512i r0 = _mm512_loadu_si512(s0 + c + h);
            const __m512i r1 = _mm512_loadu_si512(s1 + c + h);
            const __m512i lo = _mm512_unpacklo_epi16(r0, r1), hi = _mm512_unpackhi_epi16(r0, r1);
            _mm512_storeu_si512(d + 2 * h, _mm512_permutex2var_epi64(lo, lo_order, hi));
            _mm512_storeu_si512(d + 2 * h + 32, _mm512_permutex2var_epi64(lo, hi_order, hi));
          }
        for (; h < w; h += 16) {
          const __m512i lo = p < kc ? load16(s0 + c + h, nv - h) : zero;
          const __m512i hi = p + 1 < kc ? load16(s1 + c + h, nv - h) : zero;
          _mm512_storeu_si512(d + 2 * h, pair_words(lo, hi));
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < nc; c += w) {
    const int64_t nv = min64(w, nc - c);
    uint16_t* d = dst + c * kp;
    // op(B)(p, j) = B[j * ld + p]: row j of B holds column j's pair words
    const uint16_t* s = b.p + (j0 + c) * b.ld + p0;
    // 16 rows of B at a time, each read along all of its k: 16 sequential
    // streams, where k outer had all w rows (48) in flight, 64 bytes each per
    // step. 124M x W^T shapes, 1 thread: +3-5%.
    for (int64_t h = 0; h < w; h += 16) {
      for (int64_t r0 = 0; r0 < pairs; r0 += 16) {
        const __mmask32 mk = lanes32(kc - 2 * r0);
        __m512i v[16];
        for (int j = 0; j < 16; ++j)
          v[j] = h + j < nv ? _mm512_maskz_loadu_epi16(mk, s + (h + j) * b.ld + 2 * r0) : zero;
        transpose16(v);
        for (int r = 0; r < 16 && r0 + r < pairs; ++r) _mm512_storeu_si512(d + (r0 + r) * w * 2 + 2 * h, v[r]);
      }
    }
  }
}

// Where a micro-kernel's tile goes: fp32 (f) or bf16 (h, rounded once), each
// element (i, j) of the kernel's product at i * ld + j, or at j * ld + i when
// the product computed is C^T (tout).
struct Target {
  float* f;
  uint16_t* h;
  int64_t ld;
  bool tout;
  Target at(int64_t i, int64_t j) const {
    const int64_t o = tout ? j * ld + i : i * ld + j;
    return {f ? f + o : nullptr, h ? h + o : nullptr, ld, tout};
  }
};

// Rows [0, rows) x columns [0, cols) of the target (not transposed) =
// alpha * t + beta * target, t rows of ldt floats.
inline void store_rows(const float* t, int64_t ldt, int nvec, const Target& c, int64_t rows, int64_t cols,
                       float alpha, float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t i = 0; i < rows; ++i)
    for (int v = 0; v < nvec; ++v) {
      const __mmask16 m = lanes16(cols - 16 * v);
      if (!m) break;
      __m512 r = _mm512_mul_ps(va, _mm512_load_ps(t + i * ldt + 16 * v));
      if (c.f) {
        float* p = c.f + i * c.ld + 16 * v;
        if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, p), r);
        _mm512_mask_storeu_ps(p, m, r);
      } else {
        uint16_t* p = c.h + i * c.ld + 16 * v;
        if (beta != 0.f) r = _mm512_fmadd_ps(vb, widen_bf16(_mm256_maskz_loadu_epi16(m, p)), r);
        _mm256_mask_storeu_epi16(p, m, round_bf16(r));
      }
    }
}

// The kernel's mv x nv tile t (rows of nr floats; mr x nr, multiples of 16)
// into the target, through 16 x 16 transposes when it is transposed.
inline void store_tile(const float* t, int64_t mr, int64_t nr, const Target& c, int64_t mv, int64_t nv, float alpha,
                       float beta) {
  if (!c.tout) {
    store_rows(t, nr, static_cast<int>(nr / 16), c, mv, nv, alpha, beta);
    return;
  }
  alignas(64) float tt[32 * 48];  // nr x mr
  for (int64_t i = 0; i < mr; i += 16)
    for (int64_t j = 0; j < nr; j += 16) {
      __m512i v[16];
      for (int r = 0; r < 16; ++r) v[r] = _mm512_castps_si512(_mm512_load_ps(t + (i + r) * nr + j));
      transpose16(v);
      for (int r = 0; r < 16; ++r) _mm512_store_ps(tt + (j + r) * mr + i, _mm512_castsi512_ps(v[r]));
    }
  store_rows(tt, mr, static_cast<int>(mr / 16), c, nv, mv, alpha, beta);
}

// ---- AMX ----

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

struct Amx {
  static constexpr int64_t kMR = 32, kNR = 32;
  static constexpr int64_t kKAlign = 32;          // a tile row: 32 bf16
  static constexpr int64_t kKC = 512;             // B micro-panel 32 KiB (L1), A block 256 KiB (L2)
  static constexpr int64_t kMC = 256;
  static constexpr int64_t kNC = 1024;
  static constexpr int64_t kBOnce = kNC * 1024;  // see Avx (never less than kNC wide)
  static constexpr int64_t kShallowK = 0;         // see Avx (A panel outer anyway)
  static constexpr int64_t kShallowMinC = 0;
  static constexpr int64_t kRowChunk = 1024;      // rows of the fp32 block behind a bf16 C (B is packed once per chunk)
  static constexpr int64_t kMinFlopsPerThread = int64_t(1) << 23;
  // Tiles row by row (A panel outer): 5-15% faster than column by column on
  // the weight-gradient shapes here, the same elsewhere (bgemm_peak, 1 thread).
  static constexpr bool kAPanelOuter = true;

  // Every tile 16 rows x 64 bytes: tmm0-3 C, tmm4-5 A, tmm6-7 B.
  static void begin() {
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) {
      cfg.colsb[t] = 64;
      cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
  }
  static void end() { _tile_release(); }

  // Rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into ceil(mc / 32)
  // panels of kp / 32 blocks of 32 rows x 32 k (zeros past mc and kc).
  static void pack_a(const Operand& a, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int64_t kp, uint16_t* dst) {
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t r = 0; r < mc; r += kMR) {
      const int64_t mv = min64(kMR, mc - r);
      uint16_t* d = dst + r * kp;
      if (!a.trans) {  // rows of A are rows of the tile
        // Row by row (one sequential stream each), as pack_b.
        const uint16_t* s = a.p + (i0 + r) * a.ld + p0;
        for (int64_t i = 0; i < kMR; ++i)
          for (int64_t kb = 0; kb < kp; kb += 32)
            _mm512_storeu_si512(d + kb * kMR + i * 32,
                                i < mv ? _mm512_maskz_loadu_epi16(lanes32(kc - kb), s + i * a.ld + kb) : zero);
      } else {  // A is k x m: pair words over 16 rows, then a transpose
        const uint16_t* s = a.p + p0 * a.ld + i0 + r;
        for (int64_t kb = 0; kb < kp; kb += 32)
          for (int64_t h = 0; h < kMR; h += 16) {
            __m512i v[16];
            for (int q = 0; q < 16; ++q) {
              const int64_t p = kb + 2 * q;
              const __m512i lo = p < kc ? load16(s + p * a.ld + h, mv - h) : zero;
              const __m512i hi = p + 1 < kc ? load16(s + (p + 1) * a.ld + h, mv - h) : zero;
              v[q] = pair_words(lo, hi);
            }
            transpose16(v);  // v[i]: the 32 k of row h + i
            for (int i = 0; i < 16; ++i) _mm512_storeu_si512(d + kb * kMR + (h + i) * 32, v[i]);
          }
      }
    }
  }

  // A full 32 x 32 tile of C with alpha 1 and beta 0 or 1 (every tile but
  // the edges of the product, for the usual products) accumulates in the tiles
  // themselves, C loaded and stored by the tile unit; any other goes through
  // an fp32 block and store_c. Which tiles are full depends only on m and n
  // (blocks and thread splits are cut at multiples of 32), so the bits do not
  // depend on the thread count.
  static void micro(int64_t kp, const uint16_t* pa, const uint16_t* pb, const Target& ct, int64_t mv, int64_t nv,
                    float alpha, float beta) {
    const bool direct =
        ct.f && !ct.tout && mv == kMR && nv == kNR && alpha == 1.f && (beta == 0.f || beta == 1.f);
    float* c = ct.f;
    const int64_t ldc = ct.ld;
    if (direct && beta == 1.f) {
      _tile_loadd(0, c, ldc * 4);
      _tile_loadd(1, c + 16, ldc * 4);
      _tile_loadd(2, c + 16 * ldc, ldc * 4);
      _tile_loadd(3, c + 16 * ldc + 16, ldc * 4);
    } else {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    }
    for (int64_t kb = 0; kb < kp; kb += 32) {
      const uint16_t* a = pa + kb * kMR;  // 32 rows x 32 k
      const uint16_t* b = pb + kb * kNR;  // 16 pair rows x 32 words
      _tile_loadd(4, a, 64);
      _tile_loadd(6, b, 128);
      _tile_loadd(7, b + 32, 128);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(5, a + 16 * 32, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    if (direct) {
      _tile_stored(0, c, ldc * 4);
      _tile_stored(1, c + 16, ldc * 4);
      _tile_stored(2, c + 16 * ldc, ldc * 4);
      _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
      return;
    }
    alignas(64) float t[32 * 32];
    _tile_stored(0, t, 128);
    _tile_stored(1, t + 16, 128);
    _tile_stored(2, t + 16 * 32, 128);
    _tile_stored(3, t + 16 * 32 + 16, 128);
    store_tile(t, kMR, kNR, ct, mv, nv, alpha, beta);
  }
};

// ---- AVX512-BF16 ----

template <int MR_, int NV_>
struct Avx {
  static constexpr int64_t kMR = MR_, kNV = NV_, kNR = 16 * NV_;
  static constexpr int64_t kKAlign = 2;
  static constexpr int64_t kKC = 512;  // B micro-panel 48 x 512 bf16 = 48 KiB
  // 256 rows for the 8-row tile: the GPTs' 4 x 64 tokens in one block,
  // packed once per product (run_block) instead of once per column block.
  static constexpr int64_t kMC = kMR * 32;
  static constexpr int64_t kNC = kNR * 32;
  // The most bf16 of packed B in a column block when A is packed once
  // (run_block): 384 x 768 (576 KiB) stays in L2 from its packing to its use
  // beside A's 384 KiB; 1536 x 768 went to L3 and back. 124M x W^T and g W
  // shapes, 1 thread: +5-10%.
  static constexpr int64_t kBOnce = 384 * 768;
  // A slice at most this deep, over a C block larger than L2, runs A panel
  // outer (an A panel in L1, the B block from L2, C row panel by row panel):
  // the weight gradients (k = 256 tokens), whose C (fp32, beta 1) is as much
  // traffic as A and B; B panel outer walked C down in 8-row steps. 124M
  // g^T x shapes, 1 thread: +10-15%. (The CNN's small products: no gain.)
  static constexpr int64_t kShallowK = 384;
  static constexpr int64_t kShallowMinC = int64_t(1) << 18;  // floats: 1 MiB
  static constexpr int64_t kRowChunk = kMC;
  static constexpr int64_t kMinFlopsPerThread = int64_t(1) << 22;
  static constexpr bool kAPanelOuter = false;  // as the sgemm (B block of 1.5 MiB: L2 on Zen 5 is 1 MiB)
  static void begin() {}
  static void end() {}

  // Rows [i0, i0 + mc) x depth [p0, p0 + kc) into ceil(mc / MR) panels of
  // kp / 2 pair rows x MR words.
  static void pack_a(const Operand& a, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int64_t kp, uint16_t* dst) {
    const int64_t pairs = kp / 2;
    const __m512i zero = _mm512_setzero_si512();
    const __mmask16 store = lanes16(kMR);
    for (int64_t r = 0; r < mc; r += kMR) {
      const int64_t mv = min64(kMR, mc - r);
      uint16_t* d = dst + r * kp;
      if (a.trans) {  // A is k x m: rows p, p + 1 give a pair row directly
        const uint16_t* s = a.p + p0 * a.ld + i0 + r;
        for (int64_t q = 0; q < pairs; ++q) {
          const int64_t p = 2 * q;
          const __m512i lo = p < kc ? load16(s + p * a.ld, mv) : zero;
          const __m512i hi = p + 1 < kc ? load16(s + (p + 1) * a.ld, mv) : zero;
          _mm512_mask_storeu_epi32(d + q * kMR * 2, store, pair_words(lo, hi));
        }
      } else {  // rows of A hold pair words along k: a transpose
        const uint16_t* s = a.p + (i0 + r) * a.ld + p0;
        for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
          const __mmask32 mk = lanes32(kc - 2 * q0);
          __m512i v[16];
          for (int i = 0; i < 16; ++i) v[i] = i < mv ? _mm512_maskz_loadu_epi16(mk, s + i * a.ld + 2 * q0) : zero;
          transpose16(v);
          for (int q = 0; q < 16 && q0 + q < pairs; ++q) _mm512_mask_storeu_epi32(d + (q0 + q) * kMR * 2, store, v[q]);
        }
      }
    }
  }

  static void micro(int64_t kp, const uint16_t* __restrict pa, const uint16_t* __restrict pb, const Target& ct,
                    int64_t mv, int64_t nv, float alpha, float beta) {
    // C read back (beta != 0: the weight gradients) arrives during the k loop.
    if (ct.f && beta != 0.f && mv == kMR && nv == kNR)
#pragma GCC unroll 16
      for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) _mm_prefetch(reinterpret_cast<const char*>(ct.f + i * ct.ld + 16 * v), _MM_HINT_T0);
    __m512 acc[kMR][kNV];
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kp / 2; ++q) {
      __m512bh bv[kNV];
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(pb + 32 * v);
#pragma GCC unroll 16
      for (int i = 0; i < kMR; ++i) {
        int32_t w;
        memcpy(&w, pa + 2 * i, sizeof w);
        const __m512bh ai = (__m512bh)_mm512_set1_epi32(w);
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
      }
      pa += 2 * kMR;
      pb += 2 * kNR;
    }
    if (ct.f && mv == kMR && nv == kNR && alpha == 1.f) {
      // A full fp32 tile straight from the registers (the same arithmetic as
      // store_rows: 1 * acc is acc): with the convolutions' short k (16-64),
      // the round trip through t cost a fifth of the kernel's time.
      float* c = ct.f;
      const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
      for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) {
          float* p = c + i * ct.ld + 16 * v;
          _mm512_storeu_ps(p, beta != 0.f ? _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), acc[i][v]) : acc[i][v]);
        }
      return;
    }
    alignas(64) float t[kMR * kNR];
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) _mm512_store_ps(t + i * kNR + 16 * v, acc[i][v]);
    store_rows(t, kNR, kNV, ct, mv, nv, alpha, beta);  // never transposed (gemm_bf16_avx512)
  }
};

// ---- the driver, for either kernel ----

// C[i][j] (bf16) = round(acc[i][j] + beta * C[i][j]) for the block.
void finish_bf16(const float* acc, int64_t lda, int64_t rows, int64_t cols, float beta, uint16_t* c, int64_t ldc) {
  const __m512 vb = _mm512_set1_ps(beta);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = lanes16(cols - j);
      __m512 v = _mm512_maskz_loadu_ps(m, acc + i * lda + j);
      uint16_t* cp = c + i * ldc + j;
      if (beta != 0.f) v = _mm512_fmadd_ps(vb, widen_bf16(_mm256_maskz_loadu_epi16(m, cp)), v);
      _mm256_mask_storeu_epi16(cp, m, round_bf16(v));
    }
}

// C block [i0, i0 + mb) x [j0, j0 + nb) with this thread's buffers.
// The depth of the k slices: K::kKC, or all of k where that is at most twice
// as deep (one slice: a bf16 C is then rounded straight from the tiles).
// Depends on k only, so every element sums in the same order in any thread.
template <class K>
int64_t slice_depth(int64_t k) {
  return k <= 2 * K::kKC ? k : K::kKC;
}

template <class K>
void run_block(const Problem& P, int64_t i0, int64_t mb, int64_t j0, int64_t nb, uint16_t* pa, uint16_t* pb,
               float* scratch) {
  const int64_t kcmax = slice_depth<K>(P.k);
  // A bf16 C over several slices accumulates in an fp32 block (scratch,
  // chunk x kNC at most, in C's layout), rounded once its k is done.
  const bool via_scratch = P.c16 && P.k > kcmax;
  const int64_t chunk = via_scratch ? K::kRowChunk : mb;
  const Target whole{P.c32, via_scratch ? nullptr : P.c16, P.ldc, P.tout};
  for (int64_t rc = 0; rc < mb; rc += chunk) {
    const int64_t rows = min64(chunk, mb - rc);
    // One slice and one row block (few rows: the GPTs' tokens): the packed A
    // is the same for every column block, so it is packed once.
    const bool a_once = P.k <= kcmax && rows <= K::kMC;
    bool a_packed = false;
    const int64_t once_panels = min64(K::kBOnce / (K::kNR * round_up(P.k, K::kKAlign)), K::kNC / K::kNR);
    const int64_t ncb = a_once && once_panels >= 1 ? K::kNR * once_panels : K::kNC;
    for (int64_t jc = 0; jc < nb; jc += ncb) {
      const int64_t nc = min64(ncb, nb - jc);
      const Target cc = via_scratch ? Target{scratch, nullptr, P.tout ? min64(chunk, mb) : K::kNC, P.tout}
                                    : whole.at(i0 + rc, j0 + jc);
      for (int64_t pc = 0; pc < P.k; pc += kcmax) {
        const int64_t kc = min64(kcmax, P.k - pc), kp = round_up(kc, K::kKAlign);
        pack_b(P.b, pc, kc, kp, j0 + jc, nc, K::kNR, pb);
        const float beta_here = pc > 0 ? 1.f : via_scratch ? 0.f : P.beta;
        for (int64_t ic = 0; ic < rows; ic += K::kMC) {
          const int64_t mc = min64(K::kMC, rows - ic);
          if (!a_packed) K::pack_a(P.a, i0 + rc + ic, mc, pc, kc, kp, pa);
          a_packed = a_once;
          const auto tile = [&](int64_t ir, int64_t jr) {
            K::micro(kp, pa + ir * kp, pb + jr * kp, cc.at(ic + ir, jr), min64(K::kMR, mc - ir),
                     min64(K::kNR, nc - jr), P.alpha, beta_here);
          };
          const bool a_outer = K::kAPanelOuter || (kc <= K::kShallowK && rows * nc >= K::kShallowMinC);
          if (a_outer) {  // an A panel in L1, the B block from L2
            for (int64_t ir = 0; ir < mc; ir += K::kMR)
              for (int64_t jr = 0; jr < nc; jr += K::kNR) tile(ir, jr);
          } else {  // a B panel in L1, the A block from L2
            for (int64_t jr = 0; jr < nc; jr += K::kNR)
              for (int64_t ir = 0; ir < mc; ir += K::kMR) tile(ir, jr);
          }
        }
      }
      if (via_scratch) {
        if (P.tout)
          finish_bf16(scratch, cc.ld, nc, rows, P.beta, P.c16 + (j0 + jc) * P.ldc + i0 + rc, P.ldc);
        else
          finish_bf16(scratch, cc.ld, rows, nc, P.beta, P.c16 + (i0 + rc) * P.ldc + j0 + jc, P.ldc);
      }
    }
  }
}

// Part `idx` of `parts` of [0, total), cut at multiples of `unit`.
void split(int64_t total, int64_t unit, int64_t parts, int64_t idx, int64_t& begin, int64_t& len) {
  const int64_t units = ceil_div(total, unit), per = units / parts, extra = units % parts;
  const int64_t ub = idx * per + min64(idx, extra), ue = ub + per + (idx < extra ? 1 : 0);
  begin = min64(ub * unit, total);
  len = min64(ue * unit, total) - begin;
}

void* alloc64(int64_t bytes) { return aligned_alloc(64, static_cast<size_t>(round_up(bytes, 64))); }

template <class K>
struct Buffers {
  uint16_t* pa = nullptr;
  uint16_t* pb = nullptr;
  float* scratch = nullptr;
  bool need_scratch = false;
  Buffers(int64_t m, int64_t n, int64_t k, bool bf16_out) : need_scratch(bf16_out) {
    if (m <= 0 || n <= 0 || k <= 0) return;
    const int64_t kp = round_up(slice_depth<K>(k), K::kKAlign);
    pa = static_cast<uint16_t*>(alloc64(round_up(min64(K::kMC, m), K::kMR) * kp * 2));
    pb = static_cast<uint16_t*>(alloc64(round_up(min64(K::kNC, n), K::kNR) * kp * 2));
    if (bf16_out) scratch = static_cast<float*>(alloc64(min64(K::kRowChunk, m) * K::kNC * 4));
  }
  ~Buffers() {
    free(pa);
    free(pb);
    free(scratch);
  }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  bool ok() const { return pa && pb && (scratch || !need_scratch); }
};

template <class K>
bool run(const Problem& P, int threads) {
  int64_t t = min64(threads > 0 ? threads : 1, 2 * P.m * P.n * P.k / K::kMinFlopsPerThread);
  if (t < 1) t = 1;
  // The grid tm x tn whose largest block holds the fewest tiles; ties go to
  // splitting the longer side, whose operand is the larger one (each thread
  // then packs only its part of it: the other is packed by every thread).
  int64_t tm = 1, tn = t, best = -1;
  for (int64_t cn = t; cn >= 1; --cn) {
    if (t % cn) continue;
    const int64_t cm = t / cn;
    const int64_t work = ceil_div(ceil_div(P.m, K::kMR), cm) * ceil_div(ceil_div(P.n, K::kNR), cn);
    const bool better_tie = work == best && (P.m > P.n ? cm > tm : cn > tn);
    if (best < 0 || work < best || better_tie) best = work, tm = cm, tn = cn;
  }
  bool failed = false;  // a thread could not allocate: then nobody writes C
#pragma omp parallel num_threads(static_cast<int>(t)) if (t > 1)
  {
    const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t gm = nt == t ? tm : 1, gn = nt == t ? tn : nt;
    int64_t i0, mb, j0, nb;
    split(P.m, K::kMR, gm, id / gn, i0, mb);
    split(P.n, K::kNR, gn, id % gn, j0, nb);
    const bool mine = mb > 0 && nb > 0;
    Buffers<K> buf(mine ? mb : 0, mine ? nb : 0, mine ? P.k : 0, P.c16 != nullptr);
    if (mine && !buf.ok()) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp barrier
    bool any_failed;
#pragma omp atomic read
    any_failed = failed;
    if (mine && !any_failed) {
      K::begin();
      run_block<K>(P, i0, mb, j0, nb, buf.pa, buf.pb, buf.scratch);
      K::end();
    }
  }
  return !failed;
}

template <class K>
int64_t padded(int64_t m, int64_t n) {
  return round_up(m, K::kMR) * round_up(n, K::kNR);
}

}  // namespace

bool gemm_bf16_amx(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a,
                   int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c32, uint16_t* c16,
                   int64_t ldc, int threads) {
  // x W^T with fewer rows than columns (the layers' forward: tokens x
  // features): the weights' rows hold k contiguously, as AMX's A tiles want,
  // while packing them as B tiles would transpose all of them; so compute
  // C^T = W x^T and transpose the (smaller) result instead.
  if (!trans_a && trans_b && m < n) {
    const Problem P{{b, ldb, false}, {a, lda, true}, n, m, k, alpha, beta, c32, c16, ldc, true};
    return run<Amx>(P, threads);
  }
  const Problem P{{a, lda, trans_a}, {b, ldb, trans_b}, m, n, k, alpha, beta, c32, c16, ldc};
  return run<Amx>(P, threads);
}

bool gemm_bf16_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c32,
                      uint16_t* c16, int64_t ldc, int threads) {
  const Problem P{{a, lda, trans_a}, {b, ldb, trans_b}, m, n, k, alpha, beta, c32, c16, ldc};
  using Wide = Avx<8, 3>;
  using Tall = Avx<12, 2>;
  // The wide tile unless the tall one wastes clearly less on padding (as the sgemm).
  if (20 * padded<Tall>(m, n) < 19 * padded<Wide>(m, n)) return run<Tall>(P, threads);
  return run<Wide>(P, threads);
}

void convert_f32_to_bf16(const float* x, int64_t n, uint16_t* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), round_bf16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = lanes16(n - i);
    _mm256_mask_storeu_epi16(y + i, m, round_bf16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void convert_bf16_to_f32(const uint16_t* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
  if (i < n) {
    const __mmask16 m = lanes16(n - i);
    _mm512_mask_storeu_ps(y + i, m, widen_bf16(_mm256_maskz_loadu_epi16(m, x + i)));
  }
}

}  // namespace dtrain::cpu::x86
