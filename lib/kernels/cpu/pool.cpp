#include "kernels/cpu/pool.h"

#include <algorithm>
#include <limits>

namespace dtrain::cpu {

template <class T>
void maxpool_forward(const PoolGeom& g, int64_t planes, const T* x, T* y, int32_t* idx) {
  const int64_t Ho = g.ho(), Wo = g.wo(), hw = g.h * g.w;
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* xp = x + pl * hw;  // (H, W)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t h0 = oh * g.stride - g.pad, w0 = ow * g.stride - g.pad;
        T best = -std::numeric_limits<T>::infinity();
        int64_t arg = std::max<int64_t>(h0, 0) * g.w + std::max<int64_t>(w0, 0);
        for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h0 + g.k, g.h); ++ih)
          for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w0 + g.k, g.w); ++iw)
            if (xp[ih * g.w + iw] > best || (xp[ih * g.w + iw] != xp[ih * g.w + iw])) {
              best = xp[ih * g.w + iw];  // NaN propagates, as in PyTorch
              arg = ih * g.w + iw;
            }
        const int64_t o = (pl * Ho + oh) * Wo + ow;
        y[o] = best;
        idx[o] = static_cast<int32_t>(arg);
      }
  }
}

template <class T>
void maxpool_backward(const PoolGeom& g, int64_t planes, const T* dy, const int32_t* idx, T* dx) {
  const int64_t out = g.ho() * g.wo(), hw = g.h * g.w;
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    T* dxp = dx + pl * hw;
    std::fill(dxp, dxp + hw, T(0));
    for (int64_t o = 0; o < out; ++o) dxp[idx[pl * out + o]] += dy[pl * out + o];
  }
}

template <class T>
void avgpool_forward(int64_t planes, int64_t hw, const T* x, T* y) {
  const T inv = T(1) / static_cast<T>(hw);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* xp = x + pl * hw;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t p = 0; p < hw; ++p) s += xp[p];
    y[pl] = s * inv;
  }
}

template <class T>
void avgpool_backward(int64_t planes, int64_t hw, const T* dy, T* dx) {
  const T inv = T(1) / static_cast<T>(hw);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) std::fill(dx + pl * hw, dx + (pl + 1) * hw, dy[pl] * inv);
}

#define DTRAIN_INSTANTIATE(T)                                                                \
  template void maxpool_forward<T>(const PoolGeom&, int64_t, const T*, T*, int32_t*);        \
  template void maxpool_backward<T>(const PoolGeom&, int64_t, const T*, const int32_t*, T*); \
  template void avgpool_forward<T>(int64_t, int64_t, const T*, T*);                          \
  template void avgpool_backward<T>(int64_t, int64_t, const T*, T*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
