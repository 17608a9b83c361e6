#include <cmath>

#include "kernels/cpu/ops.h"
#include "optim/optimizer.h"

namespace dtrain {

double clip_grad_norm(ParamStore& params, double max_norm) {
  Tensor& g = params.grads();
  double norm = 0;
  dispatch_float(g.dtype(), [&](auto t) {
    using T = decltype(t);
    norm = std::sqrt(cpu::sum_squares(g.data<T>(), g.numel()));
    if (max_norm > 0 && norm > max_norm) {
      const T s = static_cast<T>(max_norm / (norm + 1e-6));
      T* p = g.data<T>();
      const int64_t n = g.numel();
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) p[i] *= s;
    }
  });
  return norm;
}

}  // namespace dtrain
