#include "kernels/cpu/conv.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__)
// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized on its own _mm512_undefined_*().
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // GCC's name; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include "kernels/cpu/bf16_avx512.h"
#define DTRAIN_CONV_AVX512_BF16_ROWS 1
#endif

#include <omp.h>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/vmath.h"

namespace dtrain::cpu {

namespace {

// Columns one GEMM should see at least; fewer make OpenBLAS's packing dominate.
constexpr int64_t kTargetColumns = 256;

int64_t chunks_for(int64_t n) { return std::min(n, kConvChunks); }
int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

// How one image's output positions are laid out in the column matrix.
// Compact: Ho rows of Wo. Wide (stride 1 with padding, at large widths): Ho
// rows of the padded width Wp, so that every im2col row is a single copy and
// every col2im row a single add; the Wp - Wo extra columns per row are junk,
// dropped when the output is scattered (forward) and zero in the gathered
// output gradient (backward).
struct Layout {
  int64_t hp, wp, plane;  // padded image
  int64_t pitch;          // columns per output row: Wo (compact) or Wp (wide)
  int64_t cols;           // columns per image: Ho * pitch
  bool wide;
  explicit Layout(const ConvGeom& g) {
    hp = g.h + 2 * g.pad;
    wp = g.w + 2 * g.pad;
    plane = hp * wp;
    wide = g.stride == 1 && g.pad > 0 && 10 * (wp - g.wo()) <= g.wo();  // at most 10% junk
    pitch = wide ? wp : g.wo();
    cols = g.ho() * pitch;
  }
};

// Scratch: per thread, one padded image (C, Hp, Wp) plus slack for the wide
// rows' overrun, the same again for the padded input gradient, col
// (K, G*cols) and tmp (O, G*cols), reused chunk after chunk so that they stay
// in cache; then per chunk, its share of dw (O*K) and db (O). The padded
// image's borders are zero from the start (the scratch is zero-filled) and
// only its interior is ever written.
struct Scratch {
  int64_t pad, dpad, col, tmp, per_thread;  // offsets within a thread's part, its size
  int64_t dw, db, per_chunk;                // within a chunk's part (after all threads')
  int64_t threads;
  Scratch(const ConvGeom& g, const Layout& l, int64_t group, int64_t threads_) : threads(threads_) {
    pad = 0;
    dpad = pad + align16(g.c * l.plane + g.kw);
    col = dpad + align16(g.c * l.plane + g.kw);
    tmp = col + align16(g.k() * group * l.cols);
    per_thread = tmp + align16(g.o * group * l.cols);
    dw = 0;
    db = align16(g.o * g.k());
    per_chunk = db + align16(g.o);
  }
  int64_t size(int64_t chunks) const { return threads * per_thread + chunks * per_chunk; }
  template <class T> T* thread(T* base, int t) const { return base + t * per_thread; }
  template <class T> T* chunk(T* base, int64_t c) const { return base + threads * per_thread + c * per_chunk; }
};

// Threads for a pass over `chunks` chunks with scratch for `planned` threads.
int team(int64_t chunks, int64_t planned) {
  return static_cast<int>(std::max<int64_t>(1, std::min({chunks, planned, int64_t(omp_get_max_threads())})));
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
// The first n of 32 lanes (n may be outside [0, 32]).
inline __mmask32 lanes32(int64_t n) {
  return n <= 0 ? 0 : n >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1u << n) - 1);
}
#endif

// One row of a strided copy r[k] = in[k * s], and its adjoint out[k * s] += r[k].
// Rows are short (7 to 28 here), where compiled loops spend more time in their
// scalar remainders (and memcpy in its call) than in the copy; with AVX-512,
// stride-1 rows are whole vectors plus one masked tail, and stride-2 rows of
// up to 16 outputs one pair of masked loads, a permute and a masked store.
template <class T>
inline void copy_row(const T* in, int64_t n, int64_t s, T* r) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (std::is_same_v<T, bf16>) {  // the same for 16-bit elements
    const auto* i16 = reinterpret_cast<const uint16_t*>(in);
    auto* r16 = reinterpret_cast<uint16_t*>(r);
    if (s == 1) {
      int64_t k = 0;
      for (; k + 32 <= n; k += 32) _mm512_storeu_si512(r16 + k, _mm512_loadu_si512(i16 + k));
      const __mmask32 m = lanes32(n - k);
      if (m) _mm512_mask_storeu_epi16(r16 + k, m, _mm512_maskz_loadu_epi16(m, i16 + k));
      return;
    }
    if (s == 2 && n <= 16) {  // in[0 .. 2n-2] as 16 words; the low halves are the even elements
      const __m512i v = _mm512_maskz_loadu_epi16(lanes32(2 * n - 1), i16);
      _mm256_mask_storeu_epi16(r16, static_cast<__mmask16>(lanes32(n)), _mm512_cvtepi32_epi16(v));
      return;
    }
  }
#endif
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (s == 1) {
      int64_t k = 0;
      for (; k + 16 <= n; k += 16) _mm512_storeu_ps(r + k, _mm512_loadu_ps(in + k));
      const __mmask16 m = static_cast<__mmask16>((1u << (n - k)) - 1);
      if (m) _mm512_mask_storeu_ps(r + k, m, _mm512_maskz_loadu_ps(m, in + k));
      return;
    }
    if (s == 2 && n <= 16) {  // in[0 .. 2n-2]: two masked loads, then the even elements
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      const int64_t span = 2 * n - 1;
      const __mmask16 mlo = static_cast<__mmask16>(span >= 16 ? 0xFFFF : (1u << span) - 1);
      const __mmask16 mhi = static_cast<__mmask16>(span > 16 ? (1u << (span - 16)) - 1 : 0);
      const __m512 lo = _mm512_maskz_loadu_ps(mlo, in), hi = _mm512_maskz_loadu_ps(mhi, in + 16);
      const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
      _mm512_mask_storeu_ps(r, m, _mm512_permutex2var_ps(lo, even, hi));
      return;
    }
  }
