#include "model/cross_entropy.h"

#include <cmath>

#include "kernels/cpu/vmath.h"

namespace dtrain {

void CrossEntropyLoss::plan(const Shape& logits, DType act, Device device) {
  int64_t v = logits[-1];
  int64_t rows = logits.numel() / v;
  probs_ = Tensor::empty(Shape{rows, v}, act, device);
  row_loss_ = Tensor::empty(Shape{rows}, DType::f64, device);
}

LossStats CrossEntropyLoss::forward(const Tensor& logits, const Tensor& targets) {
  const int64_t v = logits.shape()[-1];
  const int64_t rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  rows_ = rows;
  targets_ = targets;
  logits_shape_ = logits.shape();
  const int32_t* tgt = targets.data<int32_t>();
  double* rl = row_loss_.data<double>();
  for (int64_t r = 0; r < rows; ++r)  // checked here: no exception may leave an OpenMP region
    DTRAIN_CHECK(tgt[r] >= 0 && tgt[r] < v, "target {} out of range [0, {})", tgt[r], v);
  int64_t correct = 0;
  dispatch_float(logits.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* x = logits.data<T>();
    T* p = probs_.data<T>();
#pragma omp parallel for schedule(static) reduction(+ : correct)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * v;  // (V)
      T* pr = p + r * v;
      int64_t arg = 0;
      T mx = xr[0];
      for (int64_t j = 1; j < v; ++j)
        if (xr[j] > mx) mx = xr[j], arg = j;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < v; ++j) {
        pr[j] = cpu::exp_fast(xr[j] - mx);
        sum += pr[j];
      }
      T inv = T(1) / sum;
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) pr[j] *= inv;
      int32_t y = tgt[r];
      rl[r] = static_cast<double>(std::log(sum) + mx - xr[y]);
      correct += (arg == y);
    }
  });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += rl[r];
  return LossStats{total / static_cast<double>(rows), rows, correct};
}

Tensor CrossEntropyLoss::backward(double scale) {
  const int64_t v = probs_.shape()[-1];
  Tensor d = probs_.narrow0(0, rows_);
  const int32_t* tgt = targets_.data<int32_t>();
  dispatch_float(d.dtype(), [&](auto t) {
    using T = decltype(t);
    T* g = d.data<T>();
    const T s = static_cast<T>(scale / static_cast<double>(rows_));
    const int64_t rows = rows_;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      T* gr = g + r * v;  // (V): softmax -> s * (softmax - onehot)
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) gr[j] *= s;
      gr[tgt[r]] -= s;
    }
  });
  return d.view(logits_shape_);
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
