#include "model/layernorm.h"

#include "kernels/cpu/layernorm.h"
#include "model/planned.h"

namespace dtrain {

LayerNorm::LayerNorm(ParamStore& ps, const std::string& name, int64_t c, bool bias)
    : Layer(name), c_(c) {
  w_ = &ps.add(name + ".weight", Shape{c}, Init::ones(), false);
  if (bias) b_ = &ps.add(name + ".bias", Shape{c}, Init::zeros(), false);
}

void LayerNorm::plan(const Shape& in, DType act, Device device) {
  DTRAIN_CHECK(in[-1] == c_, "{}: input {} does not end in {}", name(), in.str(), c_);
  const int64_t rows = in.numel() / c_;
  y_ = Tensor::empty(in, act, device);
  mean_ = Tensor::empty(Shape{rows}, act, device);
  rstd_ = Tensor::empty(Shape{rows}, act, device);
  dx_ = Tensor::empty(in, act, device);
  scratch_ = Tensor::empty(Shape{cpu::layernorm_scratch_size(c_)}, act, device);
}

Tensor LayerNorm::forward(const Tensor& x, const Ctx&) {
  DTRAIN_CHECK(x.shape()[-1] == c_, "{}: input {} does not end in {}", name(), x.shape().str(), c_);
  x_ = x;
  Tensor y = planned_view(y_, x.shape());
  const int64_t rows = x.numel() / c_;
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::layernorm_forward<T>(x.data<T>(), w_->value.data<T>(), b_ ? b_->value.data<T>() : nullptr,
                              rows, c_, static_cast<T>(kEps), y.data<T>(), mean_.data<T>(),
                              rstd_.data<T>());
  });
  return y;
}

Tensor LayerNorm::backward(const Tensor& dy, const Ctx&) { return backward_add(dy, Tensor{}); }

Tensor LayerNorm::backward_add(const Tensor& dy, const Tensor& dres) {
  Tensor dx = planned_view(dx_, dy.shape());
  const int64_t rows = dy.numel() / c_;
  dispatch_float(dy.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::layernorm_backward<T>(dy.data<T>(), x_.data<T>(), w_->value.data<T>(), mean_.data<T>(),
                               rstd_.data<T>(), dres.defined() ? dres.data<T>() : nullptr, rows,
                               c_, dx.data<T>(), w_->grad.data<T>(),
                               b_ ? b_->grad.data<T>() : nullptr, scratch_.data<T>());
  });
  return dx;
}

Cost LayerNorm::cost(const Shape& in) const {
  const int64_t rows = in.numel() / c_;
  Cost c;
  c.params = c_ * (b_ ? 2 : 1);
  c.act_bytes = (in.numel() + 2 * rows) * 4;  // input, mean, rstd
  return c;
}

}  // namespace dtrain