#endif
  if (s == 1) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) r[k] = in[k];
  } else {
    for (int64_t k = 0; k < n; ++k) r[k] = in[k * s];
  }
}

// dst[q] = bf16(src[q] (+ *bias) (+ res[q])), rounded once (core/bf16.h's
// rounding): the fp32 products and input gradients back to bf16. Rows are
// 7 to 28 long, or whole 7x7 / 14x14 planes: whole 16-lane blocks and one
// masked tail (a compiled loop does most of them in its scalar remainder).
inline void round_row(const float* src, int64_t n, const float* bias, const bf16* res, bf16* dst) {
#if defined(DTRAIN_CONV_AVX512_BF16_ROWS)
  auto* d16 = reinterpret_cast<uint16_t*>(dst);
  const auto* r16 = reinterpret_cast<const uint16_t*>(res);
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - k >= 16 ? 0xFFFF : (1u << (n - k)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(m, src + k);
    if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(*bias));
    if (res) {
      const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r16 + k));
      v = _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), v);
    }
    _mm256_mask_storeu_epi16(d16 + k, m, x86::round_bf16(v));
  }
#else
  for (int64_t q = 0; q < n; ++q) {
    float v = src[q];
    if (bias) v = v + *bias;
    if (res) v = load_elem(res[q]) + v;
    store_elem(dst[q], v);
  }
#endif
}

// The interior of xp (C, Hp, Wp) = x (C, H, W); the borders stay zero.
template <class T>
void pad_image(const ConvGeom& g, const Layout& l, const T* x, T* xp) {
  const int64_t p = g.pad;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t h = 0; h < g.h; ++h)
      copy_row(x + (c * g.h + h) * g.w, g.w, 1, xp + c * l.plane + (h + p) * l.wp + p);
}

template <class T>
inline void add_row(const T* r, int64_t n, int64_t s, T* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (n <= 16 && s <= 2) {
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(m, r);
      if (s == 1) {
        _mm512_mask_storeu_ps(out, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), v));
      } else {  // spread r over the even positions of out[0 .. 2n-2]
        const int64_t span = 2 * n - 1;
        const __mmask16 mlo = static_cast<__mmask16>(span >= 16 ? 0xFFFF : (1u << span) - 1);
        const __mmask16 mhi = static_cast<__mmask16>(span > 16 ? (1u << (span - 16)) - 1 : 0);
        const __m512i ilo = _mm512_set_epi32(0, 7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0);
        const __m512i ihi = _mm512_set_epi32(0, 15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8);
        const __m512 elo = _mm512_maskz_permutexvar_ps(0x5555, ilo, v);
        const __m512 ehi = _mm512_maskz_permutexvar_ps(0x5555, ihi, v);
        _mm512_mask_storeu_ps(out, mlo, _mm512_add_ps(_mm512_maskz_loadu_ps(mlo, out), elo));
        _mm512_mask_storeu_ps(out + 16, mhi, _mm512_add_ps(_mm512_maskz_loadu_ps(mhi, out + 16), ehi));
      }
      return;
    }
  }
