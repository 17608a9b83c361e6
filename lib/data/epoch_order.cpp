#include "data/epoch_order.h"

#include "core/rng.h"

namespace dtrain::data_detail {

void EpochOrder::select(int64_t e) {
  if (!shuffle_ || e == perm_epoch_) return;
  random_permutation(hash_combine(seed_, static_cast<uint64_t>(e)), perm_, n_);
  perm_epoch_ = e;
}

}  // namespace dtrain::data_detail
