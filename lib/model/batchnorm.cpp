#include "model/batchnorm.h"

#include "ops/cnn.h"
#include "ops/ops.h"

#include "model/planned.h"

namespace dtrain {

BatchNorm2d::BatchNorm2d(ParamStore& ps, const std::string& name, int64_t c, bool relu,
                         bool residual)
    : Layer(name), c_(c), relu_(relu), residual_(residual) {
  w_ = &ps.add(name + ".weight", Shape{c}, Init::ones(), false);
  b_ = &ps.add(name + ".bias", Shape{c}, Init::zeros(), false);
  running_mean_ = &ps.add_buffer(name + ".running_mean", Shape{c}, Init::zeros());
  running_var_ = &ps.add_buffer(name + ".running_var", Shape{c}, Init::ones());
}

ops::BatchNormArgs BatchNorm2d::args(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 4 && in[1] == c_, "{}: input {} is not (B, {}, H, W)", name(), in.str(), c_);
  ops::BatchNormArgs a;
  a.n = in[0];
  a.c = c_;
  a.hw = in[2] * in[3];
  a.eps = kEps;
  a.momentum = kMomentum;
  a.relu = relu_;
  return a;
}

void BatchNorm2d::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  args(in);
  y_ = Tensor::empty(in, act, ex.device);
  dx_ = Tensor::empty(in, act, ex.device);
  if (residual_ && relu_) dz_ = Tensor::empty(in, act, ex.device);
  mean_ = Tensor::empty(Shape{c_}, ops::compute_dtype(act), ex.device);  // fp32 statistics under bf16
  rstd_ = Tensor::empty(Shape{c_}, ops::compute_dtype(act), ex.device);
}

Tensor BatchNorm2d::forward_add(const Tensor& x, const Tensor& res, const Ctx& ctx) {
  const ops::BatchNormArgs a = args(x.shape());
  DTRAIN_CHECK(!res.defined() || (residual_ && res.shape() == x.shape()),
               "{}: residual {} for input {}", name(), res.defined() ? res.shape().str() : "", x.shape().str());
  if (ctx.training && a.n * a.hw < 2)
    throw RuntimeError(fmt::format("{}: batch norm in training needs more than one value per "
                                   "channel (batch {} x {} pixels)", name(), a.n, a.hw));
  x_ = x;
  batch_stats_ = ctx.training;
  Tensor y = planned_view(y_, x.shape());
  if (ctx.training)
    ops::batchnorm_forward_train(ex(), a, x, w_->compute, b_->compute, res, y, mean_, rstd_,
                                 running_mean_->value, running_var_->value);
  else
    ops::batchnorm_forward_eval(ex(), a, x, w_->compute, b_->compute, res, running_mean_->value,
                                running_var_->value, y, mean_, rstd_);
  return y;
}

Tensor BatchNorm2d::backward(const Tensor& dy, const Ctx&) {
  const ops::BatchNormArgs a = args(dy.shape());
  Tensor dx = planned_view(dx_, dy.shape());
  Tensor dz = dz_.defined() ? planned_view(dz_, dy.shape()) : Tensor{};
  last_dy_ = dz.defined() ? dz : dy;
  ops::batchnorm_backward(ex(), a, batch_stats_, dy, planned_view(y_, dy.shape()), x_, w_->compute,
                          mean_, rstd_, dx, dz, w_->grad, b_->grad);
  return dx;
}

Tensor BatchNorm2d::residual_grad() const {
  DTRAIN_CHECK(residual_ && last_dy_.defined(), "{}: no residual gradient", name());
  return last_dy_;
}

Cost BatchNorm2d::cost(const Shape& in) const {
  Cost c;
  c.params = 2 * c_;
  // The input and the (C) statistics (fp32 under bf16). Its output, which
  // the ReLU's mask is read from, is the next layer's input: that layer
  // counts it (a block's last: the block's next).
  c.act_bytes = in.numel() * act_size() + 2 * c_ * stat_size();
  // dL/dx, and with a residual under the ReLU the residual's gradient.
  c.work_bytes = in.numel() * act_size() * (residual_ && relu_ ? 2 : 1);
  return c;
}

}  // namespace dtrain