#endif
  if (s == 1) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) out[k] += r[k];
  } else {
    for (int64_t k = 0; k < n; ++k) out[k * s] += r[k];
  }
}

#if defined(DTRAIN_CONV_AVX512_BF16_ROWS)
// im2col's compact rows for 16-bit elements: `rows` output rows of a column
// row (rows * Wo <= 32 elements) come from one 64-element window of the image
// (two masked loads), put in place by one permute (idx: lane q reads window
// element (q / Wo) * s * Wp + (q % Wo) * s) and one masked store. At these
// widths (7 and 14) a row at a time spent more in loop overhead than copying.
struct RowGather {
  int64_t rows = 0;  // 0: the geometry does not fit (wider rows or strides)
  __m512i idx;
};

RowGather row_gather(const ConvGeom& g, const Layout& l) {
  RowGather r;
  const int64_t Wo = g.wo(), s = g.stride, Wp = l.wp;
  if (l.wide || Wo > 32) return r;
  const auto span = [&](int64_t rows) { return (rows - 1) * s * Wp + (Wo - 1) * s + 1; };
  while (span(r.rows + 1) <= 64 && (r.rows + 1) * Wo <= 32 && r.rows < g.ho()) ++r.rows;
  alignas(64) uint16_t idx[32] = {};
  for (int64_t q = 0; q < r.rows * Wo; ++q) idx[q] = static_cast<uint16_t>((q / Wo) * s * Wp + (q % Wo) * s);
  r.idx = _mm512_load_si512(idx);
  return r;
}

void im2col_gather(const ConvGeom& g, const Layout& l, const RowGather& rg, const bf16* xp, int64_t ld,
                   bf16* col) {
  const int64_t Ho = g.ho(), Wo = g.wo(), s = g.stride, Wp = l.wp;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        auto* row = reinterpret_cast<uint16_t*>(col + ((c * g.kh + i) * g.kw + j) * ld);
        const auto* src = reinterpret_cast<const uint16_t*>(xp + c * l.plane + i * Wp + j);
        for (int64_t oh = 0; oh < Ho; oh += rg.rows) {
          const int64_t r = std::min(rg.rows, Ho - oh), span = (r - 1) * s * Wp + (Wo - 1) * s + 1;
          const uint16_t* b = src + oh * s * Wp;
          const __m512i lo = _mm512_maskz_loadu_epi16(lanes32(span), b);
          const __m512i hi = _mm512_maskz_loadu_epi16(lanes32(span - 32), b + 32);
          _mm512_mask_storeu_epi16(row + oh * Wo, lanes32(r * Wo), _mm512_permutex2var_epi16(lo, rg.idx, hi));
        }
      }
}
#endif

// col (K, ld) from a padded image xp (C, Hp, Wp); row (c, i, j) reads the
// window offset (i, j) of plane c.
template <class T>
void im2col(const ConvGeom& g, const Layout& l, const T* xp, int64_t ld, T* col) {
#if defined(DTRAIN_CONV_AVX512_BF16_ROWS)
  if constexpr (std::is_same_v<T, bf16>) {
    const RowGather rg = row_gather(g, l);
    if (rg.rows > 0) {
      im2col_gather(g, l, rg, xp, ld, col);
      return;
    }
  }
#endif
  const int64_t Ho = g.ho(), Wo = g.wo(), s = g.stride, Wp = l.wp;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        const T* src = xp + c * l.plane + i * Wp + j;
        if (l.wide)
          std::memcpy(row, src, sizeof(T) * l.cols);  // (Ho, Wp), the last columns junk
        else
          for (int64_t oh = 0; oh < Ho; ++oh) copy_row(src + oh * s * Wp, Wo, s, row + oh * Wo);
      }
}

