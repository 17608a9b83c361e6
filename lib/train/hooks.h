// What the step loop lets later stages do at step boundaries without it
// knowing about them: checkpointing and preemption (lib/checkpoint) plug in
// here, so the trainer has no file formats, signals or clocks of its own.
// With several ranks every rank calls the same hooks at the same steps, and an
// implementation agrees its decisions over the world communicator.
#pragma once

#include <cstdint>

namespace dtrain {

class TrainHooks {
 public:
  virtual ~TrainHooks() = default;
  // After step `done` (steps done so far, 1-based) and its metrics record,
  // before that step's evaluation: true ends the run after this step (a stop
  // was requested; the evaluation is skipped). Every rank returns the same.
  virtual bool should_stop(int64_t done) { return false; }
  // Between the batches of an evaluation (after step `done`, or before the
  // first step at `done` = the start): true when a stop was requested; the
  // evaluation is abandoned and the run ends at that step boundary, as with
  // should_stop. Every rank calls it at the same points and returns the same.
  virtual bool stop_requested(int64_t done) { return false; }
  // After step `done`, its evaluation (if any) and the should_stop decision:
  // where checkpoints are written. `stopping` says the run ends here.
  virtual void after_step(int64_t done, bool stopping) {}
};

// How Trainer::run starts and what it calls.
struct RunOptions {
  // Steps already done: the model and optimizer hold the state after them
  // (restored from a checkpoint); metrics.jsonl is appended to, and the
  // evaluation before the first step is skipped.
  int64_t start_step = 0;
  // Resumed at a step whose evaluation is due (train.eval_every, or the last
  // step) but was not logged (the run that wrote the checkpoint stopped
  // there, a stop skipping the evaluation): evaluated before the first step,
  // as that step's (with no step to run after it at the last one).
  bool eval_missing = false;
  TrainHooks* hooks = nullptr;
};

}  // namespace dtrain
