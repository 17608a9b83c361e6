#include "model/linear.h"

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"

namespace dtrain {

Linear::Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias,
               Init w_init, Init b_init, LinearParallel par)
    : Layer(name), in_(in), out_(out) {
  const int64_t t = par.tp ? par.tp->size() : 1;
  if (par.split == TpSplit::none || t == 1) {
    w_ = &ps.add(name + ".weight", Shape{out, in}, w_init, true);
    if (bias) b_ = &ps.add(name + ".bias", Shape{out}, b_init, false);
    return;
  }
  split_ = par.split;
  tp_ = par.tp;
  const int64_t r = tp_->rank();
  if (split_ == TpSplit::column) {
    DTRAIN_CHECK(out % (par.groups * t) == 0, "{}: {} outputs in {} blocks over {} ranks", name,
                 out, par.groups, t);
    out_ = out / t;
    w_ = &ps.add_sharded(name + ".weight",
                         Shard{.dim = 0, .parts = t, .index = r, .groups = par.groups, .full = Shape{out, in}},
                         w_init, true);
    if (bias)
      b_ = &ps.add_sharded(name + ".bias",
                           Shard{.dim = 0, .parts = t, .index = r, .groups = par.groups, .full = Shape{out}},
                           b_init, false);
  } else {
    DTRAIN_CHECK(in % t == 0 && par.groups == 1, "{}: {} inputs over {} ranks", name, in, t);
    in_ = in / t;
    w_ = &ps.add_sharded(name + ".weight",
                         Shard{.dim = 1, .parts = t, .index = r, .full = Shape{out, in}}, w_init, true);
    if (bias) b_ = &ps.add(name + ".bias", Shape{out}, b_init, false);  // replicated
  }
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
  if (split_ == TpSplit::row) {
    dispatch_float(x.dtype(), [&](auto t) {
      using T = decltype(t);
      // partial y (n, out) = x_r (n, in/t) @ W_r^T (in/t, out)
      cpu::gemm<T>(false, true, n, out_, in_, T(1), x.data<T>(), in_, w_->value.data<T>(), in_,
                   T(0), y.data<T>(), out_);
    });
    all_reduce(*tp_, y);  // g: the sum of the partial products
    if (b_)
      dispatch_float(x.dtype(), [&](auto t) {
        using T = decltype(t);
        cpu::add_rows(b_->value.data<T>(), n, out_, y.data<T>());  // once, after the sum
      });
    return y;
  }
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
  // f: every rank's output features contribute to dL/dx of the shared input.
  if (split_ == TpSplit::column) all_reduce(*tp_, dx);
  return dx;
}

Cost Linear::cost(const Shape& in) const {
  double n = static_cast<double>(in.numel() / in_);
  Cost c;
  c.params = in_ * out_ + (b_ ? out_ : 0);
  c.fwd_flops = 2.0 * n * in_ * out_;
  c.bwd_flops = 4.0 * n * in_ * out_;
  c.act_bytes = static_cast<int64_t>(n * in_) * 4;
  if (split_ == TpSplit::row) {  // g: forward all-reduce of the partial products (n, out)
    c.tp_fwd_calls = 1;
    c.tp_fwd_bytes = static_cast<int64_t>(n * out_) * 4;
  } else if (split_ == TpSplit::column) {  // f: backward all-reduce of dL/dx (n, in)
    c.tp_bwd_calls = 1;
    c.tp_bwd_bytes = static_cast<int64_t>(n * in_) * 4;
  }
  return c;
}

}  // namespace dtrain
