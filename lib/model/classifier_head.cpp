#include "model/classifier_head.h"

#include "ops/cnn.h"
#include "ops/ops.h"

#include <cmath>

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

void ClassifierHead::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  output_shape(in);
  pooled_ = Tensor::empty(Shape{in[0], c_}, act, ex.device);
  dx_ = Tensor::empty(in, act, ex.device);
  fc_.plan(Shape{in[0], c_}, act, ex);
}

Tensor ClassifierHead::forward(const Tensor& x, const Ctx& ctx) {
  output_shape(x.shape());
  in_shape_ = x.shape();
  Tensor p = pooled_.narrow0(0, x.size(0));  // (B, C)
  ops::avgpool_forward(ex(), x, p);
  return fc_.forward(p, ctx);  // (B, classes)
}

Tensor ClassifierHead::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor dp = fc_.backward(dy, ctx);  // (B, C)
  Tensor dx = planned_view(dx_, in_shape_);
  ops::avgpool_backward(ex(), dp, dx);
  return dx;
}

Cost ClassifierHead::cost(const Shape& in) const {
  Cost c = fc_.cost(Shape{in[0], c_});  // pooling: no products; the pooled rows kept (fc's input)
  c.act_bytes += in.numel() * act_size();   // its input, the last block's output
  c.work_bytes += in.numel() * act_size();  // dL/dx
  return c;
}

}  // namespace dtrain
