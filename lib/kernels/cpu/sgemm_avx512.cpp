// AVX-512 sgemm (see sgemm_avx512.h). This file alone is compiled with
// -mavx512f; it includes only C headers and intrinsics and defines nothing
// outside an anonymous namespace but sgemm_avx512 itself, so no 512-bit
// instruction can leak into code the rest of dtrain shares (no inline or
// template function is emitted here for the linker to pick), and it only runs
// after sgemm_avx512_supported() (gemm.cpp, plain code) said yes.
//
// Structure (Goto/BLIS): for each NC-wide column block of op(B) and KC-deep
// slice of K, op(B) is packed into NR-wide micro-panels (k-major) that stay in
// L2/L1; for each MC-tall row block op(A) is packed into MR-tall micro-panels;
// the micro-kernel keeps an MR x NR tile of C in 24 zmm registers and streams
// one packed row of B (NR / 16 zmm) and MR broadcasts of A per k. Edges are handled
// by zero-padding the panels and masking the loads and stores of C, so every
// tile runs the same kernel. The threads split C into a grid of blocks, each
// with its own packing buffers.
#include "kernels/cpu/sgemm_avx512.h"

// GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined_ps()
// where the intrinsics are used, i.e. throughout this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

namespace dtrain::cpu {
namespace {

// Two register tiles, chosen per product by the work their padding wastes:
// - 8 rows x 3 zmm (48 columns) = 24 accumulators, 3 rows of B and a broadcast
//   of A in flight: 11 loads per 24 FMAs. 8 and 48 divide the GPT-2 widths
//   (256 tokens, 768, 2304, 3072, 50304) and the CNN's channel counts.
// - 12 rows x 2 zmm (32 columns) = 24 accumulators, 14 loads per 24 FMAs: for
//   widths 48 divides badly (256, 64: a small GPT, attention's heads).
// Blocking measured on Zen 5 (48 KiB L1, 1 MiB L2): a KC of 384 beat 192 and
// 256 (apps/bench/sgemm_peak.results.md). Both tiles sum over k in the same
// order (KC slices in turn, then k within one), so which tile or thread
// computes an element does not change its bits.
constexpr int64_t kKC = 384;  // depth of a packed slice

template <int MR_, int NV_>
struct Tile {
  static constexpr int kMR = MR_;
  static constexpr int kNV = NV_;
  static constexpr int kNR = 16 * NV_;
  static constexpr int64_t kMC = kMR * 24;  // rows of a packed A block (8 x 48: 192 x 384 x 4 B = 288 KiB, L2)
  static constexpr int64_t kNC = kNR * 32;  // columns of a packed B block (1536 x 384 x 4 B = 2.3 MiB, L3)
};
using Wide = Tile<8, 3>;
using Tall = Tile<12, 2>;
constexpr int64_t kMinFlopsPerThread = int64_t(1) << 22;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Lanes [0, n) of a 16-lane mask, n clamped to [0, 16].
inline __mmask16 lanes(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return 0xFFFF;
  return static_cast<__mmask16>((1u << n) - 1);
}

struct Operand {
  const float* p;
  int64_t ld;
  bool trans;
};

// 16 x 16 transpose of rows s[r * ld + 0..15] (r < rows, others zero) into
// d[c * dld + r] for c < 16 and the lanes r that `store` selects.
inline void transpose16(const float* s, int64_t ld, int64_t rows, float* d, int64_t dld,
                        __mmask16 store) {
  __m512 r[16];
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(s + i * ld) : _mm512_setzero_ps();
  __m512 t[16];
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
  for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(d + i * dld, store, r[i]);  // r[i]: column i
}

// Rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into ceil(mc / MR) panels
// of kc x MR floats (k-major), rows past mc zero.
template <class Tl>
void pack_a(const Operand& a, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t r = 0; r < mc; r += Tl::kMR) {
    const int64_t mv = min64(Tl::kMR, mc - r);
    float* d = dst + r * kc;
    if (a.trans) {  // op(A)(i, p) = A[p * ld + i]: MR contiguous floats per p
      const float* s = a.p + p0 * a.ld + i0 + r;
      const __mmask16 load = lanes(mv), store = lanes(Tl::kMR);
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(d + p * Tl::kMR, store, _mm512_maskz_loadu_ps(load, s + p * a.ld));
    } else {  // op(A)(i, p) = A[i * ld + p]: a transpose of the panel's rows
      const float* s = a.p + (i0 + r) * a.ld + p0;
      int64_t p = 0;
      for (; p + 16 <= kc; p += 16) transpose16(s + p, a.ld, mv, d + p * Tl::kMR, Tl::kMR, lanes(Tl::kMR));
      for (; p < kc; ++p)
        for (int64_t i = 0; i < Tl::kMR; ++i) d[p * Tl::kMR + i] = i < mv ? s[i * a.ld + p] : 0.f;
    }
  }
}

// Depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into ceil(nc / NR)
// panels of kc x NR floats (k-major), columns past nc zero.
template <class Tl>
void pack_b(const Operand& b, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t c = 0; c < nc; c += Tl::kNR) {
    const int64_t nv = min64(Tl::kNR, nc - c);
    float* d = dst + c * kc;
    if (!b.trans) {  // op(B)(p, j) = B[p * ld + j]: NR contiguous floats per p
      const float* s = b.p + p0 * b.ld + j0 + c;
      __mmask16 m[Tl::kNV];
      for (int v = 0; v < Tl::kNV; ++v) m[v] = lanes(nv - 16 * v);
      for (int64_t p = 0; p < kc; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < Tl::kNV; ++v)
          _mm512_store_ps(d + p * Tl::kNR + 16 * v, _mm512_maskz_loadu_ps(m[v], s + p * b.ld + 16 * v));
    } else {  // op(B)(p, j) = B[j * ld + p]: column j of the panel is row j of B
      const float* s = b.p + (j0 + c) * b.ld + p0;
      int64_t p = 0;
      for (; p + 16 <= kc; p += 16)
        for (int64_t h = 0; h < Tl::kNR; h += 16)
          transpose16(s + h * b.ld + p, b.ld, nv - h, d + p * Tl::kNR + h, Tl::kNR, 0xFFFF);
      for (; p < kc; ++p)
        for (int64_t j = 0; j < Tl::kNR; ++j) d[p * Tl::kNR + j] = j < nv ? s[j * b.ld + p] : 0.f;
    }
  }
}

