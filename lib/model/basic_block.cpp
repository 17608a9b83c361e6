#include "model/basic_block.h"

namespace dtrain {

BasicBlock::BasicBlock(ParamStore& ps, const std::string& name, int64_t in, int64_t out,
                       int64_t stride)
    : Layer(name),
      conv1_(ps, name + ".conv1", in, out, 3, stride, 1, false),
      bn1_(ps, name + ".bn1", out, /*relu=*/true),
      conv2_(ps, name + ".conv2", out, out, 3, 1, 1, false),
      bn2_(ps, name + ".bn2", out, /*relu=*/true, /*residual=*/true) {
  if (stride != 1 || in != out) {
    sc_conv_ = std::make_unique<Conv2d>(ps, name + ".shortcut.conv", in, out, 1, stride, 0, false);
    sc_bn_ = std::make_unique<BatchNorm2d>(ps, name + ".shortcut.bn", out);
  }
}

Shape BasicBlock::output_shape(const Shape& in) const {
  return conv2_.output_shape(conv1_.output_shape(in));
}

void BasicBlock::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  const Shape h = conv1_.output_shape(in);  // (B, out, Ho, Wo)
  conv1_.plan(in, act, ex);
  bn1_.plan(h, act, ex);
  conv2_.plan(h, act, ex);
  bn2_.plan(h, act, ex);
  if (sc_conv_) {
    DTRAIN_CHECK(sc_conv_->output_shape(in) == h, "{}: shortcut shape {} differs from {}", name(),
                 sc_conv_->output_shape(in).str(), h.str());
    sc_conv_->plan(in, act, ex);
    sc_bn_->plan(h, act, ex);
  }
}

Tensor BasicBlock::forward(const Tensor& x, const Ctx& ctx) {
  Tensor a = bn1_.forward(conv1_.forward(x, ctx), ctx);      // (B, out, Ho, Wo)
  Tensor h = conv2_.forward(a, ctx);
  Tensor s = sc_conv_ ? sc_bn_->forward(sc_conv_->forward(x, ctx), ctx) : x;
  return bn2_.forward_add(h, s, ctx);                        // relu(bn2(h) + s)
}

Tensor BasicBlock::backward(const Tensor& dy, const Ctx& ctx) {
  Tensor dh = bn2_.backward(dy, ctx);
  Tensor ds = bn2_.residual_grad();                          // dy masked by the final ReLU
  Tensor dres = sc_conv_ ? sc_conv_->backward(sc_bn_->backward(ds, ctx), ctx) : ds;  // (B, in, H, W)
  Tensor da = conv2_.backward(dh, ctx);
  return conv1_.backward_add(bn1_.backward(da, ctx), dres);  // main + shortcut
}

void BasicBlock::list_convolutions(const Shape& in,
                                   std::vector<std::pair<std::string, ops::ConvGeom>>& out) const {
  conv1_.list_convolutions(in, out);
  conv2_.list_convolutions(conv1_.output_shape(in), out);
  if (sc_conv_) sc_conv_->list_convolutions(in, out);
}

Cost BasicBlock::cost(const Shape& in) const {
  const Shape h = conv1_.output_shape(in);
  Cost c = conv1_.cost(in);
  c += bn1_.cost(h);
  c += conv2_.cost(h);
  c += bn2_.cost(h);
  if (sc_conv_) {
    c += sc_conv_->cost(in);
    c += sc_bn_->cost(h);
    // The block's input is counted once (conv1 and the shortcut's conv both
    // read it); the shortcut's output, bn2's residual, by no layer.
    c.act_bytes += (h.numel() - in.numel()) * act_size();
  }
  return c;
}

}  // namespace dtrain
