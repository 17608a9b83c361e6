#include "kernels/cpu/conv.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/gemm.h"

namespace dtrain::cpu {

namespace {

// Columns one GEMM should see at least; fewer make OpenBLAS's packing dominate.
constexpr int64_t kTargetColumns = 256;

int64_t chunks_for(int64_t n) { return std::min(n, kConvChunks); }

// Per-chunk scratch: padded images (G, C, Hp, Wp), col (K, G*HWo), tmp (O, G*HWo),
// dw (O*K), db (O); every part 64-byte aligned.
struct Slot {
  int64_t pad, col, tmp, dw, db, total;
  explicit Slot(const ConvGeom& g, int64_t group) {
    auto up = [](int64_t v) { return (v + 15) / 16 * 16; };
    const int64_t cols = group * g.ho() * g.wo();
    pad = 0;
    col = pad + up(group * g.c * (g.h + 2 * g.pad) * (g.w + 2 * g.pad));
    tmp = col + up(g.k() * cols);
    dw = tmp + up(g.o * cols);
    db = dw + up(g.o * g.k());
    total = db + up(g.o);
  }
};

// xp (C, Hp, Wp) = x (C, H, W) with `pad` zeros around every plane.
template <class T>
void pad_image(const ConvGeom& g, const T* x, T* xp) {
  const int64_t p = g.pad, Wp = g.w + 2 * p, Hp = g.h + 2 * p;
  for (int64_t c = 0; c < g.c; ++c) {
    T* dst = xp + c * Hp * Wp;
    std::memset(dst, 0, sizeof(T) * p * Wp);
    for (int64_t h = 0; h < g.h; ++h) {
      T* r = dst + (h + p) * Wp;
      for (int64_t k = 0; k < p; ++k) r[k] = r[p + g.w + k] = T(0);
      std::memcpy(r + p, x + (c * g.h + h) * g.w, sizeof(T) * g.w);
    }
    std::memset(dst + (p + g.h) * Wp, 0, sizeof(T) * p * Wp);
  }
}

// col (K, ld) from a padded image xp (C, Hp, Wp): every row a strided copy.
template <class T>
void im2col_padded(const ConvGeom& g, const T* xp, int64_t ld, T* col) {
  const int64_t Ho = g.ho(), Wo = g.wo(), s = g.stride;
  const int64_t Wp = g.w + 2 * g.pad, plane = (g.h + 2 * g.pad) * Wp;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * ld;  // (Ho, Wo)
        const T* src = xp + c * plane + i * Wp + j;
        for (int64_t oh = 0; oh < Ho; ++oh) {
          const T* in = src + oh * s * Wp;
          T* r = row + oh * Wo;
          if (s == 1)
            std::memcpy(r, in, sizeof(T) * Wo);
          else
            for (int64_t ow = 0; ow < Wo; ++ow) r[ow] = in[ow * s];
        }
      }
}

// xp (C, Hp, Wp) += the columns of col (K, ld): the adjoint of im2col_padded.
template <class T>
void col2im_padded(const ConvGeom& g, const T* col, int64_t ld, T* xp) {
  const int64_t Ho = g.ho(), Wo = g.wo(), s = g.stride;
  const int64_t Wp = g.w + 2 * g.pad, plane = (g.h + 2 * g.pad) * Wp;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        T* dst = xp + c * plane + i * Wp + j;
        for (int64_t oh = 0; oh < Ho; ++oh) {
          T* out = dst + oh * s * Wp;
          const T* r = row + oh * Wo;
          if (s == 1) {
#pragma omp simd
            for (int64_t ow = 0; ow < Wo; ++ow) out[ow] += r[ow];
          } else {
            for (int64_t ow = 0; ow < Wo; ++ow) out[ow * s] += r[ow];
          }
        }
      }
}

// The columns of one image x (C, H, W), padding through xp when there is any.
template <class T>
void unroll(const ConvGeom& g, const T* x, T* xp, int64_t ld, T* col) {
  if (g.pad > 0) {
    pad_image(g, x, xp);
    im2col_padded(g, xp, ld, col);
  } else {
    im2col_padded(g, x, ld, col);
  }
}

}  // namespace

int64_t conv_group(const ConvGeom& g, int64_t max_batch) {
  const int64_t per_chunk = (max_batch + chunks_for(max_batch) - 1) / chunks_for(max_batch);
  const int64_t hw = g.ho() * g.wo();
  return std::clamp<int64_t>((kTargetColumns + hw - 1) / hw, 1, per_chunk);
}

int64_t conv_scratch_size(const ConvGeom& g, int64_t max_batch) {
  return chunks_for(max_batch) * Slot(g, conv_group(g, max_batch)).total;
}

