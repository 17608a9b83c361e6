#include "model/lm_head.h"

#include "ops/ops.h"
#include "model/planned.h"

namespace dtrain {

LmHead::LmHead(const std::string& name, Param& wte, Communicator* tp, bool seq_parallel, bool owned)
    : Layer(name),
      wte_(wte),
      owned_(owned),
      vocab_(wte.shape[0]),
      c_(wte.shape[1]),
      seq_(seq_parallel ? tp : nullptr) {
  if (tp && tp->size() > 1) {
    DTRAIN_CHECK(wte.shard.split() && wte.shard.dim == 0 && wte.shard.parts == tp->size() &&
                     wte.shard.index == tp->rank(),
                 "{}: {} is not split by rows over the {} ranks of group {}", name, wte.name,
                 tp->size(), tp->name());
    tp_ = tp;
  }
}

Shape LmHead::output_shape(const Shape& in) const {
  DTRAIN_CHECK(in[-1] == c_, "{}: input {} does not end in {}", name(), in.str(), c_);
  Shape s = seq_.on() ? seq_.full(in) : in;
  s[-1] = vocab_;
  return s;
}

void LmHead::plan(const Shape& local, DType act, const Exec& ex) {
  bind(ex, act);
  const Shape in = seq_.on() ? seq_.full(local) : local;  // what the product sees
  y_ = Tensor::empty(output_shape(local), act, ex.device);
  dx_ = Tensor::empty(in, act, ex.device);
  if (seq_.on()) {
    full_ = Tensor::empty(in, act, ex.device);
    // dL/d(this rank's slice): handed on out of backward (sent, where the
    // head starts a pipeline stage), so its own buffer, as dx_ is.
    local_ = Tensor::empty(local, act, ex.device);
    scratch_ = seq_.scratch(arena_, local, act, ex.device);
  }
  const int64_t n = in.numel() / c_;
  fwd_ = ops::MatmulPlan(ex, {.trans_a = false, .trans_b = true, .m = n, .n = vocab_, .k = c_}, act, act);
  dgrad_ = ops::MatmulPlan(ex, {.trans_a = false, .trans_b = false, .m = n, .n = c_, .k = vocab_}, act, act);
  wgrad_ = ops::MatmulPlan(ex, {.trans_a = true, .trans_b = false, .m = vocab_, .n = c_, .k = n}, act,
                           ops::compute_dtype(act));
}

Tensor LmHead::forward(const Tensor& xs, const Ctx&) {
  Tensor x = xs;
  if (seq_.on()) {
    x = planned_view(full_, seq_.full(xs.shape()));
    seq_.gather(ex(), xs, scratch_, x);
  }
  x_ = x;
  Tensor y = planned_view(y_, output_shape(xs.shape()));
  const int64_t n = x.numel() / c_;
  // logits (N, V) = x (N, C) @ wte^T (C, V)
  fwd_.run(ex(), {.trans_a = false, .trans_b = true, .m = n, .n = vocab_, .k = c_}, x, wte_.compute, y,
           1.0, 0.0);
  return y;
}

Tensor LmHead::backward(const Tensor& dy, const Ctx&) {
  Tensor dx = planned_view(dx_, x_.shape());
  const int64_t n = dy.numel() / vocab_;
  // dwte (V, C) += dy^T (V, N) @ x (N, C)
  wgrad_.run(ex(), {.trans_a = true, .trans_b = false, .m = vocab_, .n = c_, .k = n}, dy, x_,
             wte_.grad, 1.0, 1.0);
  // dx (N, C) = dy (N, V) @ wte (V, C)
  dgrad_.run(ex(), {.trans_a = false, .trans_b = false, .m = n, .n = c_, .k = vocab_}, dy,
             wte_.compute, dx, 1.0, 0.0);
  if (seq_.on()) {  // this rank's slice of the sum over every rank's vocabulary shard
    Tensor local = planned_view(local_, seq_.local(dx.shape()));
    seq_.scatter(ex(), dx, scratch_, local);
    return local;
  }
  if (tp_) all_reduce(*tp_, dx);  // f: the sum over every rank's vocabulary shard
  return dx;
}

Cost LmHead::cost(const Shape& local) const {
  const Shape in = seq_.on() ? seq_.full(local) : local;
  const double n = static_cast<double>(in.numel() / c_);
  Cost c;
  if (owned_) c.params = wte_.shape.numel();  // this rank's rows; a tied wte is counted by the embedding
  c.fwd_flops = 2.0 * n * c_ * vocab_;
  c.bwd_flops = 4.0 * n * c_ * vocab_;
  c.act_bytes = in.numel() * act_size() + static_cast<int64_t>(n) * vocab_ * act_size();  // input, logits
  c.work_bytes = in.numel() * act_size();  // dL/dx
  if (seq_.on()) {  // forward all-gather of x, backward reduce-scatter of dx: half an all-reduce each
    c.act_bytes += local.numel() * act_size();   // its input, the slice: the gathered one is its own
    c.work_bytes += local.numel() * act_size();  // and dL/d(slice)
    c.shared_bytes = in.numel() * act_size();  // the model's packed scratch
    c.tp_fwd_calls = c.tp_bwd_calls = 0.5;
    c.tp_fwd_bytes = c.tp_bwd_bytes = in.numel() * 4 / 2;
  } else if (tp_) {  // f: backward all-reduce of dL/dx (N, C)
    c.tp_bwd_calls = 1;
    c.tp_bwd_bytes = in.numel() * 4;
  }
  return c;
}

}  // namespace dtrain
