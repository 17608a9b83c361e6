#include "model/attention.h"

#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "model/planned.h"

namespace dtrain {

CausalSelfAttention::CausalSelfAttention(ParamStore& ps, const std::string& name, int64_t c,
                                         int64_t n_head, bool bias, double proj_std)
    : Layer(name),
      c_(c),
      n_head_(n_head),
      qkv_(ps, name + ".qkv", c, 3 * c, bias, Init::normal(0.02)),
      proj_(ps, name + ".proj", c, c, bias, Init::normal(proj_std)) {
  if (n_head <= 0 || c % n_head != 0)
    throw ConfigError(fmt::format("{}: n_embd {} is not divisible by n_head {}", name, c, n_head));
}

void CausalSelfAttention::plan(const Shape& in, DType act, Device device) {
  DTRAIN_CHECK(in.rank() == 3 && in[2] == c_, "{}: input {} is not (B, T, {})", name(), in.str(), c_);
  const int64_t B = in[0], T = in[1];
  qkv_.plan(in, act, device);
  proj_.plan(in, act, device);
  att_ = Tensor::empty(Shape{B, n_head_, T, T}, act, device);
  y_ = Tensor::empty(in, act, device);
  dqkv_ = Tensor::empty(Shape{B, T, 3 * c_}, act, device);
  slots_ = cpu::num_threads();
  scratch_ = Tensor::empty(Shape{slots_ * cpu::attention_scratch_size(T)}, act, device);
}

Tensor CausalSelfAttention::forward(const Tensor& x, const Ctx& ctx) {
  const Shape& s = x.shape();
  DTRAIN_CHECK(s.rank() == 3 && s[2] == c_, "{}: input {} is not (B, T, {})", name(), s.str(), c_);
  const int64_t B = s[0], T = s[1];
  qkv_out_ = qkv_.forward(x, ctx);  // (B, T, 3C)
  DTRAIN_CHECK(qkv_out_.shape() == (Shape{B, T, 3 * c_}), "{}: qkv output {} for input {}", name(),
               qkv_out_.shape().str(), s.str());  // Linear narrows the batch, not T
  Tensor y = planned_view(y_, s);
  Tensor att = planned_view(att_, Shape{B, n_head_, T, T});
  dispatch_float(x.dtype(), [&](auto t) {
    using F = decltype(t);
    cpu::attention_forward<F>(qkv_out_.data<F>(), B, T, c_, n_head_, att.data<F>(), y.data<F>());
  });
  return proj_.forward(y, ctx);
}

Tensor CausalSelfAttention::backward(const Tensor& dy, const Ctx& ctx) {
  const int64_t B = dy.size(0), T = dy.size(1);
  Tensor dyatt = proj_.backward(dy, ctx);  // (B, T, C)
  Tensor dqkv = planned_view(dqkv_, Shape{B, T, 3 * c_});
  Tensor att = planned_view(att_, Shape{B, n_head_, T, T});
  dispatch_float(dy.dtype(), [&](auto t) {
    using F = decltype(t);
    cpu::attention_backward<F>(dyatt.data<F>(), qkv_out_.data<F>(), att.data<F>(), B, T, c_,
                               n_head_, scratch_.data<F>(), slots_, dqkv.data<F>());
  });
  return qkv_.backward(dqkv, ctx);
}

Cost CausalSelfAttention::cost(const Shape& in) const {
  const int64_t B = in[0], T = in[1];
  const double products = 2.0 * B * n_head_ * T * T * (c_ / n_head_);  // one (T,T,hs) product
  Cost c = qkv_.cost(in);
  c += proj_.cost(in);
  c.fwd_flops += 2 * products;  // Q K^T, P V
  c.bwd_flops += 4 * products;  // dP, dQ, dK, dV
  c.act_bytes += (B * T * 3 * c_ + B * n_head_ * T * T) * 4;  // qkv output, probabilities
  return c;
}

}  // namespace dtrain
