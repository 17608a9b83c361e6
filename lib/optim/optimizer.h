// Optimizers over the flat parameter buffer: AdamW (decoupled weight decay) and
// SGD with momentum. Both walk the ParamStore's parameters by offset, apply
// weight decay only where Param::decay is set (not to norms and biases), and
// expose their state tensors by name so checkpoints can save and shard them.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "model/param.h"

namespace dtrain {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every trainable parameter from its gradient times
  // grad_scale (gradient clipping folded into the update: one pass over memory).
  // zero_grads: the update also sets every gradient it read to 0 in that pass.
  virtual void step(double lr, double grad_scale = 1.0, bool zero_grads = false) = 0;
  // Whether step(..., zero_grads = true) leaves the whole flat gradient buffer
  // of the ParamStore zero (its range is all of it and it reads the
  // parameters' own gradients, not a ZeRO shard); the trainer then skips the
  // next step's zeroing pass.
  virtual bool zeroes_all_grads() const = 0;
  // Named state tensors (e.g. "adamw.m", "adamw.v"), flat, same offsets as the parameters.
  virtual std::vector<std::pair<std::string, Tensor>> state() = 0;
  // Number of updates done so far.
  virtual int64_t steps_done() const = 0;
  virtual void set_steps_done(int64_t n) = 0;
};

// A contiguous range [begin, end) of the flat trainable buffer.
struct FlatRange {
  int64_t begin = 0;
  int64_t end = -1;  // -1: to the end of the buffer
};

// An optimizer over the parameters' elements in `range` (all by default):
// ZeRO-1 gives each data-parallel rank one range, whose state it alone keeps.
// Its state tensors cover exactly the range; the update of every element is
// the same whatever the range, so sharded and unsharded runs agree bit for bit.
// grad_shard (ZeRO): when defined, the range's gradients are read from it
// (element range.begin + i at i) instead of the parameters' grad views.
// value_shard (ZeRO-3): when defined, the range's masters live there (same
// indexing) instead of in the parameters' value views, and under mixed
// precision compute_shard receives their compute copy.
std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, ParamStore& params,
                                          FlatRange range = {}, const Tensor& grad_shard = Tensor{},
                                          const Tensor& value_shard = Tensor{}, const Tensor& compute_shard = Tensor{});

// Learning rate at optimizer step `step` (0-based): linear warm-up from 0 over
// warmup_steps, lr until decay_start (warmup-stable-decay; 0: no stable
// phase; validation refuses other values below warmup_steps), then cosine,
// linear or 1 - sqrt decay
// to min_lr at decay_steps (default: the run's total steps), min_lr after
// that; or constant after warm-up.
double learning_rate(const OptimConfig& cfg, int64_t total_steps, int64_t step);

// Sum of squared gradients of this rank's primary parameters (not the
// pipeline's second copy of a tied weight), in parameter order; parameters not
// split by tensor parallelism only when `replicated` (so that summing over a
// tensor-parallel group counts them once).
double grad_sum_squares(const ParamStore& params, bool replicated);

// The factor that clips gradients of norm `norm` to at most max_norm (1 when
// max_norm is 0, i.e. clipping is off, or the norm is already below it).
double clip_scale(double norm, double max_norm);

}  // namespace dtrain
