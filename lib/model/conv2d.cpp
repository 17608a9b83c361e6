#include "model/conv2d.h"

#include "ops/cnn.h"
#include "ops/ops.h"

#include <cmath>

#include "model/planned.h"

namespace dtrain {

Conv2d::Conv2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int64_t kernel,
               int64_t stride, int64_t pad, bool bias)
    : Layer(name), in_(in), out_(out), k_(kernel), stride_(stride), pad_(pad) {
  DTRAIN_CHECK(in > 0 && out > 0 && kernel > 0 && stride > 0 && pad >= 0,
               "{}: bad convolution {}->{} k{} s{} p{}", name, in, out, kernel, stride, pad);
  const double fan_out = static_cast<double>(out * kernel * kernel);
  const double fan_in = static_cast<double>(in * kernel * kernel);
  w_ = &ps.add(name + ".weight", Shape{out, in, kernel, kernel}, Init::normal(std::sqrt(2.0 / fan_out)),
               true);
  if (bias) b_ = &ps.add(name + ".bias", Shape{out}, Init::uniform(1.0 / std::sqrt(fan_in)), false);
}

ops::ConvGeom Conv2d::geom(const Shape& in) const {
  DTRAIN_CHECK(in.rank() == 4 && in[1] == in_, "{}: input {} is not (B, {}, H, W)", name(), in.str(),
               in_);
  ops::ConvGeom g;
  g.c = in_;
  g.h = in[2];
  g.w = in[3];
  g.o = out_;
  g.kh = g.kw = k_;
  g.stride = stride_;
  g.pad = pad_;
  DTRAIN_CHECK(g.ho() > 0 && g.wo() > 0, "{}: input {} is smaller than the kernel", name(), in.str());
  return g;
}

Shape Conv2d::output_shape(const Shape& in) const {
  const ops::ConvGeom g = geom(in);
  return Shape{in[0], out_, g.ho(), g.wo()};
}

void Conv2d::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  g_ = geom(in);
  conv_ = ops::ConvPlan(ex, g_, in[0], act, name());
  y_ = Tensor::empty(output_shape(in), act, ex.device);
  if (input_grad_) dx_ = Tensor::empty(in, act, ex.device);
}

Tensor Conv2d::forward(const Tensor& x, const Ctx&) {
  const Shape& s = x.shape();
  DTRAIN_CHECK(s.rank() == 4 && s[1] == g_.c && s[2] == g_.h && s[3] == g_.w && s[0] <= y_.size(0),
               "{}: input {} does not fit the planned (B <= {}, {}, {}, {})", name(), s.str(),
               y_.size(0), g_.c, g_.h, g_.w);
  x_ = x;
  Tensor y = y_.narrow0(0, s[0]);  // (B, out, Ho, Wo)
  conv_.forward(ex(), x, w_->compute, b_ ? b_->compute : Tensor{}, y);
  return y;
}

Tensor Conv2d::backward(const Tensor& dy, const Ctx&) { return backward_add(dy, Tensor{}); }

Tensor Conv2d::backward_add(const Tensor& dy, const Tensor& dres) {
  const int64_t n = dy.size(0);
  Tensor dx = input_grad_ ? dx_.narrow0(0, n) : Tensor{};  // (B, in, H, W)
  conv_.backward(ex(), x_, w_->compute, dy, dres, dx, w_->grad, b_ ? b_->grad : Tensor{});
  return dx;
}

Cost Conv2d::cost(const Shape& in) const {
  const ops::ConvGeom g = geom(in);
  const double macs = static_cast<double>(in[0] * g.out_size() * g.k());
  Cost c;
  c.params = out_ * g.k() + (b_ ? out_ : 0);
  c.fwd_flops = 2 * macs;
  c.bwd_flops = (input_grad_ ? 4 : 2) * macs;  // dW, and dx unless it is the first layer
  c.act_bytes = in.numel() * act_size();                // the input, for dW
  if (input_grad_) c.work_bytes = in.numel() * act_size();  // dL/dx
  c.work_bytes += ops::ConvPlan::scratch_bytes(g, in[0], act());  // its plan's scratch
  return c;
}

}  // namespace dtrain