// C[0..mv) x [0..nv) = alpha * (A panel @ B panel) + beta * C.
template <class Tl>
void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                  int64_t ldc, int64_t mv, int64_t nv, float alpha, float beta) {
  __m512 acc[Tl::kMR][Tl::kNV];
  // C's rows are needed only at the end; start fetching them now.
#pragma GCC unroll 16
  for (int i = 0; i < Tl::kMR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < Tl::kNV; ++v)
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * v), _MM_HINT_T0);
#pragma GCC unroll 16
  for (int i = 0; i < Tl::kMR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < Tl::kNV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[Tl::kNV];
#pragma GCC unroll 4
    for (int v = 0; v < Tl::kNV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < Tl::kMR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < Tl::kNV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += Tl::kMR;
    b += Tl::kNR;
  }
  __mmask16 m[Tl::kNV];
#pragma GCC unroll 4
  for (int v = 0; v < Tl::kNV; ++v) m[v] = lanes(nv - 16 * v);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < Tl::kMR; ++i) {
    if (i >= mv) break;
    float* row = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < Tl::kNV; ++v) {
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[v], row + 16 * v), r);
      _mm512_mask_storeu_ps(row + 16 * v, m[v], r);
    }
  }
}

// C block [i0, i0 + m) x [j0, j0 + n) of the whole product, with this
// thread's packing buffers.
template <class Tl>
void run_block(const Operand& a, const Operand& b, int64_t i0, int64_t m, int64_t j0, int64_t n,
               int64_t k, float alpha, float beta, float* c, int64_t ldc, float* pa, float* pb) {
  for (int64_t jc = 0; jc < n; jc += Tl::kNC) {
    const int64_t nc = min64(Tl::kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      const int64_t kc = min64(kKC, k - pc);
      pack_b<Tl>(b, pc, kc, j0 + jc, nc, pb);
      const float beta_here = pc == 0 ? beta : 1.f;
      for (int64_t ic = 0; ic < m; ic += Tl::kMC) {
        const int64_t mc = min64(Tl::kMC, m - ic);
        pack_a<Tl>(a, i0 + ic, mc, pc, kc, pa);
        float* cb = c + (i0 + ic) * ldc + j0 + jc;
        for (int64_t jr = 0; jr < nc; jr += Tl::kNR)
          for (int64_t ir = 0; ir < mc; ir += Tl::kMR)
            micro_kernel<Tl>(kc, pa + ir * kc, pb + jr * kc, cb + ir * ldc + jr, ldc,
                         min64(Tl::kMR, mc - ir), min64(Tl::kNR, nc - jr), alpha, beta_here);
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

template <class Tl>
struct Buffers {
  float* pa = nullptr;
  float* pb = nullptr;
  Buffers(int64_t m, int64_t n, int64_t k) {
    if (m <= 0 || n <= 0 || k <= 0) return;  // this thread has no block
    const int64_t kc = min64(kKC, k);
    const int64_t mc = ceil_div(min64(Tl::kMC, m), Tl::kMR) * Tl::kMR;
    const int64_t nc = ceil_div(min64(Tl::kNC, n), Tl::kNR) * Tl::kNR;
    pa = alloc(mc * kc);
    pb = alloc(nc * kc);
  }
  static float* alloc(int64_t floats) {  // aligned_alloc wants a multiple of the alignment
    const size_t bytes = static_cast<size_t>(ceil_div(floats * int64_t(sizeof(float)), 64) * 64);
    return static_cast<float*>(aligned_alloc(64, bytes));
  }
  ~Buffers() {
    free(pa);
    free(pb);
  }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  bool ok() const { return pa && pb; }
};

// The product on `threads` threads with tile Tl: the threads split C into a
// grid of blocks, each block packed and computed by one thread.
template <class Tl>
bool run(const Operand& A, const Operand& B, int64_t m, int64_t n, int64_t k, float alpha, float beta,
         float* c, int64_t ldc, int64_t t) {
  // The grid tm x tn whose largest block holds the fewest tiles; ties go to
  // splitting the columns (each thread then packs only its own part of B).
  int64_t tm = 1, tn = t, best = -1;
  for (int64_t cn = t; cn >= 1; --cn) {
    if (t % cn) continue;
    const int64_t cm = t / cn;
    const int64_t work = ceil_div(ceil_div(m, Tl::kMR), cm) * ceil_div(ceil_div(n, Tl::kNR), cn);
    if (best < 0 || work < best) best = work, tm = cm, tn = cn;
  }
  bool failed = false;  // some thread could not allocate its buffers: then nobody writes C
#pragma omp parallel num_threads(static_cast<int>(t)) if (t > 1)
  {
    const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
    // nt may be fewer than asked: then the grid is one row of nt column blocks.
    const int64_t gm = nt == t ? tm : 1, gn = nt == t ? tn : nt;
    int64_t i0, mb, j0, nb;
    split(m, Tl::kMR, gm, id / gn, i0, mb);
    split(n, Tl::kNR, gn, id % gn, j0, nb);
    const bool mine = mb > 0 && nb > 0;
    Buffers<Tl> buf(mine ? mb : 0, mine ? nb : 0, mine ? k : 0);
    if (mine && !buf.ok()) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp barrier
    bool any_failed;
#pragma omp atomic read
    any_failed = failed;
    if (mine && !any_failed) run_block<Tl>(A, B, i0, mb, j0, nb, k, alpha, beta, c, ldc, buf.pa, buf.pb);
  }
  return !failed;
}

// Tiles of C the product computes with tile Tl (partial tiles count whole).
template <class Tl>
int64_t padded(int64_t m, int64_t n) {
  return ceil_div(m, Tl::kMR) * Tl::kMR * ceil_div(n, Tl::kNR) * Tl::kNR;
}

}  // namespace

bool sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, int threads) {
  if (m <= 0 || n <= 0) return true;
  if (k <= 0 || alpha == 0.f) {  // C = beta * C, without reading C when beta is 0
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return true;
  }
  const Operand A{a, lda, trans_a}, B{b, ldb, trans_b};
  int64_t t = min64(threads > 0 ? threads : 1, 2 * m * n * k / kMinFlopsPerThread);
  if (t < 1) t = 1;
  // The wide tile unless the tall one wastes clearly less on padding (it
  // loads more per FMA: 0-5% slower on the GPT-2 shapes both fit, measured
  // side by side; 1.1x-1.25x faster where the width is 256 or 64).
  if (20 * padded<Tall>(m, n) < 19 * padded<Wide>(m, n))
    return run<Tall>(A, B, m, n, k, alpha, beta, c, ldc, t);
  return run<Wide>(A, B, m, n, k, alpha, beta, c, ldc, t);
}

}  // namespace dtrain::cpu
