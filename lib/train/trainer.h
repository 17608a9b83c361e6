// The step loop, separate from the model: data -> forward/backward over the
// micro-batches of a step -> gradient clipping -> optimizer update -> logging
// and evaluation. Everything is allocated before the first step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "config/config.h"
#include "model/model.h"
#include "optim/optimizer.h"
#include "train/data_source.h"
#include "train/hooks.h"
#include "train/metrics.h"

namespace dtrain {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;  // fraction of items whose argmax is the target
  int64_t items = 0;
};

struct TrainSummary {
  int64_t steps = 0;       // steps done when run() returned (counting those before a resume)
  bool stopped = false;    // a hook ended the run before train.steps (preemption)
  int64_t skipped = 0;     // steps whose update was skipped (non-finite loss, skip_nonfinite)
  double last_loss = 0;
  EvalResult first_eval;  // before training
  EvalResult last_eval;   // after the last step
  double seconds = 0;
  double items_per_second = 0;
};

class Trainer {
 public:
  // Builds the model, data sources and optimizer and plans all memory.
  // Progress lines go to `log` (one per call).
  Trainer(const Config& cfg, std::function<void(const std::string&)> log);
  ~Trainer();

  // Trains up to cfg.train.steps steps, writing <out_dir>/config.toml and
  // <out_dir>/metrics.jsonl; evaluates before the first step, every
  // train.eval_every steps and after the last. `opts` resumes from a step
  // and plugs in hooks (checkpoints, preemption).
  TrainSummary run(const RunOptions& opts = {});

  // One evaluation pass over the validation data.
  EvalResult evaluate();

  Model& model() { return *model_; }
  Optimizer& optimizer() { return *opt_; }
  // Tokens or images one optimizer step consumes (all ranks together).
  int64_t items_per_step() const { return cfg_.train.global_batch * model_->items_per_sample(); }
  const Config& config() const { return cfg_; }

 private:
  // Returns the mean training loss of the step; a non-finite loss or
  // gradient norm throws, or (train.skip_nonfinite) skips the update.
  double train_step(int64_t step, const RunOptions& opts);

  Config cfg_;
  std::function<void(const std::string&)> log_;
  int64_t seq_len_ = 0;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> opt_;
  DataSources data_;
  Tensor x_, y_;  // one micro-batch
  double last_grad_norm_ = 0;
};

}  // namespace dtrain
