#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"
#include "optim/optimizer.h"

namespace dtrain {

double grad_sum_squares(const ParamStore& params, bool replicated) {
  std::vector<const Param*> ps;
  for (const auto& p : params.all())
    if (p->trainable && p->primary && (p->shard.split() || replicated)) ps.push_back(p.get());
  if (ps.empty()) return 0;
  return dispatch_float(ps[0]->grad.dtype(), [&](auto t) {
    using T = decltype(t);
    std::vector<const T*> xs;
    std::vector<int64_t> ns;
    for (const Param* p : ps) {
      xs.push_back(p->grad.template data<T>());
      ns.push_back(p->numel());
    }
    // The same bits as summing cpu::sum_squares per parameter in order.
    return cpu::sum_squares_many(xs.data(), ns.data(), static_cast<int64_t>(xs.size()));
  });
}

double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

}  // namespace dtrain
