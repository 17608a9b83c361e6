#include "model/classifier_head.h"

#include <cmath>

#include "kernels/cpu/pool.h"
#include "model/planned.h"

namespace dtrain {

ClassifierHead::ClassifierHead(ParamStore& ps, const std::string& name, int64_t c, int64_t classes)
    : Layer(name),
      c_(c),
      fc_(ps, name + ".fc", c, classes, true, Init::uniform(1.0 / std::sqrt(static_cast<double>(c))),
          Init::uniform(1.0 / std::sqrt(static_cast<double>(c)))) {}

Shape ClassifierHead::output_shape(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 4 && in[1] == c_, "{}: input {} is not (B, {}, H, W)", name(), in.str(), c_);
  return fc_.output_shape(Shape{in[0], c_});
}

void ClassifierHead::plan(const Shape& in, DType act, Device device) {
  output_shape(in);
  pooled_ = Tensor::empty(Shape{in[0], c_}, act, device);
  dx_ = Tensor::empty(in, act, device);
  fc_.plan(Shape{in[0], c_}, act, device);
}

Tensor ClassifierHead::forward(const Tensor& x, const Ctx& ctx) {
  output_shape(x.shape());
  in_shape_ = x.shape();
  Tensor p = pooled_.narrow0(0, x.size(0));  // (B, C)
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::avgpool_forward<T>(x.size(0) * c_, x.size(2) * x.size(3), x.data<T>(), p.data<T>());
  });
  return fc_.forward(p, ctx);  // (B, classes)
}

Tensor ClassifierHead::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor dp = fc_.backward(dy, ctx);  // (B, C)
  Tensor dx = planned_view(dx_, in_shape_);
  dispatch_float(dy.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::avgpool_backward<T>(in_shape_[0] * c_, in_shape_[2] * in_shape_[3], dp.data<T>(),
                             dx.data<T>());
  });
  return dx;
}

Cost ClassifierHead::cost(const Shape& in) const {
  return fc_.cost(Shape{in[0], c_});  // pooling: no products, nothing kept
}

}  // namespace dtrain
