#include "model/dropout.h"

#include "ops/ops.h"
#include "core/rng.h"
#include "model/planned.h"

namespace dtrain {

Dropout::Dropout(const std::string& name, double p, bool adds_residual)
    : Layer(name), p_(p), adds_residual_(adds_residual), name_hash_(hash_string(name)) {
  if (!(p >= 0 && p < 1)) throw ConfigError(fmt::format("{}: dropout {} is not in [0, 1)", name, p));
}

void Dropout::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  if (p_ > 0 || adds_residual_) y_ = buffer("y", in, act, ex);
  if (p_ > 0) {
    mask_ = buffer("mask", in, DType::u8, ex);
    dx_ = work_buffer("dx", in, act, ex);
  }
}

Tensor Dropout::forward(const Tensor& x, const Ctx& ctx) {
  if (!active(ctx)) {
    active_ = false;
    return x;
  }
  return run(x, nullptr, ctx);
}

Tensor Dropout::forward_add(const Tensor& x, const Tensor& resid, const Ctx& ctx) {
  DTRAIN_CHECK(y_.defined(), "{}: forward_add on a dropout of rate 0 built without a residual", name());
  DTRAIN_CHECK(x.shape() == resid.shape(), "{}: residual {} for input {}", name(),
               resid.shape().str(), x.shape().str());
  if (!active(ctx)) {
    active_ = false;
    Tensor y = planned_view(y_, x.shape());
    ops::add(ex(), resid, x, y);
    return y;
  }
  return run(x, &resid, ctx);
}

Tensor Dropout::run(const Tensor& x, const Tensor* resid, const Ctx& ctx) {
  active_ = true;
  Tensor y = planned_view(y_, x.shape());
  const uint64_t key = ops::dropout_key(ctx.seed, ctx.step, name_hash_);
  ops::dropout_forward(ex(), x, resid ? *resid : Tensor{}, p_, key, ctx.sample_offset, mask_, y,
                       seq_.first_element(x));
  return y;
}

Tensor Dropout::backward(const Tensor& dy, const Ctx&) {
  if (!active_) return dy;
  Tensor dx = planned_view(dx_, dy.shape());
  ops::dropout_backward(ex(), dy, mask_, p_, dx);
  return dx;
}

Cost Dropout::cost(const Shape& in) const {
  Cost c;
  c.act_bytes = p_ > 0 ? in.numel() : 0;  // the u8 mask
  c.work_bytes = p_ > 0 ? in.numel() * act_size() : 0;  // dL/dx
  return c;
}

}  // namespace dtrain