// xp (C, Hp, Wp) += the columns of col (K, ld): the adjoint of im2col.
template <class T>
void col2im(const ConvGeom& g, const Layout& l, const T* col, int64_t ld, T* xp) {
  const int64_t Ho = g.ho(), Wo = g.wo(), s = g.stride, Wp = l.wp;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        T* dst = xp + c * l.plane + i * Wp + j;
        if (l.wide) {  // junk columns are zero here: adding them changes nothing
#pragma omp simd
          for (int64_t q = 0; q < l.cols; ++q) dst[q] += row[q];
        } else {
          for (int64_t oh = 0; oh < Ho; ++oh) add_row(row + oh * Wo, Wo, s, dst + oh * s * Wp);
        }
      }
}

#if defined(DTRAIN_CONV_AVX512_BF16_ROWS)
// Whether fold_round_bf16 takes this geometry (else col2im, then round_row).
bool foldable(const ConvGeom& g) { return (g.stride == 1 || g.stride == 2) && g.kw <= 8; }

// One image's input gradient in bf16: dx (C, H, W) = bf16(res + col2im(dcol)),
// dcol (K, ld) fp32. Each 16-lane block of an output row sums its (i, j)
// terms in registers, in col2im's order and from zero, so the fp32 sums are
// col2im's into a zeroed padded image, rounded once as before; what goes is
// col2im's read-modify-write of the padded image for every (c, i, j) row
// (masked loads after overlapping masked stores: a third of its time in
// store-forwarding stalls) and the pass that rounds its interior.
// Term (i, j) of padded position (hp, xp) is dcol row (c, i, j) at
// ((hp - i) / s, (xp - j) / s) where both divide and fall inside the output:
// a masked load from that row, a permute that spreads it to the lanes
// (stride 2: every other lane), a masked add.
void fold_round_bf16(const ConvGeom& g, const Layout& l, const float* dcol, int64_t ld, const bf16* res,
                     bf16* dx) {
  const int64_t Ho = g.ho(), Wo = g.wo(), s = g.stride, p = g.pad;
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const auto* r16 = reinterpret_cast<const uint16_t*>(res);
  auto* d16 = reinterpret_cast<uint16_t*>(dx);
  for (int64_t xb = 0; xb < g.w; xb += 16) {
    const __mmask16 out = static_cast<__mmask16>(g.w - xb >= 16 ? 0xFFFF : (1u << (g.w - xb)) - 1);
    // Per j: the first output column loaded, the permute, the lanes it feeds.
    int64_t base[8];
    __mmask16 load[8], valid[8];
    __m512i perm[8];
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t t0 = xb + p - j;  // lane 0's (xp - j)
      const __m512i t = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(t0)), iota);
      const __m512i idx = s == 2 ? _mm512_srai_epi32(t, 1) : t;
      __mmask16 ok = _mm512_mask_cmpge_epi32_mask(out, t, _mm512_setzero_si512());
      if (s == 2) ok = _mm512_mask_testn_epi32_mask(ok, t, _mm512_set1_epi32(1));
      ok = _mm512_mask_cmplt_epi32_mask(ok, idx, _mm512_set1_epi32(static_cast<int>(Wo)));
      base[j] = std::max<int64_t>(0, s == 2 ? (t0 >= 0 ? t0 / 2 : 0) : t0);
      load[j] = static_cast<__mmask16>(Wo - base[j] >= 16 ? 0xFFFF : Wo - base[j] <= 0 ? 0 : (1u << (Wo - base[j])) - 1);
      perm[j] = _mm512_sub_epi32(idx, _mm512_set1_epi32(static_cast<int>(base[j])));
      valid[j] = ok;
    }
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t h = 0; h < g.h; ++h) {
        const int64_t hp = h + p;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t t = hp - i;
          if (t < 0 || t % s) continue;
          const int64_t oh = t / s;
          if (oh >= Ho) continue;
          const float* rowi = dcol + (c * g.kh + i) * g.kw * ld + oh * l.pitch;
          for (int64_t j = 0; j < g.kw; ++j) {
            if (!valid[j]) continue;
            const __m512 v = _mm512_maskz_loadu_ps(load[j], rowi + j * ld + base[j]);
            acc = _mm512_mask_add_ps(acc, valid[j], acc, _mm512_permutexvar_ps(perm[j], v));
          }
        }
        const int64_t off = (c * g.h + h) * g.w + xb;
        if (res) {
          const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(out, r16 + off));
          acc = _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), acc);
        }
        _mm256_mask_storeu_epi16(d16 + off, out, x86::round_bf16(acc));
      }
  }
}
#endif

