#include "model/layernorm.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

LayerNorm::LayerNorm(ParamStore& ps, const std::string& name, int64_t c, bool bias, bool rms)
    : Layer(name), c_(c), rms_(rms) {
  w_ = &ps.add(name + ".weight", Shape{c}, Init::ones(), false);
  if (bias && !rms) b_ = &ps.add(name + ".bias", Shape{c}, Init::zeros(), false);
}

void LayerNorm::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  DTRAIN_CHECK(in[-1] == c_, "{}: input {} does not end in {}", name(), in.str(), c_);
  const int64_t rows = in.numel() / c_;
  y_ = buffer("y", in, act, ex);
  if (!rms_) mean_ = buffer("mean", Shape{rows}, ops::compute_dtype(act), ex);
  rstd_ = buffer("rstd", Shape{rows}, ops::compute_dtype(act), ex);
  dx_ = work_buffer("dx", in, act, ex);
  scratch_ = work_buffer("scratch", Shape{rms_ ? ops::rmsnorm_scratch(c_) : ops::layernorm_scratch(c_)},
                         ops::compute_dtype(act), ex);
}

Tensor LayerNorm::forward(const Tensor& x, const Ctx&) {
  DTRAIN_CHECK(x.shape()[-1] == c_, "{}: input {} does not end in {}", name(), x.shape().str(), c_);
  x_ = x;
  Tensor y = planned_view(y_, x.shape());
  const int64_t rows = x.numel() / c_;
  if (rms_) {
    ops::rmsnorm_forward(ex(), x, w_->compute, kEps, y, rstd_.narrow0(0, rows));
    return y;
  }
  ops::layernorm_forward(ex(), x, w_->compute, b_ ? b_->compute : Tensor{}, kEps, y,
                         mean_.narrow0(0, rows), rstd_.narrow0(0, rows));
  return y;
}

Tensor LayerNorm::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor dx = backward_add(dy, Tensor{});
  sync_grads(ctx);
  return dx;
}

void LayerNorm::sync_grads(const Ctx& ctx) {
  if (!seq_tp_ || !ctx.grads_final) return;
  WorkHandle w = seq_tp_->all_reduce(w_->grad, ReduceOp::sum);
  if (b_) seq_tp_->all_reduce(b_->grad, ReduceOp::sum)->wait();
  w->wait();
}

Tensor LayerNorm::backward_add(const Tensor& dy, const Tensor& dres) {
  Tensor dx = planned_view(dx_, dy.shape());
  const int64_t rows = dy.numel() / c_;
  if (rms_) {
    ops::rmsnorm_backward(ex(), dy, x_, w_->compute, rstd_.narrow0(0, rows), dres, dx, w_->grad, scratch_);
    return dx;
  }
  ops::layernorm_backward(ex(), dy, x_, w_->compute, mean_.narrow0(0, rows), rstd_.narrow0(0, rows),
                          dres, dx, w_->grad, b_ ? b_->grad : Tensor{}, scratch_);
  return dx;
}

Cost LayerNorm::cost(const Shape& in) const {
  const int64_t rows = in.numel() / c_;
  Cost c;
  c.params = c_ * (b_ ? 2 : 1);
  c.act_bytes = in.numel() * act_size() + (rms_ ? 1 : 2) * rows * stat_size();  // input, mean, rstd
  c.work_bytes = in.numel() * act_size() +  // dL/dx, scratch
                 (rms_ ? ops::rmsnorm_scratch(c_) : ops::layernorm_scratch(c_)) * stat_size();
  return c;
}

}  // namespace dtrain
