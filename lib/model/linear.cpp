#include "model/linear.h"

#include <utility>

#include "ops/ops.h"

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
  seq_ = par.sequence_parallel;
  const int64_t r = tp_->rank();
  if (split_ == TpSplit::column) {
    int64_t total = 0;
    for (int64_t b : par.blocks) {
      DTRAIN_CHECK(b % t == 0, "{}: an output block of {} over {} ranks", name, b, t);
      total += b;
    }
    DTRAIN_CHECK(out % t == 0 && (par.blocks.empty() || total == out), "{}: {} outputs in blocks summing to {} over {} ranks",
                 name, out, total, t);
    out_ = out / t;
    w_ = &ps.add_sharded(name + ".weight",
                         Shard{.dim = 0, .parts = t, .index = r, .blocks = par.blocks, .full = Shape{out, in}},
                         w_init, true);
    if (bias)
      b_ = &ps.add_sharded(name + ".bias",
                           Shard{.dim = 0, .parts = t, .index = r, .blocks = par.blocks, .full = Shape{out}},
                           b_init, false);
  } else {
    DTRAIN_CHECK(in % t == 0 && par.blocks.empty(), "{}: {} inputs over {} ranks", name, in, t);
    in_ = in / t;
    w_ = &ps.add_sharded(name + ".weight",
                         Shard{.dim = 1, .parts = t, .index = r, .blocks = {}, .full = Shape{out, in}}, w_init, true);
    if (bias) b_ = &ps.add(name + ".bias", Shape{out}, b_init, false);  // replicated
  }
}

Shape Linear::output_shape(const Shape& in) const {
  Shape s = in;
  s[-1] = out_;
  return s;
}

void Linear::plan(const Shape& in, DType act, const Exec& ex) {
  bind(ex, act);
  DTRAIN_CHECK(in[-1] == in_, "{}: input {} does not end in {}", name(), in.str(), in_);
  y_ = buffer("y", output_shape(in), act, ex);
  dx_ = work_buffer("dx", in, act, ex);
  const int64_t n = in.numel() / in_;
  // y (n, out) = x (n, in) @ W^T; dx (n, in) = dy (n, out) @ W; dW (out, in) += dy^T @ x,
  // the weight gradient in the compute type (fp32 under bf16).
  // The bias (and the MLP's GELU) as the forward product's epilogue, except
  // row-parallel, whose bias comes after the sum of the partial products.
  ops::Epilogue fe = ops::Epilogue::none;
  if (split_ != TpSplit::row) {
    if (gelu_out_ && gelu_in_product_) fe = b_ ? ops::Epilogue::bias_gelu : ops::Epilogue::gelu;
    else if (b_) fe = ops::Epilogue::bias;
  }
  fwd_ = ops::MatmulPlan(ex, {.trans_a = false, .trans_b = true, .m = n, .n = out_, .k = in_}, act, act, fe);
  dgrad_ = ops::MatmulPlan(ex, {.trans_a = false, .trans_b = false, .m = n, .n = in_, .k = out_}, act, act,
                           gelu_in_ ? ops::Epilogue::dgelu : ops::Epilogue::none);
  // On a GPU the bias gradient (dy's column sums) comes out of the weight
  // gradient's product (cuBLASLt's BGRADB epilogue: one read of dy instead
  // of two). It writes where dtrain accumulates over micro-batches, so into
  // bgrad_, then added; elsewhere sum_rows_acc accumulates it directly.
  const DType gt = ops::compute_dtype(act);
  const bool fuse_bgrad = b_ && ops::fused_epilogue(ex, ops::Epilogue::bias_grad, gt, in_);
  wgrad_ = ops::MatmulPlan(ex, {.trans_a = true, .trans_b = false, .m = out_, .n = in_, .k = n}, act, gt,
                           fuse_bgrad ? ops::Epilogue::bias_grad : ops::Epilogue::none);
  bgrad_ = fuse_bgrad ? Tensor::empty(Shape{out_}, gt, ex.device) : Tensor{};
}

void Linear::set_gelu_output(bool in_product) {
  DTRAIN_CHECK(split_ != TpSplit::row, "{}: GELU after a row-parallel product", name());
  gelu_out_ = true;
  gelu_in_product_ = in_product;
}

void Linear::set_gelu_input() {
  DTRAIN_CHECK(split_ != TpSplit::column, "{}: GELU's derivative in a column-parallel input gradient", name());
  gelu_in_ = true;
}

Tensor Linear::forward(const Tensor& x, const Ctx&) {
  DTRAIN_CHECK(!gelu_out_, "{}: planned with GELU, run without", name());
  return forward_impl(x, Tensor{});
}

Tensor Linear::forward_gelu(const Tensor& x, const Tensor& g, const Ctx&) {
  DTRAIN_CHECK(gelu_out_, "{}: not planned with GELU", name());
  return forward_impl(x, g);
}