// The columns of one image x (C, H, W), through the padded copy xp when there is padding.
template <class T>
void unroll(const ConvGeom& g, const Layout& l, const T* x, T* xp, int64_t ld, T* col) {
  if (g.pad > 0) pad_image(g, l, x, xp);
  im2col(g, l, g.pad > 0 ? xp : x, ld, col);
}

// dw (O*K) and db (O) += the chunks' shares, added in chunk order: the same
// sums for any thread count.
template <class T>
void add_chunk_shares(const Scratch& sc, const T* scratch, int64_t chunks, int64_t O, int64_t K, T* dw, T* db) {
  constexpr int64_t kBlock = 512;
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < O * K; i0 += kBlock) {
    const int64_t len = std::min(kBlock, O * K - i0);
    T acc[kBlock] = {};
    for (int64_t c = 0; c < chunks; ++c) {
      const T* part = sc.chunk(scratch, c) + sc.dw + i0;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) acc[i] += part[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dw[i0 + i] += acc[i];
  }
  if (db)
    for (int64_t o = 0; o < O; ++o) {
      T s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += sc.chunk(scratch, c)[sc.db + o];
      db[o] += s;
    }
}

// C (A) = op(a) @ op(b) + beta C with alpha 1: the fp32 / fp64 GEMM, or the
// bf16 one with fp32 accumulation.
template <class T>
void product(bool ta, bool tb, int64_t m, int64_t nn, int64_t k, const T* a, int64_t lda, const T* b,
             int64_t ldb, T beta, T* c, int64_t ldc) {
  gemm<T>(ta, tb, m, nn, k, T(1), a, lda, b, ldb, beta, c, ldc);
}
void product(bool ta, bool tb, int64_t m, int64_t nn, int64_t k, const bf16* a, int64_t lda, const bf16* b,
             int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_bf16(ta, tb, m, nn, k, 1.f, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

int64_t conv_group(const ConvGeom& g, int64_t max_batch) {
  const int64_t per_chunk = (max_batch + chunks_for(max_batch) - 1) / chunks_for(max_batch);
  const int64_t cols = Layout(g).cols;
  return std::clamp<int64_t>((kTargetColumns + cols - 1) / cols, 1, per_chunk);
}

int64_t conv_scratch_size(const ConvGeom& g, int64_t max_batch, int threads) {
  const Layout l(g);
  return Scratch(g, l, conv_group(g, max_batch), std::max(threads, 1)).size(chunks_for(max_batch));
}

template <class T>
void conv2d_forward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w,
                    const T* bias, T* y, T* scratch, int threads) {
  const int64_t chunks = chunks_for(n), K = g.k(), O = g.o, Ho = g.ho(), Wo = g.wo();
  const int64_t hw = Ho * Wo;
  const Layout l(g);
  const Scratch sc(g, l, group, threads);
  // Dynamic: results do not depend on which thread takes a chunk, and a thread
  // the OS pauses does not hold up the others.
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(chunks, threads)) if (chunks > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    T* work = sc.thread(scratch, omp_get_thread_num());
    T* xp = work + sc.pad;
    T* col = work + sc.col;
    T* tmp = work + sc.tmp;
    for (int64_t b0 = ch * n / chunks, b1 = (ch + 1) * n / chunks; b0 < b1; b0 += group) {
      const int64_t gs = std::min(group, b1 - b0), N = gs * l.cols;
      for (int64_t j = 0; j < gs; ++j) unroll(g, l, x + (b0 + j) * g.in_size(), xp, N, col + j * l.cols);
      const bool direct = gs == 1 && !l.wide;  // the GEMM output is already y's layout
      T* out = direct ? y + b0 * O * hw : tmp;  // (O, N)
      gemm<T>(false, false, O, N, K, T(1), w, K, col, N, T(0), out, N);
      for (int64_t j = 0; j < gs; ++j)
        for (int64_t o = 0; o < O; ++o) {
          T* yr = y + ((b0 + j) * O + o) * hw;  // (Ho, Wo)
          const T* src = tmp + o * N + j * l.cols;
          if (l.wide)
            for (int64_t oh = 0; oh < Ho; ++oh) copy_row(src + oh * l.pitch, Wo, 1, yr + oh * Wo);
          else if (!direct)
            std::memcpy(yr, src, sizeof(T) * hw);
          if (bias) {
            const T bo = bias[o];
#pragma omp simd
            for (int64_t p = 0; p < hw; ++p) yr[p] += bo;
          }
        }
    }
  }
}

