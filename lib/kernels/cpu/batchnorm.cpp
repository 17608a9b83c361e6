#include "kernels/cpu/batchnorm.h"

#include <algorithm>
#include <cmath>

namespace dtrain::cpu {

namespace {

// y = relu?(x * scale + shift + res) over one channel of one image (hw values).
template <class T>
inline void normalize_row(const T* x, const T* res, int64_t hw, T scale, T shift, bool relu, T* y) {
  if (res) {
#pragma omp simd
    for (int64_t p = 0; p < hw; ++p) {
      const T v = x[p] * scale + shift + res[p];
      y[p] = relu ? (v > T(0) ? v : T(0)) : v;
    }
  } else {
#pragma omp simd
    for (int64_t p = 0; p < hw; ++p) {
      const T v = x[p] * scale + shift;
      y[p] = relu ? (v > T(0) ? v : T(0)) : v;
    }
  }
}

}  // namespace

template <class T>
void batchnorm_forward_train(const BatchNormArgs& a, const T* x, const T* w, const T* b,
                             const T* res, T* y, T* mean, T* rstd, T* running_mean,
                             T* running_var) {
  const int64_t n = a.n, C = a.c, hw = a.hw;
  const double count = static_cast<double>(n * hw);
#pragma omp parallel for schedule(static)
  for (int64_t ci = 0; ci < C; ++ci) {
    // One pass: sums of (x - x0) and its square, x0 = a value of the channel,
    // so that the variance does not cancel catastrophically.
    const T x0 = x[ci * hw];
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* xr = x + (i * C + ci) * hw;  // (HW)
      T p1 = 0, p2 = 0;
#pragma omp simd reduction(+ : p1, p2)
      for (int64_t p = 0; p < hw; ++p) {
        const T d = xr[p] - x0;
        p1 += d;
        p2 += d * d;
      }
      s1 += static_cast<double>(p1);
      s2 += static_cast<double>(p2);
    }
    const double dm = s1 / count;
    const double m = static_cast<double>(x0) + dm;
    const T mt = static_cast<T>(m);
    const double var = std::max(0.0, s2 / count - dm * dm);
    const double r = 1.0 / std::sqrt(var + a.eps);
    mean[ci] = mt;
    rstd[ci] = static_cast<T>(r);
    running_mean[ci] = static_cast<T>((1 - a.momentum) * running_mean[ci] + a.momentum * m);
    running_var[ci] = static_cast<T>((1 - a.momentum) * running_var[ci] +
                                     a.momentum * var * count / (count - 1));
    const T scale = static_cast<T>(w[ci] * r);
    const T shift = static_cast<T>(b[ci] - m * w[ci] * r);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (i * C + ci) * hw;
      normalize_row(x + off, res ? res + off : nullptr, hw, scale, shift, a.relu, y + off);
    }
  }
}

template <class T>
void batchnorm_forward_eval(const BatchNormArgs& a, const T* x, const T* w, const T* b,
                            const T* res, const T* running_mean, const T* running_var, T* y,
                            T* mean, T* rstd) {
  const int64_t n = a.n, C = a.c, hw = a.hw;
  for (int64_t ci = 0; ci < C; ++ci) {
    mean[ci] = running_mean[ci];
    rstd[ci] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var[ci]) + a.eps));
  }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < n * C; ++row) {
    const int64_t ci = row % C, off = row * hw;
    const T scale = w[ci] * rstd[ci];
    const T shift = b[ci] - mean[ci] * scale;
    normalize_row(x + off, res ? res + off : nullptr, hw, scale, shift, a.relu, y + off);
  }
}

namespace {

// Backward of one channel; Relu selects the masked variant at compile time so
// that the vectorised loops never read y when there is no ReLU.
template <bool Relu, class T>
void backward_channel(const BatchNormArgs& a, int64_t ci, bool batch_stats, const T* dy,
                      const T* y, const T* x, const T* w, const T* mean, const T* rstd, T* dx,
                      T* dz, T* dw, T* db) {
  const int64_t n = a.n, C = a.c, hw = a.hw;
  const double count = static_cast<double>(n * hw);
  const T m = mean[ci];
  // Pass 1: g = dy masked by the ReLU, kept in dz (or, when there is no dz,
  // in dx, overwritten in pass 2); s1 = sum(g), s2 = sum(g * (x - mean)).
  T* gbuf = dz ? dz : (Relu ? dx : nullptr);
  double s1 = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (i * C + ci) * hw;
    const T* xr = x + off;
    const T* d = dy + off;
    const T* yr = Relu ? y + off : nullptr;
    T p1 = 0, p2 = 0;
    if (gbuf) {
      T* gr = gbuf + off;
#pragma omp simd reduction(+ : p1, p2)
      for (int64_t p = 0; p < hw; ++p) {
        T g = d[p];
        if constexpr (Relu) g = yr[p] > T(0) ? g : T(0);
        gr[p] = g;
        p1 += g;
        p2 += g * (xr[p] - m);
      }
    } else {
#pragma omp simd reduction(+ : p1, p2)
      for (int64_t p = 0; p < hw; ++p) {
        p1 += d[p];
        p2 += d[p] * (xr[p] - m);
      }
    }
    s1 += static_cast<double>(p1);
    s2 += static_cast<double>(p2);
  }
  const double r = static_cast<double>(rstd[ci]);
  dw[ci] += static_cast<T>(s2 * r);
  db[ci] += static_cast<T>(s1);
  // Pass 2: dx = w * r * (g - s1 / count - (x - mean) * r^2 * s2 / count) with
  // batch statistics, w * r * g with fixed ones.
  const T k = static_cast<T>(w[ci] * r);
  const T c1 = batch_stats ? static_cast<T>(s1 / count) : T(0);
  const T c2 = batch_stats ? static_cast<T>(r * r * s2 / count) : T(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (i * C + ci) * hw;
    const T* xr = x + off;
    const T* g = (gbuf ? gbuf : dy) + off;
    T* dxr = dx + off;
#pragma omp simd
    for (int64_t p = 0; p < hw; ++p) dxr[p] = k * (g[p] - c1 - (xr[p] - m) * c2);
  }
}

}  // namespace

template <class T>
void batchnorm_backward(const BatchNormArgs& a, bool batch_stats, const T* dy, const T* y,
                        const T* x, const T* w, const T* mean, const T* rstd, T* dx, T* dz,
                        T* dw, T* db) {
#pragma omp parallel for schedule(static)
  for (int64_t ci = 0; ci < a.c; ++ci) {
    if (a.relu)
      backward_channel<true>(a, ci, batch_stats, dy, y, x, w, mean, rstd, dx, dz, dw, db);
    else
      backward_channel<false>(a, ci, batch_stats, dy, y, x, w, mean, rstd, dx, dz, dw, db);
  }
}

#define DTRAIN_INSTANTIATE(T)                                                                    \
  template void batchnorm_forward_train<T>(const BatchNormArgs&, const T*, const T*, const T*,  \
                                           const T*, T*, T*, T*, T*, T*);                        \
  template void batchnorm_forward_eval<T>(const BatchNormArgs&, const T*, const T*, const T*,   \
                                          const T*, const T*, const T*, T*, T*, T*);             \
  template void batchnorm_backward<T>(const BatchNormArgs&, bool, const T*, const T*, const T*, \
                                      const T*, const T*, const T*, T*, T*, T*, T*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
