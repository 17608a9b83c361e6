// Softmax cross-entropy over the last dimension: logits (..., V) and int32
// targets (...), mean over all rows. Forward keeps the softmax probabilities in
// the buffer that backward turns into dL/dlogits in place, so the (rows, V)
// tensor is written twice in total, not four times.
#pragma once

#include "model/layer.h"

namespace dtrain {

class CrossEntropyLoss : public Loss {
 public:
  void plan(const Shape& logits, DType act, Device device) override;
  LossStats forward(const Tensor& logits, const Tensor& targets) override;
  Tensor backward(double scale) override;
  Cost cost(const Shape& logits) const override;

 private:
  Tensor probs_;     // (rows, V): softmax, then dL/dlogits after backward
  Tensor row_loss_;  // (rows) fp64: per-row losses, summed in order for determinism
  Tensor targets_;
  int64_t rows_ = 0;
  Shape logits_shape_;
};

}  // namespace dtrain
