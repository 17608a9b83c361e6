#include "model/linear.h"

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"

namespace dtrain {

Linear::Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias,
               Init w_init, Init b_init)
    : Layer(name), in_(in), out_(out) {
  w_ = &ps.add(name + ".weight", Shape{out, in}, w_init, true);
  if (bias) b_ = &ps.add(name + ".bias", Shape{out}, b_init, false);
}

Shape Linear::output_shape(const Shape& in) const {
  Shape s = in;
  s[-1] = out_;
  return s;
}

void Linear::plan(const Shape& in, DType act, Device device) {
  DTRAIN_CHECK(in[-1] == in_, "{}: input {} does not end in {}", name(), in.str(), in_);
  y_ = Tensor::empty(output_shape(in), act, device);
  dx_ = Tensor::empty(in, act, device);
}

Tensor Linear::forward(const Tensor& x, const Ctx&) {
  x_ = x;
  Tensor y = y_.narrow0(0, x.size(0));
  int64_t n = x.numel() / in_;
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    T* yp = y.data<T>();
    if (b_) cpu::broadcast_rows(b_->value.data<T>(), n, out_, yp);
    cpu::gemm<T>(false, true, n, out_, in_, T(1), x.data<T>(), in_, w_->value.data<T>(), in_,
                 b_ ? T(1) : T(0), yp, out_);
  });
  return y;
}

Tensor Linear::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = dx_.narrow0(0, dy.size(0));
  int64_t n = dy.numel() / out_;
  dispatch_float(dy.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* g = dy.data<T>();
    // dW (out, in) += dy^T (out, n) @ x (n, in)
    cpu::gemm<T>(true, false, out_, in_, n, T(1), g, out_, x_.data<T>(), in_, T(1),
                 w_->grad.data<T>(), in_);
    if (b_) cpu::sum_rows_acc(g, n, out_, b_->grad.data<T>());
    // dx (n, in) = dy (n, out) @ W (out, in)
    cpu::gemm<T>(false, false, n, in_, out_, T(1), g, out_, w_->value.data<T>(), in_, T(0),
                 dx.data<T>(), in_);
  });
  return dx;
}

Cost Linear::cost(const Shape& in) const {
  double n = static_cast<double>(in.numel() / in_);
  Cost c;
  c.params = in_ * out_ + (b_ ? out_ : 0);
  c.fwd_flops = 2.0 * n * in_ * out_;
  c.bwd_flops = 4.0 * n * in_ * out_;
  c.act_bytes = static_cast<int64_t>(n * in_) * 4;
  return c;
}

}  // namespace dtrain
