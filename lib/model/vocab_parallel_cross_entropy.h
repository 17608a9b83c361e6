// Softmax cross-entropy over logits split by vocabulary across a tp group
// (Megatron-LM's vocab-parallel cross-entropy): this rank holds columns
// [vocab_start, vocab_start + V/t) of every row of logits and no rank ever
// holds a full row. Per row it takes
//   m = max over the group (all-reduce max of the local maxima),
//   s = sum over the group of exp(x - m) (all-reduce sum),
//   x_y = the target's logit (all-reduce sum: one rank contributes it, the
//         others zero, so the sum is exact),
// and loss = log(s) + m - x_y, as CrossEntropyLoss does on the whole row.
// Accuracy needs the argmax with the unsplit model's tie-break (the first
// index of the maximum): each rank proposes the first global index in its
// range where x == m (or INT32_MAX) and an all-reduce min picks the winner.
// The sums and the argmax go out together as two operations in flight.
// Every rank ends with the same loss, count and correct; backward is local:
// dL/dx = scale/N * (softmax - onehot) on this rank's columns.
#pragma once

#include "core/comm.h"
#include "model/layer.h"

namespace dtrain {

class VocabParallelCrossEntropyLoss : public Loss {
 public:
  // tp: the group the vocabulary is split over; this rank's logits are the
  // columns of the full vocabulary `vocab` from tp.rank() * vocab / tp.size().
  // used: the ids the softmax covers, [0, used), as CrossEntropyLoss's (0: all).
  VocabParallelCrossEntropyLoss(Communicator& tp, int64_t vocab, int64_t used = 0);

  void plan(const Shape& logits, DType act, const Exec& ex) override;
  // logits: (..., V/t) this rank's columns; targets: (...) ids in [0, V).
  void accumulate(const Tensor& logits, const Tensor& targets) override;
  Tensor backward(double scale) override;
  // This rank's share (its V/t columns).
  Cost cost(const Shape& logits) const override;

 private:
  Communicator& tp_;
  int64_t vocab_, local_vocab_, vocab_start_;
  int64_t local_used_;  // this rank's columns below the used ids: [0, local_used_) of its V/t
  Tensor probs_;     // (rows, V/t): softmax, then dL/dlogits after backward
  Tensor max_;       // (rows): the row maxima, all-reduced
  Tensor sums_;      // (2, rows): sum of exp(x - max), target logit; all-reduced
  Tensor argmax_;    // (rows) int32: first global index of the maximum, all-reduced
  Tensor row_loss_;  // (rows) fp64: per-row losses, summed in order for determinism
  Tensor targets_;
  int64_t rows_ = 0;
  Shape logits_shape_;
};

}  // namespace dtrain
