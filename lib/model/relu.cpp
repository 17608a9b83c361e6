#include "model/relu.h"

#include "kernels/cpu/relu.h"
#include "model/planned.h"

namespace dtrain {

void ReLU::plan(const Shape& in, DType act, Device device) {
  y_ = Tensor::empty(in, act, device);
  dx_ = Tensor::empty(in, act, device);
}

Tensor ReLU::forward(const Tensor& x, const Ctx&) {
  Tensor y = planned_view(y_, x.shape());
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::relu_forward<T>(x.data<T>(), x.numel(), y.data<T>());
  });
  return y;
}

Tensor ReLU::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = planned_view(dx_, dy.shape());
  dispatch_float(dy.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::relu_backward<T>(planned_view(y_, dy.shape()).data<T>(), dy.data<T>(), dy.numel(),
                          dx.data<T>());
  });
  return dx;
}

Cost ReLU::cost(const Shape& in) const {
  Cost c;
  c.act_bytes = in.numel() * 4;  // the output (the mask)
  return c;
}

}  // namespace dtrain
