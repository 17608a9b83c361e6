#include "kernels/cpu/layernorm.h"

#include <algorithm>
#include <cmath>

namespace dtrain::cpu {

template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, int64_t n, int64_t c, T eps, T* y,
                       T* mean, T* rstd) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T* xr = x + i * c;  // (C)
    T* yr = y + i * c;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < c; ++j) s += xr[j];
    const T m = s / static_cast<T>(c);
    T v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < c; ++j) v += (xr[j] - m) * (xr[j] - m);
    const T r = T(1) / std::sqrt(v / static_cast<T>(c) + eps);
    if (b) {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) * r * w[j] + b[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) * r * w[j];
    }
    mean[i] = m;
    rstd[i] = r;
  }
}

template <class T>
void layernorm_backward(const T* dy, const T* x, const T* w, const T* mean, const T* rstd,
                        const T* dres, int64_t n, int64_t c, T* dx, T* dw, T* db, T* scratch) {
  const int64_t chunks = std::min(n, kLayerNormChunks);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    T* pw = scratch + k * 2 * c;  // (C): this chunk's share of dw
    T* pb = pw + c;               // (C): of db
    std::fill(pw, pw + 2 * c, T(0));
    for (int64_t i = k * n / chunks; i < (k + 1) * n / chunks; ++i) {
      const T* xr = x + i * c;
      const T* g = dy + i * c;
      const T m = mean[i], r = rstd[i];
      // dx = r * (g*w - mean(g*w) - xhat * mean(g*w*xhat)), xhat = (x - m) * r
      T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t j = 0; j < c; ++j) {
        const T gw = g[j] * w[j];
        s1 += gw;
        s2 += gw * (xr[j] - m) * r;
      }
      s1 /= static_cast<T>(c);
      s2 /= static_cast<T>(c);
      T* dxr = dx + i * c;
      const T* dr = dres ? dres + i * c : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const T xhat = (xr[j] - m) * r;
        const T d = r * (g[j] * w[j] - s1 - xhat * s2);
        dxr[j] = dr ? dr[j] + d : d;
        pw[j] += g[j] * xhat;
        pb[j] += g[j];
      }
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < c; ++j) {
    T sw = 0, sb = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      sw += scratch[k * 2 * c + j];
      sb += scratch[k * 2 * c + c + j];
    }
    dw[j] += sw;
    if (db) db[j] += sb;
  }
}

#define DTRAIN_INSTANTIATE(T)                                                                   \
  template void layernorm_forward<T>(const T*, const T*, const T*, int64_t, int64_t, T, T*, T*, \
                                     T*);                                                       \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*,        \
                                      const T*, int64_t, int64_t, T*, T*, T*, T*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
