#include "kernels/cpu/batchnorm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/vmath.h"

namespace dtrain::cpu {

namespace {

// y = relu?(x * scale + shift + res) over one channel of one image (hw values),
// computed in A (the compute type), stored as T.
template <class T, class A>
inline void normalize_row(const T* x, const T* res, int64_t hw, A scale, A shift, bool relu, T* y) {
  if (res) {
#pragma omp simd
    for (int64_t p = 0; p < hw; ++p) {
      const A v = load_elem(x[p]) * scale + shift + load_elem(res[p]);
      store_elem(y[p], relu ? (v > A(0) ? v : A(0)) : v);
    }
  } else {
#pragma omp simd
    for (int64_t p = 0; p < hw; ++p) {
      const A v = load_elem(x[p]) * scale + shift;
      store_elem(y[p], relu ? (v > A(0) ? v : A(0)) : v);
    }
  }
}

}  // namespace

template <class T>
void batchnorm_forward_train(const BatchNormArgs& a, const T* x, const T* w, const T* b,
                             const T* res, T* y, compute_t<T>* mean, compute_t<T>* rstd,
                             compute_t<T>* running_mean, compute_t<T>* running_var) {
  using A = compute_t<T>;
  const int64_t n = a.n, C = a.c, hw = a.hw;
  const double count = static_cast<double>(n * hw);
#pragma omp parallel for schedule(static)
  for (int64_t ci = 0; ci < C; ++ci) {
    // One pass: sums of (x - x0) and its square, x0 = a value of the channel,
    // so that the variance does not cancel catastrophically.
    const A x0 = A(x[ci * hw]);
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* xr = x + (i * C + ci) * hw;  // (HW)
      A p1 = 0, p2 = 0;
#pragma omp simd reduction(+ : p1, p2)
      for (int64_t p = 0; p < hw; ++p) {
        const A d = load_elem(xr[p]) - x0;
        p1 += d;
        p2 += d * d;
      }
      s1 += static_cast<double>(p1);
      s2 += static_cast<double>(p2);
    }
    const double dm = s1 / count;
    const double m = static_cast<double>(x0) + dm;
    const A mt = static_cast<A>(m);
    const double var = std::max(0.0, s2 / count - dm * dm);
    const double r = 1.0 / std::sqrt(var + a.eps);
    mean[ci] = mt;
    rstd[ci] = static_cast<A>(r);
    running_mean[ci] = static_cast<A>((1 - a.momentum) * running_mean[ci] + a.momentum * m);
    running_var[ci] = static_cast<A>((1 - a.momentum) * running_var[ci] +
                                     a.momentum * var * count / (count - 1));
    const A scale = static_cast<A>(A(w[ci]) * r);
    const A shift = static_cast<A>(A(b[ci]) - m * A(w[ci]) * r);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (i * C + ci) * hw;
      normalize_row(x + off, res ? res + off : nullptr, hw, scale, shift, a.relu, y + off);
    }
  }
}

template <class T>
void batchnorm_forward_eval(const BatchNormArgs& a, const T* x, const T* w, const T* b,
                            const T* res, const compute_t<T>* running_mean,
                            const compute_t<T>* running_var, T* y, compute_t<T>* mean,
                            compute_t<T>* rstd) {
  using A = compute_t<T>;
  const int64_t n = a.n, C = a.c, hw = a.hw;
  for (int64_t ci = 0; ci < C; ++ci) {
    mean[ci] = running_mean[ci];
    rstd[ci] = static_cast<A>(1.0 / std::sqrt(static_cast<double>(running_var[ci]) + a.eps));
  }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < n * C; ++row) {
    const int64_t ci = row % C, off = row * hw;
    const A scale = A(w[ci]) * rstd[ci];
    const A shift = A(b[ci]) - mean[ci] * scale;
    normalize_row(x + off, res ? res + off : nullptr, hw, scale, shift, a.relu, y + off);
  }
}

