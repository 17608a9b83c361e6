#include "model/cross_entropy.h"

#include "ops/ops.h"

#include <cmath>


namespace dtrain {

void CrossEntropyLoss::plan(const Shape& logits, DType act, const Exec& ex) {
  bind(ex, act);
  int64_t v = logits[-1];
  int64_t rows = logits.numel() / v;
  row_max_ = Tensor::empty(Shape{rows}, ops::compute_dtype(act), ex.device);
  row_sum_ = Tensor::empty(Shape{rows}, ops::compute_dtype(act), ex.device);
  row_loss_ = Tensor::empty(Shape{rows}, DType::f64, ex.device);
  argmax_ = Tensor::empty(Shape{rows}, DType::i32, ex.device);
}

void CrossEntropyLoss::accumulate(const Tensor& logits, const Tensor& targets) {
  const int64_t v = logits.shape()[-1];
  const int64_t rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  rows_ = rows;
  logits_ = logits;
  targets_ = targets;
  if (used_ > 0 && used_ < v) ops::fill_columns(ex(), logits, used_, -INFINITY);  // padding: never predicted
  ops::softmax_xent_forward(ex(), logits, targets, row_max_.narrow0(0, rows), row_sum_.narrow0(0, rows),
                            row_loss_.narrow0(0, rows), argmax_.narrow0(0, rows), stats_);
}

Tensor CrossEntropyLoss::backward(double scale) {
  // In place: dL/dlogits over the logits (the kernels read each element before writing it).
  ops::softmax_xent_backward(ex(), logits_, targets_, row_max_.narrow0(0, rows_),
                             row_sum_.narrow0(0, rows_), scale / static_cast<double>(rows_), logits_);
  // exp(-inf - max) is 0 on a GPU and e^-87 (1.6e-38) on the CPU, whose fast exp clamps its
  // argument: the padding's gradient is set to exactly 0 here either way.
  if (const int64_t v = logits_.shape()[-1]; used_ > 0 && used_ < v) ops::fill_columns(ex(), logits_, used_, 0.0);
  return logits_;
}

Cost CrossEntropyLoss::cost(const Shape& logits) const {
  double n = static_cast<double>(logits.numel());
  Cost c;
  c.fwd_flops = 5.0 * n;  // max, subtract, exp, sum, scale
  c.bwd_flops = 2.0 * n;
  const int64_t rows = logits.numel() / logits[-1];
  // Per row the max and sum (compute type), the loss (f64), the argmax (i32);
  // dL/dlogits overwrites the logits (the producing layer's bytes).
  c.act_bytes = rows * (2 * stat_size() + 8 + 4);
  return c;
}

}  // namespace dtrain
