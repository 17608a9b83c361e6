#include "model/maxpool.h"

#include "ops/cnn.h"
#include "ops/ops.h"

#include "model/planned.h"

namespace dtrain {

MaxPool2d::MaxPool2d(const std::string& name, int64_t kernel, int64_t stride, int64_t pad)
    : Layer(name), k_(kernel), stride_(stride), pad_(pad) {
  DTRAIN_CHECK(kernel > 0 && stride > 0 && pad >= 0 && 2 * pad <= kernel,
               "{}: bad pooling k{} s{} p{}", name, kernel, stride, pad);
}

ops::PoolGeom MaxPool2d::geom(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 4, "{}: input {} is not (B, C, H, W)", name(), in.str());
  ops::PoolGeom g;
  g.h = in[2];
  g.w = in[3];
  g.k = k_;
  g.stride = stride_;
  g.pad = pad_;
  DTRAIN_CHECK(g.ho() > 0 && g.wo() > 0, "{}: input {} is smaller than the window", name(), in.str());
  return g;
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  const ops::PoolGeom g = geom(in);
  return Shape{in[0], in[1], g.ho(), g.wo()};
}

void MaxPool2d::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  y_ = Tensor::empty(output_shape(in), act, ex.device);
  idx_ = Tensor::empty(output_shape(in), DType::i32, ex.device);
  dx_ = Tensor::empty(in, act, ex.device);
}

Tensor MaxPool2d::forward(const Tensor& x, const Ctx&) {
  const ops::PoolGeom g = geom(x.shape());
  in_shape_ = x.shape();
  Tensor y = planned_view(y_, output_shape(x.shape()));
  ops::maxpool_forward(ex(), g, x, y, planned_view(idx_, y.shape()));
  return y;
}

Tensor MaxPool2d::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = planned_view(dx_, in_shape_);
  ops::maxpool_backward(ex(), geom(in_shape_), dy, planned_view(idx_, dy.shape()), dx);
  return dx;
}

Cost MaxPool2d::cost(const Shape& in) const {
  Cost c;
  // Its input (the previous layer's output: backward reads only the argmax
  // indices, but the buffer lives for the step) and those indices.
  c.act_bytes = in.numel() * act_size() + output_shape(in).numel() * 4;
  c.work_bytes = in.numel() * act_size();  // dL/dx
  return c;
}

}  // namespace dtrain