namespace {

// One backward for every storage type T: images, weights, output gradients
// and dx in T; products, the column gradients, the padded input gradient, dw,
// db and the scratch in A = compute_t<T> (T itself for float and double;
// float for bf16, each product summed in fp32 by gemm_bf16 and dx rounded once).
template <class T>
void conv_backward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w, const T* dy,
                   const T* dres, T* dx, compute_t<T>* dw, compute_t<T>* db, compute_t<T>* scratch, int threads) {
  using A = compute_t<T>;
  constexpr bool same = std::is_same_v<A, T>;
  const int64_t chunks = chunks_for(n), K = g.k(), O = g.o, Ho = g.ho(), Wo = g.wo();
  const int64_t hw = Ho * Wo, p = g.pad;
  const Layout l(g);
  const Scratch sc(g, l, group, threads);
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(chunks, threads)) if (chunks > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    A* work = sc.thread(scratch, omp_get_thread_num());
    T* xp = reinterpret_cast<T*>(work + sc.pad);    // bf16: in fp32-sized slots
    T* col = reinterpret_cast<T*>(work + sc.col);   // (K, N) columns, then
    A* dcol = work + sc.col;                        // (K, N) column gradients over them
    A* dxp = work + sc.dpad;                        // padded input gradient
    T* tmp = reinterpret_cast<T*>(work + sc.tmp);   // (O, N) gathered dy
    A* pdw = sc.chunk(scratch, ch) + sc.dw;  // (O, K): this chunk's share of dw
    A* pdb = sc.chunk(scratch, ch) + sc.db;  // (O)
    std::fill(pdb, pdb + O, A(0));
    bool first = true;
    for (int64_t b0 = ch * n / chunks, b1 = (ch + 1) * n / chunks; b0 < b1; b0 += group) {
      const int64_t gs = std::min(group, b1 - b0), N = gs * l.cols;
      for (int64_t j = 0; j < gs; ++j) unroll(g, l, x + (b0 + j) * g.in_size(), xp, N, col + j * l.cols);
      const T* d = dy + b0 * O * hw;  // (O, N) after the gather below
      if (gs > 1 || l.wide) {
        for (int64_t j = 0; j < gs; ++j)
          for (int64_t o = 0; o < O; ++o) {
            const T* src = dy + ((b0 + j) * O + o) * hw;
            T* dst = tmp + o * N + j * l.cols;
            if (!l.wide) {
              std::memcpy(dst, src, sizeof(T) * hw);
              continue;
            }
            for (int64_t oh = 0; oh < Ho; ++oh) {
              copy_row(src + oh * Wo, Wo, 1, dst + oh * l.pitch);
              std::memset(static_cast<void*>(dst + oh * l.pitch + Wo), 0, sizeof(T) * (l.pitch - Wo));
            }
          }
        d = tmp;
      }
      // dw (O, K) += d (O, N) @ col^T (N, K), in A
      product(false, true, O, K, N, d, N, col, N, first ? A(0) : A(1), pdw, K);
      first = false;
      if (db)
        for (int64_t o = 0; o < O; ++o) {
          A s = 0;
          if constexpr (same) {
#pragma omp simd reduction(+ : s)
            for (int64_t q = 0; q < N; ++q) s += d[o * N + q];
          } else {  // the same vectorised order (load_elem: a conversion GCC vectorises)
#pragma omp simd reduction(+ : s)
            for (int64_t q = 0; q < N; ++q) s += load_elem(d[o * N + q]);
          }
          pdb[o] += s;
        }
      if (!dx) continue;
      // dcol (K, N) = W^T (K, O) @ d (O, N), over col (no longer needed)
      product(true, false, K, N, O, w, K, d, N, A(0), dcol, N);
      for (int64_t j = 0; j < gs; ++j) {
        T* dxj = dx + (b0 + j) * g.in_size();  // (C, H, W)
        const T* rj = dres ? dres + (b0 + j) * g.in_size() : nullptr;
        if constexpr (same) {
          if (p == 0) {  // accumulate straight into dx
            if (!rj)
              std::memset(dxj, 0, sizeof(T) * g.in_size());
            else if (rj != dxj)
              std::memcpy(dxj, rj, sizeof(T) * g.in_size());
            col2im(g, l, dcol + j * l.cols, N, dxj);
            continue;
          }
        }
#if defined(DTRAIN_CONV_AVX512_BF16_ROWS)
        if constexpr (!same) {
          if (foldable(g)) {
            fold_round_bf16(g, l, dcol + j * l.cols, N, rj, dxj);
            continue;
          }
        }
#endif
        std::memset(dxp, 0, sizeof(A) * (g.c * l.plane + g.kw));
        col2im(g, l, dcol + j * l.cols, N, dxp);
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t h = 0; h < g.h; ++h) {
            const A* src = dxp + c * l.plane + (h + p) * l.wp + p;  // interior row
            const int64_t off = (c * g.h + h) * g.w;
            T* o = dxj + off;
            if constexpr (same) {
              if (rj) {
#pragma omp simd
                for (int64_t q = 0; q < g.w; ++q) o[q] = rj[off + q] + src[q];
              } else {
                copy_row(src, g.w, 1, o);
              }
            } else {  // rounded once
              round_row(src, g.w, nullptr, rj ? rj + off : nullptr, o);
            }
          }
      }
    }
  }
  add_chunk_shares(sc, scratch, chunks, O, K, dw, db);
}

}  // namespace

