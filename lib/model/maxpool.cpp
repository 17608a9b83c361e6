#include "model/maxpool.h"

#include "model/planned.h"

namespace dtrain {

MaxPool2d::MaxPool2d(const std::string& name, int64_t kernel, int64_t stride, int64_t pad)
    : Layer(name), k_(kernel), stride_(stride), pad_(pad) {
  DTRAIN_CHECK(kernel > 0 && stride > 0 && pad >= 0 && 2 * pad <= kernel,
               "{}: bad pooling k{} s{} p{}", name, kernel, stride, pad);
}

cpu::PoolGeom MaxPool2d::geom(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 4, "{}: input {} is not (B, C, H, W)", name(), in.str());
  cpu::PoolGeom g;
  g.h = in[2];
  g.w = in[3];
  g.k = k_;
  g.stride = stride_;
  g.pad = pad_;
  DTRAIN_CHECK(g.ho() > 0 && g.wo() > 0, "{}: input {} is smaller than the window", name(), in.str());
  return g;
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  const cpu::PoolGeom g = geom(in);
  return Shape{in[0], in[1], g.ho(), g.wo()};
}

void MaxPool2d::plan(const Shape& in, DType act, Device device) {
  y_ = Tensor::empty(output_shape(in), act, device);
  idx_ = Tensor::empty(output_shape(in), DType::i32, device);
  dx_ = Tensor::empty(in, act, device);
}

Tensor MaxPool2d::forward(const Tensor& x, const Ctx&) {
  const cpu::PoolGeom g = geom(x.shape());
  in_shape_ = x.shape();
  Tensor y = planned_view(y_, output_shape(x.shape()));
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::maxpool_forward<T>(g, x.size(0) * x.size(1), x.data<T>(), y.data<T>(),
                            idx_.data<int32_t>());
  });
  return y;
}

Tensor MaxPool2d::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = planned_view(dx_, in_shape_);
  dispatch_float(dy.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::maxpool_backward<T>(geom(in_shape_), dy.size(0) * dy.size(1), dy.data<T>(),
                             idx_.data<int32_t>(), dx.data<T>());
  });
  return dx;
}

Cost MaxPool2d::cost(const Shape& in) const {
  Cost c;
  c.act_bytes = output_shape(in).numel() * 4;  // the argmax indices
  return c;
}

}  // namespace dtrain
