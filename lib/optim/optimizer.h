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
  virtual void step(double lr, double grad_scale = 1.0) = 0;
  // Named state tensors (e.g. "adamw.m", "adamw.v"), flat, same offsets as the parameters.
  virtual std::vector<std::pair<std::string, Tensor>> state() = 0;
  // Number of updates done so far.
  virtual int64_t steps_done() const = 0;
  virtual void set_steps_done(int64_t n) = 0;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, ParamStore& params);

// Learning rate at optimizer step `step` (0-based): linear warm-up from 0 over
// warmup_steps, then cosine or linear decay to min_lr at decay_steps (default:
// the run's total steps), min_lr after that; or constant after warm-up.
double learning_rate(const OptimConfig& cfg, int64_t total_steps, int64_t step);

// L2 norm of all gradients (deterministic for any thread count).
double grad_norm(ParamStore& params);

// The factor that clips gradients of norm `norm` to at most max_norm (1 when
// max_norm is 0, i.e. clipping is off, or the norm is already below it).
double clip_scale(double norm, double max_norm);

}  // namespace dtrain
