#include "model/vocab_parallel_cross_entropy.h"

#include <cmath>
#include <cstdint>

#include "kernels/cpu/vmath.h"
#include "model/planned.h"

namespace dtrain {

VocabParallelCrossEntropyLoss::VocabParallelCrossEntropyLoss(Communicator& tp, int64_t vocab)
    : tp_(tp), vocab_(vocab) {
  DTRAIN_CHECK(vocab % tp.size() == 0, "vocabulary {} over {} ranks", vocab, tp.size());
  DTRAIN_CHECK(vocab <= INT32_MAX, "vocabulary {} does not fit int32", vocab);
  local_vocab_ = vocab / tp.size();
  vocab_start_ = tp.rank() * local_vocab_;
}

void VocabParallelCrossEntropyLoss::plan(const Shape& logits, DType act, Device device) {
  DTRAIN_CHECK(logits[-1] == local_vocab_, "cross entropy: logits {} for {} of {} columns",
               logits.str(), local_vocab_, vocab_);
  const int64_t rows = logits.numel() / local_vocab_;
  probs_ = Tensor::empty(Shape{rows, local_vocab_}, act, device);
  max_ = Tensor::empty(Shape{rows}, act, device);
  sums_ = Tensor::empty(Shape{2, rows}, act, device);
  argmax_ = Tensor::empty(Shape{rows}, DType::i32, device);
  row_loss_ = Tensor::empty(Shape{rows}, DType::f64, device);
}

LossStats VocabParallelCrossEntropyLoss::forward(const Tensor& logits, const Tensor& targets) {
  const int64_t v = local_vocab_, v0 = vocab_start_;
  DTRAIN_CHECK(logits.shape()[-1] == v, "cross entropy: logits {} for {} columns",
               logits.shape().str(), v);
  const int64_t rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  rows_ = rows;
  targets_ = targets;
  logits_shape_ = logits.shape();
  const int32_t* tgt = targets.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r)  // checked here: no exception may leave an OpenMP region
    DTRAIN_CHECK(tgt[r] >= 0 && tgt[r] < vocab_, "target {} out of range [0, {})", tgt[r], vocab_);
  Tensor mx = planned_view(max_, Shape{rows});
  Tensor sums = planned_view(sums_, Shape{2 * rows});  // [0, rows): sums; [rows, 2 rows): targets
  Tensor arg = planned_view(argmax_, Shape{rows});
  int64_t correct = 0;
  dispatch_float(logits.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* x = logits.data<T>();
    T* p = probs_.data<T>();
    T* m = mx.data<T>();
    T* s = sums.data<T>();
    int32_t* a = arg.data<int32_t>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * v;
      T mr = xr[0];
      for (int64_t j = 1; j < v; ++j)
        if (xr[j] > mr) mr = xr[j];
      m[r] = mr;
    }
    all_reduce(tp_, mx, ReduceOp::max);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * v;  // (V/t)
      T* pr = p + r * v;
      const T mr = m[r];
      int64_t first = -1;  // the first column holding the group's maximum
      for (int64_t j = 0; j < v && first < 0; ++j)
        if (xr[j] == mr) first = j;
      a[r] = first < 0 ? INT32_MAX : static_cast<int32_t>(v0 + first);
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < v; ++j) {
        pr[j] = cpu::exp_fast(xr[j] - mr);
        sum += pr[j];
      }
      s[r] = sum;
      const int64_t y = tgt[r] - v0;
      s[rows + r] = (y >= 0 && y < v) ? xr[y] : T(0);
    }
    WorkHandle sum_work = tp_.all_reduce(sums, ReduceOp::sum);
    WorkHandle arg_work = tp_.all_reduce(arg, ReduceOp::min);
    sum_work->wait();
    arg_work->wait();
    double* rl = row_loss_.data<double>();
#pragma omp parallel for schedule(static) reduction(+ : correct)
    for (int64_t r = 0; r < rows; ++r) {
      T* pr = p + r * v;
      const T inv = T(1) / s[r];
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) pr[j] *= inv;
      rl[r] = static_cast<double>(std::log(s[r]) + m[r] - s[rows + r]);
      correct += (a[r] == tgt[r]);
    }
  });
  const double* rl = row_loss_.data<double>();
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += rl[r];
  return LossStats{total / static_cast<double>(rows), rows, correct};
}

Tensor VocabParallelCrossEntropyLoss::backward(double scale) {
  const int64_t v = local_vocab_, v0 = vocab_start_;
  Tensor d = probs_.narrow0(0, rows_);
  const int32_t* tgt = targets_.data<int32_t>();
  dispatch_float(d.dtype(), [&](auto t) {
    using T = decltype(t);
    T* g = d.data<T>();
    const T s = static_cast<T>(scale / static_cast<double>(rows_));
    const int64_t rows = rows_;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      T* gr = g + r * v;  // (V/t): softmax -> s * (softmax - onehot)
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) gr[j] *= s;
      const int64_t y = tgt[r] - v0;
      if (y >= 0 && y < v) gr[y] -= s;  // the target's column is on this rank
    }
  });
  return d.view(logits_shape_);
}

Cost VocabParallelCrossEntropyLoss::cost(const Shape& logits) const {
  double n = static_cast<double>(logits.numel());
  Cost c;
  c.fwd_flops = 5.0 * n;  // max, subtract, exp, sum, scale
  c.bwd_flops = 2.0 * n;
  c.act_bytes = static_cast<int64_t>(n) * 4;
  // Forward: the row maxima, then the (sum, target logit) pairs and the argmax
  // (all-reduced together): 4 values per row.
  const int64_t rows = logits.numel() / logits[-1];
  c.tp_fwd_calls = 3;
  c.tp_fwd_bytes = rows * 4 * 4;
  return c;
}

}  // namespace dtrain
