#include <cmath>
#include <vector>

#include "ops/ops.h"
#include "optim/optimizer.h"

namespace dtrain {

double grad_sum_squares(const ParamStore& params, bool replicated) {
  std::vector<Tensor> gs;
  for (const auto& p : params.all())
    if (p->trainable && p->primary && (p->shard.split() || replicated)) gs.push_back(p->grad);
  // The same bits as summing each parameter's squares in order.
  return ops::sum_squares(params.exec(), gs);
}

double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

}  // namespace dtrain