Tensor Linear::forward_impl(const Tensor& x, const Tensor& g) {
  x_ = x;
  Tensor y = y_.narrow0(0, x.size(0));
  const int64_t n = x.numel() / in_;
  const ops::Gemm gm{.trans_a = false, .trans_b = true, .m = n, .n = out_, .k = in_};
  if (split_ == TpSplit::row) {
    fwd_.run(ex(), gm, x, w_->compute, y, 1.0, 0.0);  // partial y = x_r @ W_r^T
    if (seq_) return y;                               // reduce-scattered by the caller
    all_reduce(*tp_, y);                            // g: the sum of the partial products
    if (b_) ops::add_rows(ex(), b_->compute, y);      // once, after the sum
    return y;
  }
  const Tensor bias = b_ ? b_->compute : Tensor{};
  const ops::Epilogue e = fwd_.epilogue();
  if (e == ops::Epilogue::gelu || e == ops::Epilogue::bias_gelu) {
    fwd_.run(ex(), gm, x, w_->compute, g, 1.0, 0.0, bias, y);  // y = x W^T + b, g = gelu(y)
    return y;
  }
  fwd_.run(ex(), gm, x, w_->compute, y, 1.0, 0.0, bias);
  if (gelu_out_) ops::gelu_forward(ex(), y, g);
  return y;
}

Tensor Linear::backward(const Tensor& dy, const Ctx&) {
  DTRAIN_CHECK(!gelu_in_, "{}: planned with GELU's derivative, run without", name());
  return backward_impl(dy, Tensor{});
}

Tensor Linear::backward_gelu(const Tensor& dy, const Tensor& pre, const Ctx&) {
  DTRAIN_CHECK(gelu_in_, "{}: not planned with GELU's derivative", name());
  return backward_impl(dy, pre);
}

Tensor Linear::backward_impl(const Tensor& dy, const Tensor& pre) {
  Tensor dx = dx_.narrow0(0, dy.size(0));
  const int64_t n = dy.numel() / out_;
  const ops::Gemm wg{.trans_a = true, .trans_b = false, .m = out_, .n = in_, .k = n};
  // dx = dy W (times gelu'(pre) with the MLP's GELU before this Linear),
  // first: the kept input may still be being refilled (defer_input).
  dgrad_.run(ex(), {.trans_a = false, .trans_b = false, .m = n, .n = in_, .k = out_}, dy, w_->compute, dx, 1.0,
             0.0, Tensor{}, pre);
  if (input_ready_) std::exchange(input_ready_, nullptr)();
  if (wgrad_.epilogue() == ops::Epilogue::bias_grad) {
    wgrad_.run(ex(), wg, dy, x_, w_->grad, 1.0, 1.0, bgrad_);  // bgrad_ = dy's column sums
    ops::add(ex(), b_->grad, bgrad_, b_->grad);
  } else {
    wgrad_.run(ex(), wg, dy, x_, w_->grad, 1.0, 1.0);
    if (b_) ops::sum_rows_acc(ex(), dy, b_->grad);
  }
  // f: every rank's output features contribute to dL/dx of the shared input.
  if (split_ == TpSplit::column && !seq_) all_reduce(*tp_, dx);
  return dx;
}

void Linear::add_bias(const Tensor& y) const {
  if (b_) ops::add_rows(ex(), b_->compute, y);
}

Cost Linear::cost(const Shape& in) const {
  double n = static_cast<double>(in.numel() / in_);
  Cost c;
  c.params = in_ * out_ + (b_ ? out_ : 0);
  c.fwd_flops = 2.0 * n * in_ * out_;
  c.bwd_flops = 4.0 * n * in_ * out_;
  c.act_bytes = static_cast<int64_t>(n * in_) * act_size();
  c.work_bytes = static_cast<int64_t>(n * in_) * act_size();  // dL/dx
  if (seq_) {
    // The caller's collectives, counted here: an all-gather or reduce-scatter
    // of N bytes moves half what an all-reduce of N does, so each counts N/2
    // all-reduce bytes. Row: reduce-scatter of y forward, all-gather of dy
    // backward; column: all-gather of x forward, reduce-scatter of dx backward.
    const int64_t half = static_cast<int64_t>(n * (split_ == TpSplit::row ? out_ : in_)) * 4 / 2;
    c.tp_fwd_calls = c.tp_bwd_calls = 0.5;
    c.tp_fwd_bytes = c.tp_bwd_bytes = half;
  } else if (split_ == TpSplit::row) {  // g: forward all-reduce of the partial products (n, out)
    c.tp_fwd_calls = 1;
    c.tp_fwd_bytes = static_cast<int64_t>(n * out_) * 4;
  } else if (split_ == TpSplit::column) {  // f: backward all-reduce of dL/dx (n, in)
    c.tp_bwd_calls = 1;
    c.tp_bwd_bytes = static_cast<int64_t>(n * in_) * 4;
  }
  return c;
}

}  // namespace dtrain
