#include "model/dropout.h"

#include "core/rng.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/ops.h"
#include "model/planned.h"

namespace dtrain {

Dropout::Dropout(const std::string& name, double p)
    : Layer(name), p_(p), name_hash_(hash_string(name)) {
  if (!(p >= 0 && p < 1)) throw ConfigError(fmt::format("{}: dropout {} is not in [0, 1)", name, p));
}

void Dropout::plan(const Shape& in, DType act, Device device) {
  y_ = Tensor::empty(in, act, device);
  if (p_ > 0) {
    mask_ = Tensor::empty(in, DType::u8, device);
    dx_ = Tensor::empty(in, act, device);
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
  DTRAIN_CHECK(x.shape() == resid.shape(), "{}: residual {} for input {}", name(),
               resid.shape().str(), x.shape().str());
  if (!active(ctx)) {
    active_ = false;
    Tensor y = planned_view(y_, x.shape());
    dispatch_float(x.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::add<T>(resid.data<T>(), x.data<T>(), x.numel(), y.data<T>());
    });
    return y;
  }
  return run(x, &resid, ctx);
}

Tensor Dropout::run(const Tensor& x, const Tensor* resid, const Ctx& ctx) {
  active_ = true;
  Tensor y = planned_view(y_, x.shape());
  const int64_t samples = x.size(0);
  const uint64_t key = cpu::dropout_key(ctx.seed, ctx.step, name_hash_);
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::dropout_forward<T>(x.data<T>(), resid ? resid->data<T>() : nullptr, samples,
                            x.numel() / samples, p_, key, ctx.sample_offset,
                            mask_.data<uint8_t>(), y.data<T>());
  });
  return y;
}

Tensor Dropout::backward(const Tensor& dy, const Ctx&) {
  if (!active_) return dy;
  Tensor dx = planned_view(dx_, dy.shape());
  dispatch_float(dy.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::dropout_backward<T>(dy.data<T>(), mask_.data<uint8_t>(), dy.numel(), p_, dx.data<T>());
  });
  return dx;
}

Cost Dropout::cost(const Shape& in) const {
  Cost c;
  c.act_bytes = p_ > 0 ? in.numel() : 0;  // the u8 mask
  return c;
}

}  // namespace dtrain
