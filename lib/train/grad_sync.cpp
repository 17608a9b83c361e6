#include "train/grad_sync.h"

#include <algorithm>
#include <chrono>

namespace dtrain {

GradReducer::GradReducer(ParamStore& params, Communicator& dp, double bucket_mb)
    : params_(params), dp_(dp) {
  const int64_t n = params.grads().numel();
  const auto per = std::max<int64_t>(
      1024, static_cast<int64_t>(bucket_mb * 1024 * 1024 / static_cast<double>(dtype_size(params.grads().dtype()))));
  // Buckets from the back of the buffer (the first gradients to be ready),
  // so the last bucket, finished last, is the short one at the front.
  std::vector<int64_t> b{n};
  while (b.back() > 0) b.push_back(std::max<int64_t>(0, b.back() - per));
  std::reverse(b.begin(), b.end());
  bounds_ = b;
  next_ = buckets();
}

int64_t GradReducer::offset_of_param(size_t index) const {
  const auto& all = params_.all();
  for (size_t i = index; i < all.size(); ++i)
    if (all[i]->trainable) return all[i]->offset;
  return params_.grads().numel();
}

void GradReducer::begin() {
  DTRAIN_CHECK(pending_.empty(), "gradient reduction started twice");
  next_ = buckets();
}

void GradReducer::ready_from(int64_t offset) {
  if (dp_.size() == 1) return;
  while (next_ > 0 && bounds_[next_ - 1] >= offset) {
    --next_;
    pending_.push_back(dp_.all_reduce(
        params_.grads().flat_range(bounds_[next_], bounds_[next_ + 1] - bounds_[next_]), ReduceOp::sum));
  }
  for (auto& w : pending_) w->test();
}

double GradReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  ready_from(0);
  for (auto& w : pending_) w->wait();
  pending_.clear();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace dtrain