template <class T>
void conv2d_forward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w,
                    const T* bias, T* y, T* scratch) {
  const int64_t chunks = chunks_for(n), K = g.k(), O = g.o, hw = g.ho() * g.wo();
  const Slot slot(g, group);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    T* xp = scratch + ch * slot.total + slot.pad;
    T* col = scratch + ch * slot.total + slot.col;
    T* tmp = scratch + ch * slot.total + slot.tmp;
    for (int64_t b0 = ch * n / chunks, b1 = (ch + 1) * n / chunks; b0 < b1; b0 += group) {
      const int64_t gs = std::min(group, b1 - b0), N = gs * hw;
      for (int64_t j = 0; j < gs; ++j) unroll(g, x + (b0 + j) * g.in_size(), xp, N, col + j * hw);
      T* out = gs == 1 ? y + b0 * O * hw : tmp;  // (O, gs*HWo)
      gemm<T>(false, false, O, N, K, T(1), w, K, col, N, T(0), out, N);
      for (int64_t j = 0; j < gs; ++j)
        for (int64_t o = 0; o < O; ++o) {
          T* yr = y + ((b0 + j) * O + o) * hw;  // (HWo)
          if (gs > 1) std::memcpy(yr, tmp + o * N + j * hw, sizeof(T) * hw);
          if (bias) {
            const T bo = bias[o];
#pragma omp simd
            for (int64_t p = 0; p < hw; ++p) yr[p] += bo;
          }
        }
    }
  }
}

template <class T>
void conv2d_backward(const ConvGeom& g, int64_t n, int64_t group, const T* x, const T* w,
                     const T* dy, const T* dres, T* dx, T* dw, T* db, T* scratch) {
  const int64_t chunks = chunks_for(n), K = g.k(), O = g.o, hw = g.ho() * g.wo();
  const int64_t p = g.pad, Wp = g.w + 2 * p, Hp = g.h + 2 * p;
  const Slot slot(g, group);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    T* xp = scratch + ch * slot.total + slot.pad;
    T* col = scratch + ch * slot.total + slot.col;
    T* tmp = scratch + ch * slot.total + slot.tmp;
    T* pdw = scratch + ch * slot.total + slot.dw;  // (O, K): this chunk's share of dw
    T* pdb = scratch + ch * slot.total + slot.db;  // (O)
    std::fill(pdb, pdb + O, T(0));
    bool first = true;
    for (int64_t b0 = ch * n / chunks, b1 = (ch + 1) * n / chunks; b0 < b1; b0 += group) {
      const int64_t gs = std::min(group, b1 - b0), N = gs * hw;
      for (int64_t j = 0; j < gs; ++j) unroll(g, x + (b0 + j) * g.in_size(), xp, N, col + j * hw);
      const T* d = dy + b0 * O * hw;  // (O, gs*HWo) after the gather below
      if (gs > 1) {
        for (int64_t j = 0; j < gs; ++j)
          for (int64_t o = 0; o < O; ++o)
            std::memcpy(tmp + o * N + j * hw, dy + ((b0 + j) * O + o) * hw, sizeof(T) * hw);
        d = tmp;
      }
      // dw (O, K) += d (O, N) @ col^T (N, K)
      gemm<T>(false, true, O, K, N, T(1), d, N, col, N, first ? T(0) : T(1), pdw, K);
      first = false;
      if (db)
        for (int64_t o = 0; o < O; ++o) {
          T s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t q = 0; q < N; ++q) s += d[o * N + q];
          pdb[o] += s;
        }
      if (!dx) continue;
      // dcol (K, N) = W^T (K, O) @ d (O, N), over col (no longer needed)
      gemm<T>(true, false, K, N, O, T(1), w, K, d, N, T(0), col, N);
      for (int64_t j = 0; j < gs; ++j) {
        T* dxj = dx + (b0 + j) * g.in_size();  // (C, H, W)
        const T* rj = dres ? dres + (b0 + j) * g.in_size() : nullptr;
        if (p == 0) {  // accumulate straight into dx
          if (!rj)
            std::memset(dxj, 0, sizeof(T) * g.in_size());
          else if (rj != dxj)
            std::memcpy(dxj, rj, sizeof(T) * g.in_size());
          col2im_padded(g, col + j * hw, N, dxj);
          continue;
        }
        std::memset(xp, 0, sizeof(T) * g.c * Hp * Wp);
        col2im_padded(g, col + j * hw, N, xp);
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t h = 0; h < g.h; ++h) {
            const T* src = xp + (c * Hp + h + p) * Wp + p;  // interior row of the padded plane
            const int64_t off = (c * g.h + h) * g.w;
            T* o = dxj + off;
            if (rj) {
#pragma omp simd
              for (int64_t q = 0; q < g.w; ++q) o[q] = rj[off + q] + src[q];
            } else {
              std::memcpy(o, src, sizeof(T) * g.w);
            }
          }
      }
    }
  }
  // Chunk shares added in chunk order: the same sums for any thread count.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < O * K; ++i) {
    T s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += scratch[c * slot.total + slot.dw + i];
    dw[i] += s;
  }
  if (db)
    for (int64_t o = 0; o < O; ++o) {
      T s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += scratch[c * slot.total + slot.db + o];
      db[o] += s;
    }
}

#define DTRAIN_INSTANTIATE(T)                                                                 \
  template void conv2d_forward<T>(const ConvGeom&, int64_t, int64_t, const T*, const T*,     \
                                  const T*, T*, T*);                                          \
  template void conv2d_backward<T>(const ConvGeom&, int64_t, int64_t, const T*, const T*,    \
                                   const T*, const T*, T*, T*, T*, T*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
