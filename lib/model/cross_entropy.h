// Softmax cross-entropy over the last dimension: logits (..., V) and int32
// targets (...), mean over all rows (kernels/cpu/cross_entropy.h). Forward
// reads the logits once and keeps only each row's max and sum of
// exponentials; backward reads them again (they stay valid until the
// producing layer's next forward, as a layer's input does) and writes
// dL/dlogits over them, in place: the (rows, V) tensor is read twice and
// written once per step, and no second (rows, V) buffer exists (for GPT-2's
// 50k vocabulary the largest activation). The producing layer's backward
// reads its input and weights, not its output, so the logits are free then.
#pragma once

#include "model/layer.h"

namespace dtrain {

class CrossEntropyLoss : public Loss {
 public:
  // used: the columns the softmax covers, [0, used); the rest (a padded
  // vocabulary's rows) are set to -inf before it and 0 in the gradient, so
  // they are never predicted. 0: every column.
  explicit CrossEntropyLoss(int64_t used = 0) : used_(used) {}
  void plan(const Shape& logits, DType act, const Exec& ex) override;
  void accumulate(const Tensor& logits, const Tensor& targets) override;
  Tensor backward(double scale) override;
  Cost cost(const Shape& logits) const override;

 private:
  Tensor row_max_, row_sum_;  // (rows): max and sum of exp(x - max) of each row
  Tensor row_loss_;           // (rows) fp64: per-row losses, summed in order for determinism
  Tensor argmax_;             // (rows) int32: first index of each row's max
  Tensor logits_, targets_;   // inputs of the last forward (logits_ becomes dL/dlogits)
  int64_t rows_ = 0;
  int64_t used_ = 0;
};

}  // namespace dtrain
