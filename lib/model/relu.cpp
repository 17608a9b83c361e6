#include "model/relu.h"

#include "ops/cnn.h"
#include "ops/ops.h"

#include "model/planned.h"

namespace dtrain {

void ReLU::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  y_ = Tensor::empty(in, act, ex.device);
  dx_ = Tensor::empty(in, act, ex.device);
}

Tensor ReLU::forward(const Tensor& x, const Ctx&) {
  Tensor y = planned_view(y_, x.shape());
  ops::relu_forward(ex(), x, y);
  return y;
}

Tensor ReLU::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = planned_view(dx_, dy.shape());
  ops::relu_backward(ex(), planned_view(y_, dy.shape()), dy, dx);
  return dx;
}

Cost ReLU::cost(const Shape& in) const {
  Cost c;
  c.act_bytes = in.numel() * act_size();   // its input (its output, the mask, is the next layer's)
  c.work_bytes = in.numel() * act_size();  // dL/dx
  return c;
}

}  // namespace dtrain
