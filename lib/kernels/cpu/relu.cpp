#include "kernels/cpu/relu.h"

namespace dtrain::cpu {

template <class T>
void relu_forward(const T* x, int64_t n, T* y) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <class T>
void relu_backward(const T* y, const T* dy, int64_t n, T* dx) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template void relu_forward<float>(const float*, int64_t, float*);
template void relu_forward<double>(const double*, int64_t, double*);
template void relu_backward<float>(const float*, const float*, int64_t, float*);
template void relu_backward<double>(const double*, const double*, int64_t, double*);

}  // namespace dtrain::cpu