template <class T>
void conv2d_backward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w,
                     const T* dy, const T* dres, T* dx, T* dw, T* db, T* scratch, int threads) {
  conv_backward<T>(g, n, group, x, w, dy, dres, dx, dw, db, scratch, threads);
}

void conv2d_forward_bf16(const ConvGeom& g, int64_t n, int64_t group, const bf16* x, const bf16* w,
                         const bf16* bias, bf16* y, float* scratch, int threads) {
  const int64_t chunks = chunks_for(n), K = g.k(), O = g.o, Ho = g.ho(), Wo = g.wo();
  const int64_t hw = Ho * Wo;
  const Layout l(g);
  const Scratch sc(g, l, group, threads);
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(chunks, threads)) if (chunks > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    float* work = sc.thread(scratch, omp_get_thread_num());
    bf16* xp = reinterpret_cast<bf16*>(work + sc.pad);  // bf16 in fp32-sized slots
    bf16* col = reinterpret_cast<bf16*>(work + sc.col);
    float* tmp = work + sc.tmp;  // (O, N) fp32 products
    for (int64_t b0 = ch * n / chunks, b1 = (ch + 1) * n / chunks; b0 < b1; b0 += group) {
      const int64_t gs = std::min(group, b1 - b0), N = gs * l.cols;
      for (int64_t j = 0; j < gs; ++j) unroll(g, l, x + (b0 + j) * g.in_size(), xp, N, col + j * l.cols);
      gemm_bf16(false, false, O, N, K, 1.f, w, K, col, N, 0.f, tmp, N);
      for (int64_t j = 0; j < gs; ++j)
        for (int64_t o = 0; o < O; ++o) {
          bf16* yr = y + ((b0 + j) * O + o) * hw;  // (Ho, Wo)
          const float* src = tmp + o * N + j * l.cols;
          const float bo = bias ? float(bias[o]) : 0.f;
          if (l.pitch == Wo)  // compact: the plane is one row
            round_row(src, hw, bias ? &bo : nullptr, nullptr, yr);
          else
            for (int64_t oh = 0; oh < Ho; ++oh)
              round_row(src + oh * l.pitch, Wo, bias ? &bo : nullptr, nullptr, yr + oh * Wo);
        }
    }
  }
}

void conv2d_backward_bf16(const ConvGeom& g, int64_t n, int64_t group, const bf16* x, const bf16* w,
                          const bf16* dy, const bf16* dres, bf16* dx, float* dw, float* db,
                          float* scratch, int threads) {
  conv_backward<bf16>(g, n, group, x, w, dy, dres, dx, dw, db, scratch, threads);
}

#define DTRAIN_INSTANTIATE(T)                                                              \
  template void conv2d_forward<T>(const ConvGeom&, int64_t, int64_t, const T*, const T*,  \
                                  const T*, T*, T*, int);                                  \
  template void conv2d_backward<T>(const ConvGeom&, int64_t, int64_t, const T*, const T*, \
                                   const T*, const T*, T*, T*, T*, T*, int);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
