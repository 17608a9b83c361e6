// Checkpoints of a Trainer: saving and restoring its whole state, and the
// step-loop hooks that write checkpoints every N steps, every M minutes, at
// the end, and when a preemption signal asks the run to stop. Decisions that
// every rank must share (stop now, the time-based checkpoint is due) are
// agreed by one all-reduce (max) over the world communicator per step.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "checkpoint/preempt.h"
#include "train/trainer.h"

namespace dtrain {

// The metadata of `trainer` after `step` steps, in `layout`.
CheckpointMeta trainer_meta(Trainer& trainer, int64_t step, const Layout& layout);

// This rank's place among the copies of the state (see collect_pieces).
struct Replica {
  bool first_dp = true;  // data-parallel rank 0
  bool first_tp = true;  // tensor-parallel rank 0
};

// Writes the trainer's state after `step` steps to cfg.checkpoint.dir.
SaveResult save_trainer(Trainer& trainer, int64_t step, Communicator& world, const Layout& layout,
                        Replica replica, const SaveOptions& opts);

// Loads the checkpoint in `dir` into the trainer (parameters, buffers,
// optimizer state and update count) and checks that it continues the same run
// (model, optimizer, seed, data position). Returns its metadata. Throws
// CheckpointError on damage, ConfigError when it does not fit the trainer.
CheckpointMeta restore_trainer(Trainer& trainer, const std::string& dir);

struct SessionOptions {
  Communicator* world = nullptr;   // every rank of the job (required)
  Layout layout;
  Replica replica;
  SignalWatch* signals = nullptr;  // preemption signals to poll; nullptr = none
  int64_t start_step = 0;          // the step the run resumed from (already on disk)
  std::function<void(const std::string&)> log;
  std::function<void(const std::string&)> on_file_op;  // tests (SaveOptions::on_file_op)
};

// The hooks Trainer::run calls (see train/hooks.h).
class CheckpointSession : public TrainHooks {
 public:
  CheckpointSession(Trainer& trainer, SessionOptions opts);

  bool should_stop(int64_t done) override;
  void after_step(int64_t done, bool stopping) override;

  // Why the run stopped early ("SIGTERM", "a signal on another rank"), or "".
  const std::string& stop_reason() const { return stop_reason_; }
  // The last checkpoint written (empty if none) and its step.
  const std::string& last_dir() const { return last_dir_; }
  int64_t last_step() const { return last_step_; }

 private:
  Trainer& trainer_;
  SessionOptions opts_;
  std::chrono::steady_clock::time_point last_save_time_;
  bool time_due_ = false;
  std::string stop_reason_;
  std::string last_dir_;
  int64_t last_step_ = -1;
};

}  // namespace dtrain
