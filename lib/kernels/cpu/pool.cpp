#include "kernels/cpu/pool.h"

#include <algorithm>
#include <limits>
#include <type_traits>

namespace dtrain::cpu {

// Compared and summed in the compute type A (float for bf16); bf16 outputs are
// rounded once.
template <class T>
void maxpool_forward(const PoolGeom& g, int64_t planes, const T* x, T* y, int32_t* idx) {
  using A = compute_t<T>;
  const int64_t Ho = g.ho(), Wo = g.wo(), hw = g.h * g.w;
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* xp = x + pl * hw;  // (H, W)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t h0 = oh * g.stride - g.pad, w0 = ow * g.stride - g.pad;
        A best = -std::numeric_limits<A>::infinity();
        int64_t arg = std::max<int64_t>(h0, 0) * g.w + std::max<int64_t>(w0, 0);
        for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h0 + g.k, g.h); ++ih)
          for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w0 + g.k, g.w); ++iw) {
            const A v = A(xp[ih * g.w + iw]);
            if (v > best || (v != v)) {
              best = v;  // NaN propagates, as in PyTorch
              arg = ih * g.w + iw;
            }
          }
        const int64_t o = (pl * Ho + oh) * Wo + ow;
        y[o] = T(best);
        idx[o] = static_cast<int32_t>(arg);
      }
  }
}

template <class T>
void maxpool_backward(const PoolGeom& g, int64_t planes, const T* dy, const int32_t* idx, T* dx) {
  const int64_t Ho = g.ho(), Wo = g.wo(), out = Ho * Wo, hw = g.h * g.w;
  if constexpr (std::is_same_v<T, bf16>) {
    // bf16: each input gathers the gradients of the windows that chose it, in
    // output order, summed in float and rounded once (as the CUDA kernel).
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl)
      for (int64_t ih = 0; ih < g.h; ++ih)
        for (int64_t iw = 0; iw < g.w; ++iw) {
          const int64_t hl = ih + g.pad - g.k + 1, wl = iw + g.pad - g.k + 1;
          const int64_t oh0 = hl > 0 ? (hl + g.stride - 1) / g.stride : 0;
          const int64_t ow0 = wl > 0 ? (wl + g.stride - 1) / g.stride : 0;
          const int64_t oh1 = std::min((ih + g.pad) / g.stride, Ho - 1);
          const int64_t ow1 = std::min((iw + g.pad) / g.stride, Wo - 1);
          const int32_t pos = static_cast<int32_t>(ih * g.w + iw);
          float acc = 0.f;
          for (int64_t oh = oh0; oh <= oh1; ++oh)
            for (int64_t ow = ow0; ow <= ow1; ++ow) {
              const int64_t o = pl * out + oh * Wo + ow;
              if (idx[o] == pos) acc += float(dy[o]);
            }
          dx[pl * hw + pos] = bf16(acc);
        }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      T* dxp = dx + pl * hw;
      std::fill(dxp, dxp + hw, T(0));
      for (int64_t o = 0; o < out; ++o) dxp[idx[pl * out + o]] += dy[pl * out + o];
    }
  }
}

template <class T>
void avgpool_forward(int64_t planes, int64_t hw, const T* x, T* y) {
  using A = compute_t<T>;
  const A inv = A(1) / static_cast<A>(hw);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* xp = x + pl * hw;
    A s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t p = 0; p < hw; ++p) s += A(xp[p]);
    y[pl] = T(s * inv);
  }
}

template <class T>
void avgpool_backward(int64_t planes, int64_t hw, const T* dy, T* dx) {
  using A = compute_t<T>;
  const A inv = A(1) / static_cast<A>(hw);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) std::fill(dx + pl * hw, dx + (pl + 1) * hw, T(A(dy[pl]) * inv));
}

#define DTRAIN_INSTANTIATE(T)                                                                \
  template void maxpool_forward<T>(const PoolGeom&, int64_t, const T*, T*, int32_t*);        \
  template void maxpool_backward<T>(const PoolGeom&, int64_t, const T*, const int32_t*, T*); \
  template void avgpool_forward<T>(int64_t, int64_t, const T*, T*);                          \
  template void avgpool_backward<T>(int64_t, int64_t, const T*, T*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
