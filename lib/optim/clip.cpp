#include <cmath>

#include "kernels/cpu/ops.h"
#include "optim/optimizer.h"

namespace dtrain {

double grad_norm(ParamStore& params) {
  Tensor& g = params.grads();
  return dispatch_float(g.dtype(), [&](auto t) {
    using T = decltype(t);
    return std::sqrt(cpu::sum_squares(g.data<T>(), g.numel()));
  });
}

double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

}  // namespace dtrain
