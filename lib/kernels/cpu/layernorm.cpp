#include "kernels/cpu/layernorm.h"

#include <algorithm>
#include <cmath>

namespace dtrain::cpu {

template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, int64_t n, int64_t c, compute_t<T> eps,
                       T* y, compute_t<T>* mean, compute_t<T>* rstd) {
  using A = compute_t<T>;  // storage T, statistics and arithmetic A
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T* xr = x + i * c;  // (C)
    T* yr = y + i * c;
    A s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < c; ++j) s += A(xr[j]);
    const A m = s / static_cast<A>(c);
    A v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < c; ++j) v += (A(xr[j]) - m) * (A(xr[j]) - m);
    const A r = A(1) / std::sqrt(v / static_cast<A>(c) + eps);
    if (b) {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yr[j] = T((A(xr[j]) - m) * r * A(w[j]) + A(b[j]));
    } else {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yr[j] = T((A(xr[j]) - m) * r * A(w[j]));
    }
    mean[i] = m;
    rstd[i] = r;
  }
}

template <class T>
void layernorm_backward(const T* dy, const T* x, const T* w, const compute_t<T>* mean,
                        const compute_t<T>* rstd, const T* dres, int64_t n, int64_t c, T* dx,
                        compute_t<T>* dw, compute_t<T>* db, compute_t<T>* scratch) {
  using A = compute_t<T>;
  const int64_t chunks = std::min(n, kLayerNormChunks);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    A* pw = scratch + k * 2 * c;  // (C): this chunk's share of dw
    A* pb = pw + c;               // (C): of db
    std::fill(pw, pw + 2 * c, A(0));
    for (int64_t i = k * n / chunks; i < (k + 1) * n / chunks; ++i) {
      const T* xr = x + i * c;
      const T* g = dy + i * c;
      const A m = mean[i], r = rstd[i];
      // dx = r * (g*w - mean(g*w) - xhat * mean(g*w*xhat)), xhat = (x - m) * r
      A s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t j = 0; j < c; ++j) {
        const A gw = A(g[j]) * A(w[j]);
        s1 += gw;
        s2 += gw * (A(xr[j]) - m) * r;
      }
      s1 /= static_cast<A>(c);
      s2 /= static_cast<A>(c);
      T* dxr = dx + i * c;
      const T* dr = dres ? dres + i * c : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const A xhat = (A(xr[j]) - m) * r;
        const A d = r * (A(g[j]) * A(w[j]) - s1 - xhat * s2);
        dxr[j] = T(dr ? A(dr[j]) + d : d);
        pw[j] += A(g[j]) * xhat;
        pb[j] += A(g[j]);
      }
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < c; ++j) {
    A sw = 0, sb = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      sw += scratch[k * 2 * c + j];
      sb += scratch[k * 2 * c + c + j];
    }
    dw[j] += sw;
    if (db) db[j] += sb;
  }
}

template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t n, int64_t c, compute_t<T> eps, T* y,
                     compute_t<T>* rstd) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T* xr = x + i * c;
    T* yr = y + i * c;
    A v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < c; ++j) v += A(xr[j]) * A(xr[j]);
    const A r = A(1) / std::sqrt(v / static_cast<A>(c) + eps);
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) yr[j] = T(A(xr[j]) * r * A(w[j]));
    rstd[i] = r;
  }
}

template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const compute_t<T>* rstd, const T* dres,
                      int64_t n, int64_t c, T* dx, compute_t<T>* dw, compute_t<T>* scratch) {
  using A = compute_t<T>;
  const int64_t chunks = std::min(n, kLayerNormChunks);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    A* pw = scratch + k * c;  // (C): this chunk's share of dw
    std::fill(pw, pw + c, A(0));
    for (int64_t i = k * n / chunks; i < (k + 1) * n / chunks; ++i) {
      const T* xr = x + i * c;
      const T* g = dy + i * c;
      const A r = rstd[i];
      // dx = r * (g*w - xhat * mean(g*w*xhat)), xhat = x * r
      A s2 = 0;
#pragma omp simd reduction(+ : s2)
      for (int64_t j = 0; j < c; ++j) s2 += A(g[j]) * A(w[j]) * A(xr[j]) * r;
      s2 /= static_cast<A>(c);
      T* dxr = dx + i * c;
      const T* dr = dres ? dres + i * c : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const A xhat = A(xr[j]) * r, gj = A(g[j]);  // read before dx is written: dx may be dy
        pw[j] += gj * xhat;
        const A d = r * (gj * A(w[j]) - xhat * s2);
        dxr[j] = T(dr ? A(dr[j]) + d : d);
      }
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < c; ++j) {
    A sw = 0;
    for (int64_t k = 0; k < chunks; ++k) sw += scratch[k * c + j];
    dw[j] += sw;
  }
}

#define DTRAIN_INSTANTIATE(T)                                                                  \
  template void layernorm_forward<T>(const T*, const T*, const T*, int64_t, int64_t,           \
                                     compute_t<T>, T*, compute_t<T>*, compute_t<T>*);          \
  template void layernorm_backward<T>(const T*, const T*, const T*, const compute_t<T>*,       \
                                      const compute_t<T>*, const T*, int64_t, int64_t, T*,     \
                                      compute_t<T>*, compute_t<T>*, compute_t<T>*);       \
  template void rmsnorm_forward<T>(const T*, const T*, int64_t, int64_t, compute_t<T>, T*,     \
                                   compute_t<T>*);                                             \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const compute_t<T>*,         \
                                    const T*, int64_t, int64_t, T*, compute_t<T>*, compute_t<T>*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
