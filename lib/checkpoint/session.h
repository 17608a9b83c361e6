// Checkpoints of a Trainer: saving and restoring its whole state on any
// layout, and the step-loop hooks that write checkpoints every N steps, every
// M minutes, at the end, and when a preemption signal asks the run to stop.
// Decisions that every rank must share (stop now, the time-based checkpoint is
// due) are agreed by one all-reduce (max) over the world group per step.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "checkpoint/preempt.h"
#include "train/trainer.h"

namespace dtrain {

// The keys a config names, read and checked (ConfigError, one line naming the
// key and the file): `sign` from checkpoint.sign_key_file, `verify` from
// checkpoint.verify_key_file, else sign's public half; each empty if not set.
struct CheckpointKeys {
  std::shared_ptr<const ckpt_sign::SecretKey> sign;
  std::shared_ptr<const ckpt_sign::PublicKey> verify;
};
CheckpointKeys checkpoint_keys(const Config& cfg);
// log.dir_mode as a number (0700 if it does not parse: validation reports it).
unsigned dir_mode(const Config& cfg);

// The metadata of `trainer` after `step` steps (its layout from its groups),
// of run `run_id` (see CheckpointMeta::run_id).
CheckpointMeta trainer_meta(Trainer& trainer, int64_t step, const std::string& run_id = "");

// Writes the trainer's state after `step` steps to cfg.checkpoint.dir,
// collectively over its world group. Each element is written once: the
// data-parallel ranks of each tensor- and pipeline-parallel position write
// equal ranges of the flat parameters (under ZeRO each rank the range whose
// optimizer state and masters it holds: nothing gathered); buffers by
// data-parallel rank 0. Local sync's replicas differ: data-parallel rank 0
// writes model/* and optim/*, and every replica its own replica/<d>/*.
SaveResult save_trainer(Trainer& trainer, int64_t step, const SaveOptions& opts,
                        const std::string& run_id = "");

// Loads the checkpoint in `dir` into the trainer, whatever layout wrote it
// (parameters, buffers, this rank's range of the optimizer state and the
// update count) and checks that it continues the same run (model, optimizer,
// seed, data position). Returns its metadata. Throws CheckpointError on
// damage, ConfigError when it does not fit the trainer. Reads only; every
// rank reads its own part (Trainer::checkpoint_range: under data parallelism
// one part of what it holds whole, the rest all-gathered at the next step or
// evaluation, Trainer::range_loaded). With `key`, the checkpoint must be signed by it
// (CheckpointSignatureError otherwise). Without `optimizer_state` (an
// evaluation) only the parameters and buffers are read: the optimizer's
// state and update count stay as they are (and local sync's replicas at the
// agreed model).
CheckpointMeta restore_trainer(Trainer& trainer, const std::string& dir, VerifyKey key = nullptr,
                               bool optimizer_state = true);

// model.init_from into a trainer (apply_init_from): where ZeRO shards the
// masters each rank takes its range of every imported tensor into its shard,
// nothing gathered; else the parameters whole. Reads only (the compute copy
// of the other ranks' ranges is gathered before the next step or
// evaluation). Returns the lines to log.
std::vector<std::string> init_trainer_from(Trainer& trainer, const std::string& tokenizer);

struct SessionOptions {
  SignalWatch* signals = nullptr;  // preemption signals to poll; nullptr = none
  int64_t start_step = 0;          // the step the run resumed from (already on disk)
  std::string start_dir;           // the checkpoint it resumed from ("" for a new run)
  // The run's identity, written in every checkpoint: a resume passes its
  // checkpoint's; "" draws a new one (a run's first start; collective).
  std::string run_id;
  std::function<void(const std::string&)> log;          // rank 0's progress lines
  std::function<void(const std::string&)> on_file_op;  // tests (SaveOptions::on_file_op)
  std::function<void(const std::string&)> warn;        // a background checkpoint that failed
};

// The hooks Trainer::run calls (see train/hooks.h).
class CheckpointSession : public TrainHooks {
 public:
  CheckpointSession(Trainer& trainer, SessionOptions opts);

  ~CheckpointSession() override;

  bool should_stop(int64_t done) override;
  bool stop_requested(int64_t done) override;
  void after_step(int64_t done, bool stopping) override;
  // checkpoint.async: waits for the checkpoint being written in the
  // background (collective: every rank calls it after the run) and reports
  // its outcome; a failure is logged, the previous checkpoint stays newest.
  void finish();

  // Why the run stopped early ("SIGTERM", "SIGUSR1 on rank 3": another rank's), or "".
  const std::string& stop_reason() const { return stop_reason_; }
  // The last checkpoint written (empty if none) and its step.
  const std::string& last_dir() const { return last_dir_; }
  int64_t last_step() const { return last_step_; }
  // The newest complete checkpoint of this run: the last one written, else
  // the one it resumed from; "" when there is none yet.
  std::string newest_dir() const;
  // What is left to continue from, for a message about a failure or a stop
  // that cut the run short: "the newest checkpoint is DIR (step N)" + `aside`
  // + "; continue with: dtrain resume ..." (the run's checkpoint directory
  // once it has saved; before, the checkpoint it resumed from, with the
  // run's --out where it continues elsewhere), or that there is none.
  std::string recovery(const std::string& aside = "") const;
  // checkpoint.async: the step of the checkpoint being written in the
  // background (not yet known to be complete), else -1.
  int64_t writing_step() const;
  const std::string& run_id() const { return opts_.run_id; }

 private:
  Trainer& trainer_;
  SessionOptions opts_;
  std::shared_ptr<const ckpt_sign::SecretKey> sign_key_;  // checkpoint.sign_key_file, read once
  std::chrono::steady_clock::time_point last_save_time_;
  bool time_due_ = false;
  std::string stop_reason_;
  std::string last_dir_;
  int64_t last_step_ = -1;

  // The checkpoint being written in the background (checkpoint.async).
  struct InFlight {
    PendingSave save;
    std::vector<Piece> snapshot;  // host copies of this rank's pieces
    std::string error;            // this rank's part (or, on the lead, the publication) failed
    SaveResult result;            // the lead's, when published
    double stall_seconds = 0, write_seconds = 0;
    std::thread thread;
  };
  std::unique_ptr<InFlight> in_flight_;
  // Host buffers the async snapshots are copied into, allocated and touched
  // once when the session starts: a first touch of fresh pages costs ~5x the
  // copy itself (1.5 GB: 7.9 s against 0.4 s here), and that must not stall a step.
  std::vector<Tensor> host_;
  // The stop signals of every rank (and, with `clock`, rank 0's time-based
  // checkpoint), agreed over the world; logs the first stop, `where()`
  // (made only then: an evaluation asks between its batches).
  bool agree_stop(bool clock, const std::function<std::string()>& where);
  std::vector<Piece> snapshot_pieces(bool copy);
  void save_async(int64_t done);
  void save_sync(int64_t done);
};

}  // namespace dtrain
