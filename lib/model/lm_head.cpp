#include "model/lm_head.h"

#include "kernels/cpu/gemm.h"
#include "model/planned.h"

namespace dtrain {

TiedLmHead::TiedLmHead(const std::string& name, Param& wte, Communicator* tp)
    : Layer(name), wte_(wte), vocab_(wte.shape[0]), c_(wte.shape[1]) {
  if (tp && tp->size() > 1) {
    DTRAIN_CHECK(wte.shard.split() && wte.shard.dim == 0 && wte.shard.parts == tp->size() &&
                     wte.shard.index == tp->rank(),
                 "{}: {} is not split by rows over the {} ranks of group {}", name, wte.name,
                 tp->size(), tp->name());
    tp_ = tp;
  }
}

Shape TiedLmHead::output_shape(const Shape& in) const {
  DTRAIN_CHECK(in[-1] == c_, "{}: input {} does not end in {}", name(), in.str(), c_);
  Shape s = in;
  s[-1] = vocab_;
  return s;
}

void TiedLmHead::plan(const Shape& in, DType act, Device device) {
  y_ = Tensor::empty(output_shape(in), act, device);
  dx_ = Tensor::empty(in, act, device);
}

Tensor TiedLmHead::forward(const Tensor& x, const Ctx&) {
  x_ = x;
  Tensor y = planned_view(y_, output_shape(x.shape()));
  const int64_t n = x.numel() / c_;
  dispatch_float(x.dtype(), [&](auto t) {
    using F = decltype(t);
    // logits (N, V) = x (N, C) @ wte^T (C, V)
    cpu::gemm<F>(false, true, n, vocab_, c_, F(1), x.data<F>(), c_, wte_.value.data<F>(), c_, F(0),
                 y.data<F>(), vocab_);
  });
  return y;
}

Tensor TiedLmHead::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = planned_view(dx_, x_.shape());
  const int64_t n = dy.numel() / vocab_;
  dispatch_float(dy.dtype(), [&](auto t) {
    using F = decltype(t);
    const F* g = dy.data<F>();
    // dwte (V, C) += dy^T (V, N) @ x (N, C)
    cpu::gemm<F>(true, false, vocab_, c_, n, F(1), g, vocab_, x_.data<F>(), c_, F(1),
                 wte_.grad.data<F>(), c_);
    // dx (N, C) = dy (N, V) @ wte (V, C)
    cpu::gemm<F>(false, false, n, c_, vocab_, F(1), g, vocab_, wte_.value.data<F>(), c_, F(0),
                 dx.data<F>(), c_);
  });
  if (tp_) all_reduce(*tp_, dx);  // f: the sum over every rank's vocabulary shard
  return dx;
}

Cost TiedLmHead::cost(const Shape& in) const {
  const double n = static_cast<double>(in.numel() / c_);
  Cost c;  // params = 0: wte is counted by the embedding
  c.fwd_flops = 2.0 * n * c_ * vocab_;
  c.bwd_flops = 4.0 * n * c_ * vocab_;
  c.act_bytes = in.numel() * 4;
  if (tp_) {  // f: backward all-reduce of dL/dx (N, C)
    c.tp_bwd_calls = 1;
    c.tp_bwd_bytes = in.numel() * 4;
  }
  return c;
}

}  // namespace dtrain
