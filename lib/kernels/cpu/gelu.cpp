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

template void gelu_forward<float>(const float*, int64_t, float*);
template void gelu_forward<double>(const double*, int64_t, double*);
template void gelu_backward<float>(const float*, const float*, int64_t, float*);
template void gelu_backward<double>(const double*, const double*, int64_t, double*);
template void gelu_forward<bf16>(const bf16*, int64_t, bf16*);
template void gelu_backward<bf16>(const bf16*, const bf16*, int64_t, bf16*);

}  // namespace dtrain::cpu
