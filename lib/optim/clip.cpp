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

double grad_sum_squares(const ParamStore& params, bool replicated) {
  double sum = 0;
  for (const auto& p : params.all()) {
    if (!p->trainable || !p->primary || (!p->shard.split() && !replicated)) continue;
    sum += dispatch_float(p->grad.dtype(), [&](auto t) {
      using T = decltype(t);
      return cpu::sum_squares(p->grad.template data<T>(), p->numel());
    });
  }
  return sum;
}

double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

}  // namespace dtrain