namespace {

// Backward of one channel; Relu selects the masked variant at compile time so
// that the vectorised loops never read y when there is no ReLU.
template <bool Relu, class T>
void backward_channel(const BatchNormArgs& a, int64_t ci, bool batch_stats, const T* dy,
                      const T* y, const T* x, const T* w, const compute_t<T>* mean,
                      const compute_t<T>* rstd, T* dx, T* dz, compute_t<T>* dw, compute_t<T>* db) {
  using A = compute_t<T>;
  const int64_t n = a.n, C = a.c, hw = a.hw;
  const double count = static_cast<double>(n * hw);
  const A m = mean[ci];
  // Pass 1: g = dy masked by the ReLU, kept in dz (or, when there is no dz,
  // in dx, overwritten in pass 2); s1 = sum(g), s2 = sum(g * (x - mean)).
  T* gbuf = dz ? dz : (Relu ? dx : nullptr);
  double s1 = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (i * C + ci) * hw;
    const T* xr = x + off;
    const T* d = dy + off;
    const T* yr = Relu ? y + off : nullptr;
    A p1 = 0, p2 = 0;
    if (gbuf) {
      T* gr = gbuf + off;
#pragma omp simd reduction(+ : p1, p2)
      for (int64_t p = 0; p < hw; ++p) {
        A g = load_elem(d[p]);
        if constexpr (Relu) g = load_elem(yr[p]) > A(0) ? g : A(0);
        store_elem(gr[p], g);  // exact: g is dy or 0
        p1 += g;
        p2 += g * (load_elem(xr[p]) - m);
      }
    } else {
#pragma omp simd reduction(+ : p1, p2)
      for (int64_t p = 0; p < hw; ++p) {
        p1 += load_elem(d[p]);
        p2 += load_elem(d[p]) * (load_elem(xr[p]) - m);
      }
    }
    s1 += static_cast<double>(p1);
    s2 += static_cast<double>(p2);
  }
  const double r = static_cast<double>(rstd[ci]);
  dw[ci] += static_cast<A>(s2 * r);
  db[ci] += static_cast<A>(s1);
  // Pass 2: dx = w * r * (g - s1 / count - (x - mean) * r^2 * s2 / count) with
  // batch statistics, w * r * g with fixed ones.
  const A k = static_cast<A>(A(w[ci]) * r);
  const A c1 = batch_stats ? static_cast<A>(s1 / count) : A(0);
  const A c2 = batch_stats ? static_cast<A>(r * r * s2 / count) : A(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (i * C + ci) * hw;
    const T* xr = x + off;
    const T* g = (gbuf ? gbuf : dy) + off;
    T* dxr = dx + off;
#pragma omp simd
    for (int64_t p = 0; p < hw; ++p) store_elem(dxr[p], k * (load_elem(g[p]) - c1 - (load_elem(xr[p]) - m) * c2));
  }
}

}  // namespace

template <class T>
void batchnorm_backward(const BatchNormArgs& a, bool batch_stats, const T* dy, const T* y,
                        const T* x, const T* w, const compute_t<T>* mean, const compute_t<T>* rstd,
                        T* dx, T* dz, compute_t<T>* dw, compute_t<T>* db) {
#pragma omp parallel for schedule(static)
  for (int64_t ci = 0; ci < a.c; ++ci) {
    if (a.relu)
      backward_channel<true>(a, ci, batch_stats, dy, y, x, w, mean, rstd, dx, dz, dw, db);
    else
      backward_channel<false>(a, ci, batch_stats, dy, y, x, w, mean, rstd, dx, dz, dw, db);
  }
}

#define DTRAIN_INSTANTIATE(T, A)                                                                 \
  template void batchnorm_forward_train<T>(const BatchNormArgs&, const T*, const T*, const T*,  \
                                           const T*, T*, A*, A*, A*, A*);                        \
  template void batchnorm_forward_eval<T>(const BatchNormArgs&, const T*, const T*, const T*,   \
                                          const T*, const A*, const A*, T*, A*, A*);             \
  template void batchnorm_backward<T>(const BatchNormArgs&, bool, const T*, const T*, const T*, \
                                      const T*, const A*, const A*, T*, T*, A*, A*);
DTRAIN_INSTANTIATE(float, float)
DTRAIN_INSTANTIATE(double, double)
DTRAIN_INSTANTIATE(bf16, float)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
