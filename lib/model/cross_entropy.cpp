#include "model/cross_entropy.h"

#include <cmath>

#include "kernels/cpu/cross_entropy.h"

namespace dtrain {

void CrossEntropyLoss::plan(const Shape& logits, DType act, Device device) {
  int64_t v = logits[-1];
  int64_t rows = logits.numel() / v;
  grad_ = Tensor::empty(Shape{rows, v}, act, device);
  row_max_ = Tensor::empty(Shape{rows}, act, device);
  row_sum_ = Tensor::empty(Shape{rows}, act, device);
  row_loss_ = Tensor::empty(Shape{rows}, DType::f64, device);
  argmax_ = Tensor::empty(Shape{rows}, DType::i32, device);
}

LossStats CrossEntropyLoss::forward(const Tensor& logits, const Tensor& targets) {
  const int64_t v = logits.shape()[-1];
  const int64_t rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  rows_ = rows;
  logits_ = logits;
  targets_ = targets;
  const int32_t* tgt = targets.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r)  // checked here: no exception may leave an OpenMP region
    DTRAIN_CHECK(tgt[r] >= 0 && tgt[r] < v, "target {} out of range [0, {})", tgt[r], v);
  dispatch_float(logits.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::softmax_xent_forward<T>(logits.data<T>(), tgt, rows, v, row_max_.data<T>(),
                                 row_sum_.data<T>(), row_loss_.data<double>(),
                                 argmax_.data<int32_t>());
  });
  const double* rl = row_loss_.data<double>();
  const int32_t* arg = argmax_.data<int32_t>();
  double total = 0;
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    total += rl[r];
    correct += arg[r] == tgt[r];
  }
  return LossStats{total / static_cast<double>(rows), rows, correct};
}

Tensor CrossEntropyLoss::backward(double scale) {
  const int64_t v = logits_.shape()[-1];
  Tensor d = grad_.narrow0(0, rows_);
  dispatch_float(d.dtype(), [&](auto t) {
    using T = decltype(t);
    cpu::softmax_xent_backward<T>(logits_.data<T>(), targets_.data<int32_t>(), row_max_.data<T>(),
                                  row_sum_.data<T>(), rows_, v,
                                  static_cast<T>(scale / static_cast<double>(rows_)), d.data<T>());
  });
  return d.view(logits_.shape());
}

Cost CrossEntropyLoss::cost(const Shape& logits) const {
  double n = static_cast<double>(logits.numel());
  Cost c;
  c.fwd_flops = 5.0 * n;  // max, subtract, exp, sum, scale
  c.bwd_flops = 2.0 * n;
  c.act_bytes = static_cast<int64_t>(n) * 4;
  return c;
}

}  // namespace dtrain
