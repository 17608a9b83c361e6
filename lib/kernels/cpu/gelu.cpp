#include "kernels/cpu/gelu.h"

#include "kernels/cpu/vmath.h"

namespace dtrain::cpu {

namespace {
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kCubic = 0.044715;
}  // namespace

template <class T>
void gelu_forward(const T* x, int64_t n, T* y) {
  const T a = static_cast<T>(kSqrt2OverPi), b = static_cast<T>(kCubic);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T t = tanh_fast(a * (v + b * v * v * v));
    y[i] = T(0.5) * v * (T(1) + t);
  }
}

template <class T>
void gelu_backward(const T* x, const T* dy, int64_t n, T* dx) {
  const T a = static_cast<T>(kSqrt2OverPi), b = static_cast<T>(kCubic);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T t = tanh_fast(a * (v + b * v * v * v));
    const T du = a * (T(1) + T(3) * b * v * v);  // d/dx of tanh's argument
    dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
  }
}

template void gelu_forward<float>(const float*, int64_t, float*);
template void gelu_forward<double>(const double*, int64_t, double*);
template void gelu_backward<float>(const float*, const float*, int64_t, float*);
template void gelu_backward<double>(const double*, const double*, int64_t, double*);

}  // namespace dtrain::cpu
