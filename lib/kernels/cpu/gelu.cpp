#include "kernels/cpu/gelu.h"

#include "kernels/cpu/vmath.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cpu {

template <class T>
void gelu_forward(const T* x, int64_t n, T* y) {
  using A = compute_t<T>;  // storage T, arithmetic A (float for bf16)
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const A v = load_elem(x[i]);
    store_elem(y[i], math::gelu_tanh(v, tanh_fast(math::gelu_tanh_arg(v))));
  }
}

template <class T>
void gelu_backward(const T* x, const T* dy, int64_t n, T* dx) {
  using A = compute_t<T>;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const A v = load_elem(x[i]);
    store_elem(dx[i], load_elem(dy[i]) * math::gelu_tanh_grad(v, tanh_fast(math::gelu_tanh_arg(v))));
  }
}

namespace {

template <class A>
inline A sigmoid(A a) {
  return A(1) / (A(1) + exp_fast(-a));
}

}  // namespace

template <class T>
void swiglu_forward(const T* f, int64_t n, int64_t h, T* g) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const T* a = f + r * 2 * h;
    const T* u = a + h;
    T* gr = g + r * h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      const A av = load_elem(a[j]);
      store_elem(gr[j], math::swiglu(av, A(load_elem(u[j])), sigmoid(av)));
    }
  }
}

template <class T>
void swiglu_backward(const T* f, const T* dg, int64_t n, int64_t h, T* df) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const T* a = f + r * 2 * h;
    const T* u = a + h;
    const T* d = dg + r * h;
    T* da = df + r * 2 * h;
    T* du = da + h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      const A av = load_elem(a[j]);
      A ga, gu;
      math::swiglu_grad(av, A(load_elem(u[j])), sigmoid(av), A(load_elem(d[j])), ga, gu);
      store_elem(da[j], ga);
      store_elem(du[j], gu);
    }
  }
}

template void gelu_forward<float>(const float*, int64_t, float*);
template void gelu_forward<double>(const double*, int64_t, double*);
template void gelu_backward<float>(const float*, const float*, int64_t, float*);
template void gelu_backward<double>(const double*, const double*, int64_t, double*);
template void gelu_forward<bf16>(const bf16*, int64_t, bf16*);
template void gelu_backward<bf16>(const bf16*, const bf16*, int64_t, bf16*);
#define DTRAIN_INSTANTIATE(T)                                               \
  template void swiglu_forward<T>(const T*, int64_t, int64_t, T*);         \
  template void swiglu_backward<T>(const T*, const T*, int64_t, int64_t, T*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
