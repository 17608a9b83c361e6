#include "model/stem.h"

namespace dtrain {

Stem::Stem(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool max_pool,
           bool input_grad)
    : Layer(name),
      conv_(ps, name + ".conv", in, out, 3, 1, 1, false),
      bn_(ps, name + ".bn", out, /*relu=*/true) {
  conv_.set_input_grad(input_grad);
  if (max_pool) pool_ = std::make_unique<MaxPool2d>(name + ".pool", 3, 2, 1);
}

Shape Stem::output_shape(const Shape& in) const {
  const Shape s = conv_.output_shape(in);
  return pool_ ? pool_->output_shape(s) : s;
}

void Stem::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  conv_.plan(in, act, ex);
  const Shape s = conv_.output_shape(in);  // (B, out, H, W)
  bn_.plan(s, act, ex);
  if (pool_) pool_->plan(s, act, ex);
}

Tensor Stem::forward(const Tensor& x, const Ctx& ctx) {
  Tensor h = bn_.forward(conv_.forward(x, ctx), ctx);  // relu(bn(conv(x)))
  return pool_ ? pool_->forward(h, ctx) : h;
}

Tensor Stem::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor d = pool_ ? pool_->backward(dy, ctx) : dy;
  return conv_.backward(bn_.backward(d, ctx), ctx);
}

Cost Stem::cost(const Shape& in) const {
  const Shape s = conv_.output_shape(in);
  Cost c = conv_.cost(in);
  c += bn_.cost(s);
  if (pool_) c += pool_->cost(s);
  return c;
}

}  // namespace dtrain
