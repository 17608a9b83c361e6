#include <algorithm>
#include <cmath>

#include "optim/optimizer.h"

namespace dtrain {

double learning_rate(const OptimConfig& cfg, int64_t total_steps, int64_t step) {
  if (cfg.warmup_steps > 0 && step < cfg.warmup_steps)
    return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(cfg.warmup_steps);
  if (cfg.schedule == "constant") return cfg.lr;
  const int64_t end = cfg.decay_steps > 0 ? cfg.decay_steps : total_steps;
  if (step >= end) return cfg.min_lr;
  const int64_t start = std::max(cfg.decay_start, cfg.warmup_steps);
  if (step < start) return cfg.lr;  // the stable phase of warmup-stable-decay
  const int64_t span = end - start;
  const double progress = span > 0 ? static_cast<double>(step - start) / span : 1.0;
  double frac;  // 1 at the start of decay, 0 at its end
  if (cfg.schedule == "linear")
    frac = 1.0 - progress;
  else if (cfg.schedule == "sqrt")  // the cooldown of Hägele et al. 2024, arXiv:2405.18392
    frac = 1.0 - std::sqrt(progress);
  else
    frac = 0.5 * (1.0 + std::cos(M_PI * progress));
  return cfg.min_lr + (cfg.lr - cfg.min_lr) * frac;
}

}  // namespace dtrain
