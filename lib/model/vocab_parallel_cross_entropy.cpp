#include "model/vocab_parallel_cross_entropy.h"

#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "model/planned.h"

namespace dtrain {

VocabParallelCrossEntropyLoss::VocabParallelCrossEntropyLoss(Communicator& tp, int64_t vocab, int64_t used)
    : tp_(tp), vocab_(vocab) {
  DTRAIN_CHECK(vocab % tp.size() == 0, "vocabulary {} over {} ranks", vocab, tp.size());
  DTRAIN_CHECK(vocab <= INT32_MAX, "vocabulary {} does not fit int32", vocab);
  DTRAIN_CHECK(used >= 0 && used <= vocab, "{} used ids of a vocabulary of {}", used, vocab);
  local_vocab_ = vocab / tp.size();
  vocab_start_ = tp.rank() * local_vocab_;
  // A rank may hold only padding (its row maxima are then -inf until the
  // all-reduce brings the used ids' maximum).
  local_used_ = std::clamp((used > 0 ? used : vocab) - vocab_start_, int64_t{0}, local_vocab_);
}

void VocabParallelCrossEntropyLoss::plan(const Shape& logits, DType act, const Exec& ex) {
  bind(ex, act);
  DTRAIN_CHECK(logits[-1] == local_vocab_, "cross entropy: logits {} for {} of {} columns",
               logits.str(), local_vocab_, vocab_);
  const int64_t rows = logits.numel() / local_vocab_;
  const DType stat = ops::compute_dtype(act);
  probs_ = Tensor::empty(Shape{rows, local_vocab_}, act, ex.device);
  max_ = Tensor::empty(Shape{rows}, stat, ex.device);
  sums_ = Tensor::empty(Shape{2, rows}, stat, ex.device);
  argmax_ = Tensor::empty(Shape{rows}, DType::i32, ex.device);
  row_loss_ = Tensor::empty(Shape{rows}, DType::f64, ex.device);
}

void VocabParallelCrossEntropyLoss::accumulate(const Tensor& logits, const Tensor& targets) {
  const int64_t v = local_vocab_;
  DTRAIN_CHECK(logits.shape()[-1] == v, "cross entropy: logits {} for {} columns",
               logits.shape().str(), v);
  const int64_t rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  rows_ = rows;
  targets_ = targets;
  logits_shape_ = logits.shape();
  Tensor mx = planned_view(max_, Shape{rows});
  Tensor sums = planned_view(sums_, Shape{2 * rows});  // [0, rows): sums; [rows, 2 rows): targets
  Tensor arg = planned_view(argmax_, Shape{rows});
  Tensor probs = probs_.narrow0(0, rows);
  if (local_used_ < v) ops::fill_columns(ex(), logits, local_used_, -INFINITY);  // padding: never predicted
  ops::vp_row_max(ex(), logits, mx);
  all_reduce(tp_, mx, ReduceOp::max);
  ops::vp_exp_sums(ex(), logits, targets, vocab_start_, mx, probs, sums, arg);
  WorkHandle sum_work = tp_.all_reduce(sums, ReduceOp::sum);
  WorkHandle arg_work = tp_.all_reduce(arg, ReduceOp::min);
  sum_work->wait();
  arg_work->wait();
  ops::vp_finish(ex(), targets, mx, sums, arg, probs, row_loss_.narrow0(0, rows), stats_);
}

Tensor VocabParallelCrossEntropyLoss::backward(double scale) {
  Tensor d = probs_.narrow0(0, rows_);
  ops::vp_backward(ex(), targets_, vocab_start_, scale / static_cast<double>(rows_), d);
  if (local_used_ < local_vocab_) ops::fill_columns(ex(), d, local_used_, 0.0);  // exactly 0 (see CrossEntropyLoss)
  return d.view(logits_shape_);
}

Cost VocabParallelCrossEntropyLoss::cost(const Shape& logits) const {
  double n = static_cast<double>(logits.numel());
  Cost c;
  c.fwd_flops = 5.0 * n;  // max, subtract, exp, sum, scale
  c.bwd_flops = 2.0 * n;
  // Forward: the row maxima, then the (sum, target logit) pairs and the argmax
  // (all-reduced together): 4 values per row.
  const int64_t rows = logits.numel() / logits[-1];
  // The probabilities; per row the max, the two sums (compute type), the argmax (i32), the loss (f64).
  c.act_bytes = static_cast<int64_t>(n) * act_size() + rows * (3 * stat_size() + 4 + 8);
  c.tp_fwd_calls = 3;
  c.tp_fwd_bytes = rows * 4 * 4;
  return c;
}

}  // namespace dtrain
