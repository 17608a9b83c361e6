#include "train/local_sync.h"

#include "ops/ops.h"

namespace dtrain {

LocalSync::LocalSync(ParamStore& params, Communicator& dp, const ParallelConfig& cfg, const Exec& ex)
    : params_(params), dp_(dp), cfg_(cfg), ex_(ex) {
  Tensor& v = params_.values();
  const Device dev = v.device();
  anchor_ = Tensor::empty(v.shape(), v.dtype(), dev);
  delta_ = Tensor::empty(v.shape(), v.dtype(), dev);
  saved_ = Tensor::empty(v.shape(), v.dtype(), dev);
  if (cfg_.outer_optim == "nesterov") mom_ = Tensor::zeros(v.shape(), v.dtype(), dev);
  Tensor& b = params_.buffers();
  if (b.defined() && b.numel() > 0) {
    anchor_buf_ = Tensor::empty(b.shape(), b.dtype(), dev);
    saved_buf_ = Tensor::empty(b.shape(), b.dtype(), dev);
  }
  reset_anchor();
}

bool LocalSync::due(int64_t step, int64_t steps) const {
  return (step + 1) % cfg_.sync_every == 0 || step + 1 == steps;
}

void LocalSync::reset_anchor() {
  ops::copy(ex_, params_.values(), anchor_);
  if (anchor_buf_.defined()) ops::copy(ex_, params_.buffers(), anchor_buf_);
}

void LocalSync::sync() {
  Tensor& v = params_.values();
  const double n = dp_.size();
  if (dp_.size() == 1 && !mom_.defined() && cfg_.outer_lr == 1.0) {  // plain averaging of one: the identity
    reset_anchor();
    ++syncs_;
    return;
  }
  // delta = v - anchor (the negation is exact, so this is one rounding).
  ops::copy(ex_, anchor_, delta_);
  ops::scale(ex_, delta_, -1.0);
  ops::add(ex_, v, delta_, delta_);
  // The mean change over the replicas: one all-reduce of this rank's slice.
  if (dp_.size() > 1) dp_.all_reduce(delta_, ReduceOp::sum)->wait();
  ops::scale(ex_, delta_, 1.0 / n);
  if (mom_.defined()) {
    // m = mu m + mean; step = mean + mu m (v is free scratch until the end).
    const double mu = cfg_.outer_momentum;
    ops::scale(ex_, mom_, mu);
    ops::add(ex_, mom_, delta_, mom_);
    ops::copy(ex_, mom_, v);
    ops::scale(ex_, v, mu);
    ops::add(ex_, delta_, v, delta_);
  }
  if (cfg_.outer_lr != 1.0) ops::scale(ex_, delta_, cfg_.outer_lr);
  ops::add(ex_, anchor_, delta_, anchor_);
  ops::copy(ex_, anchor_, v);
  params_.sync_compute();
  // Batch-norm running statistics: the replicas' mean.
  if (anchor_buf_.defined()) {
    Tensor& b = params_.buffers();
    if (dp_.size() > 1) dp_.all_reduce(b, ReduceOp::sum)->wait();
    ops::scale(ex_, b, 1.0 / n);
    ops::copy(ex_, b, anchor_buf_);
  }
  ++syncs_;
}

void LocalSync::swap_in_anchor() {
  ops::copy(ex_, params_.values(), saved_);
  ops::copy(ex_, anchor_, params_.values());
  params_.sync_compute();
  if (anchor_buf_.defined()) {
    ops::copy(ex_, params_.buffers(), saved_buf_);
    ops::copy(ex_, anchor_buf_, params_.buffers());
  }
}

void LocalSync::swap_back() {
  ops::copy(ex_, saved_, params_.values());
  params_.sync_compute();
  if (anchor_buf_.defined()) ops::copy(ex_, saved_buf_, params_.buffers());
}

}  // namespace dtrain
