#include "kernels/cpu/relu.h"

namespace dtrain::cpu {

// Compared in the compute type (float for bf16); the value itself is passed
// through, so bf16 outputs are exact.
template <class T>
void relu_forward(const T* x, int64_t n, T* y) {
  using A = compute_t<T>;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = A(x[i]) > A(0) ? x[i] : T(0);
}

template <class T>
void relu_backward(const T* y, const T* dy, int64_t n, T* dx) {
  using A = compute_t<T>;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = A(y[i]) > A(0) ? dy[i] : T(0);
}

template void relu_forward<float>(const float*, int64_t, float*);
template void relu_forward<double>(const double*, int64_t, double*);
template void relu_forward<bf16>(const bf16*, int64_t, bf16*);
template void relu_backward<float>(const float*, const float*, int64_t, float*);
template void relu_backward<double>(const double*, const double*, int64_t, double*);
template void relu_backward<bf16>(const bf16*, const bf16*, int64_t, bf16*);

}  // namespace dtrain::cpu
