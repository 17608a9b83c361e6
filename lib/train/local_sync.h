// Training across sites that rarely talk: local SGD, and DiLoCo (Douillard et
// al. 2023, "DiLoCo: Distributed Low-Communication Training of Language
// Models"). With parallel.sync = "local" each data-parallel replica takes
// parallel.sync_every (H) optimizer steps on its own data with no gradient
// all-reduce; then the replicas all-reduce their parameter changes since the
// last sync (the "pseudo-gradient", one all-reduce of the parameters per H
// steps instead of one of the gradients per step) and apply an outer
// optimizer to the synced parameters (the "anchor"):
//   average:  anchor += outer_lr * mean_d(delta_d)          (outer_lr 1: plain averaging)
//   nesterov: m = mu * m + mean(delta); anchor += outer_lr * (mean(delta) + mu * m)
// (PyTorch's SGD with Nesterov momentum on the outer gradient -mean(delta)),
// and every replica continues from the new anchor. Each replica keeps its
// own inner optimizer state across periods, as DiLoCo does.
// H = 1 with plain averaging (outer_lr 1) is not run here: syncing every step
// is data parallelism, the gradients averaged before the one optimizer step
// (config.h: local_sync_is_dp), and the trainer runs the gradient all-reduce.
//
// Tensor and pipeline parallelism work inside each replica unchanged: a rank
// holds its stage's (and tensor shard's) slice of the flat parameters, and
// the outer all-reduce runs over the dp group only, rank by rank of the slice.
#pragma once

#include <cstdint>

#include "config/config.h"
#include "core/comm.h"
#include "core/exec.h"
#include "model/param.h"

namespace dtrain {

class LocalSync {
 public:
  // The anchor starts as the current parameters (call reset_anchor after
  // loading others). `dp` is the data-parallel group.
  LocalSync(ParamStore& params, Communicator& dp, const ParallelConfig& cfg, const Exec& ex);

  // True when the step with 0-based index `step` of a run of `steps` ends a
  // period: every sync_every steps, and the run's last step (so that a run
  // always ends with one model).
  bool due(int64_t step, int64_t steps) const;
  // The outer step: all-reduce of the parameter changes over dp, the outer
  // optimizer on the anchor, every replica's parameters (and batch-norm
  // buffers, averaged) set to it.
  void sync();
  // anchor = the current parameters and buffers (after a restore).
  void reset_anchor();

  // Evaluation sees the replicas' agreed model: the anchor is swapped into
  // the parameters and back (both exact copies).
  void swap_in_anchor();
  void swap_back();

  // The last synced parameters (flat, the offsets of params.values()) and
  // buffers, and the outer momentum (undefined unless outer_optim = nesterov).
  Tensor& anchor() { return anchor_; }
  Tensor& anchor_buffers() { return anchor_buf_; }
  Tensor& momentum() { return mom_; }
  // Bytes of its fp32 copies and scratch (the anchor, the mean change, the
  // saved parameters, the outer momentum; and the buffers' anchor and save).
  double bytes() const {
    double b = 0;
    for (const Tensor* t : {&anchor_, &anchor_buf_, &mom_, &delta_, &saved_, &saved_buf_})
      if (t->defined()) b += static_cast<double>(t->bytes());
    return b;
  }
  int64_t syncs() const { return syncs_; }

 private:
  ParamStore& params_;
  Communicator& dp_;
  ParallelConfig cfg_;
  Exec ex_;
  Tensor anchor_, anchor_buf_, mom_;
  Tensor delta_;                  // scratch: this replica's change, then the mean change
  Tensor saved_, saved_buf_;      // the replica's own parameters while the anchor is swapped in
  int64_t syncs_ = 0;
};

}  // namespace dtrain
