// What `dtrain run`, `resume` and `profile` share: the ranks' groups for a
// config (the MPI mesh, or on GPUs the device groups), one run per output
// directory (locks), the checks before a trainer is built, the watchdog's
// grace in the step loop, and the fault injection of the end-to-end tests.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/run_lock.h"
#include "checkpoint/session.h"
#include "config/config.h"
#include "dist/device_groups.h"
#include "dist/mesh.h"
#include "dist/watchdog.h"
#include "parallel/layout.h"
#include "train/hooks.h"
#include "train/trainer.h"
#include "commands.h"

namespace dtrain_cli {

// Fault injection for the end-to-end tests, from the environment:
//   DTRAIN_TEST_KILL_AT_FILE_OP=k  SIGKILL right after the k-th file operation
//                                  of the checkpoint writes (counted over the run);
//                                  k = 0 lists them on stderr instead
//   DTRAIN_TEST_FAIL_AT_FILE_OP=k  the k-th file operation fails (a RuntimeError)
//   DTRAIN_TEST_NAN_AT_STEP=k      the loss of step k becomes NaN
struct TestFaults {
  std::function<void(const std::string&)> on_file_op;
  int64_t nan_at_step = 0;
};
TestFaults test_faults();

// The output and checkpoint directories must be writable: the nearest
// existing directory at or above each (it will be created below that).
std::vector<std::string> output_problems(const dtrain::Config& cfg);
// The files a run reads before its first step, checked as `dtrain run` would
// and said one line each: the data (dtrain::data_problems), the checkpoint
// signing keys (checkpoint.sign_key_file, verify_key_file) and
// model.init_from's directory. `dtrain validate` and a sweep's trials.
std::vector<std::string> input_problems(const dtrain::Config& cfg);
// data.tokenizer = "gpt2" whose data.tokenizer_dir lacks the tokenizer's
// files: training reads only token ids, but generate and export decode with
// them. The line that says so ("" when they are there, or the tokenizer is bytes).
std::string tokenizer_note(const dtrain::Config& cfg);
// A new run (dtrain run) whose checkpoint directory already holds complete
// checkpoints, which its saves would prune as its own: the line that says so
// and how to continue that run instead ("" when there are none).
std::string earlier_run_problem(const dtrain::Config& cfg);

// Forwards the step-loop hooks and tells the watchdog how long a stop signal
// may wait for the next step boundary: three times the longest step so far
// (checkpoint writes included), at least 5 s; 60 s until the first step ends.
class GraceHooks : public dtrain::TrainHooks {
 public:
  // Also keeps the watchdog's notes (the step under way, the newest
  // checkpoint) for a stop that cannot reach a step boundary.
  GraceHooks(dtrain::CheckpointSession& inner, dtrain::Watchdog& dog, int64_t start_step,
             std::string checkpoint_dir);
  ~GraceHooks() override;
  bool should_stop(int64_t done) override { return inner_.should_stop(done); }
  bool stop_requested(int64_t done) override { return inner_.stop_requested(done); }
  void after_step(int64_t done, bool stopping) override;

 private:
  dtrain::CheckpointSession& inner_;
  dtrain::Watchdog& dog_;
  std::string checkpoint_dir_;
  void note_step(int64_t done);
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  double longest_ = 0;
};

// One training process's setup, on every rank: over MPI where ctx.mpi is up,
// else (one process, started alone) with one-member groups.
class TrainingSetup {
 public:
  TrainingSetup(Context& ctx, bool verbose);

  // Rank 0 prints it (print_line); the others drop it.
  std::function<void(const std::string&)> log() const;
  // Every rank of the launch calls it at the same point, together. `local`
  // runs this rank's own part (reading the config, checking its files,
  // device and directories: what can differ between nodes) and returns the
  // config's text (to_toml), or "" to compare none. The ranks then learn
  // whether every one succeeded with the same config; if not, one rank says
  // why and every rank throws, so none goes on into training alone:
  // - a failure on rank 0 is said by rank 0 (a bad config fails everywhere);
  // - else the first rank that failed says its own, tagged with its rank;
  // - else the first rank whose config differs from rank 0's names the
  //   first key that differs (each rank read its own copy and --set options).
  // On one process it runs `local`.
  void agree(const std::function<std::string()>& local);
  // The groups of the config's layout: the mesh (rebuilt only if a config
  // asks for another), on GPUs the device groups (NCCL or MPI host-staged,
  // parallel.device_comm).
  dtrain::Groups groups_for(const dtrain::Config& cfg);
  // One run per output and checkpoint directory: rank 0 holds the locks,
  // every rank learns the outcome.
  void lock_dirs(const dtrain::Config& cfg);
  // The device, memory and directory checks, the locks, the groups, the
  // trainer. A new run (dtrain run) also refuses a checkpoint directory that
  // holds another run's checkpoints (earlier_run_problem), once it holds the
  // locks: a live run there is named as such.
  // A new run, or one that continues elsewhere (`keep_earlier`), keeps an
  // earlier run's record in log.out_dir aside (store::keep_earlier_output).
  // Not a new run: a resume, whose checkpoint sets every parameter, so none
  // is drawn (TrainerOptions::values_loaded).
  std::unique_ptr<dtrain::Trainer> make_trainer(const dtrain::Config& cfg, bool new_run = false,
                                                bool keep_earlier = false);
  // `dtrain eval`: the device, memory and input checks, the groups, a trainer
  // for a checkpoint's parameters; no directory is checked, locked or written.
  // Its progress lines go to `log` (rank 0's). `init_from`: the weights come
  // from model.init_from (checked here), not a checkpoint.
  std::unique_ptr<dtrain::Trainer> make_eval_trainer(const dtrain::Config& cfg,
                                                     std::function<void(const std::string&)> log,
                                                     bool init_from = false);

  dtrain::MpiCommOptions comm;
  dtrain::TrainerOptions options;

 private:
  // make_trainer's checks on every rank, agreed (`writes`: the output directories too;
  // `init_from`: model.init_from's directory too).
  void check_before_trainer(const dtrain::Config& cfg, bool init_from, bool writes);

  Context& ctx_;
  bool verbose_;
  std::unique_ptr<dtrain::Mesh> mesh_;
  std::unique_ptr<dtrain::DeviceGroups> device_groups_;
  std::unique_ptr<dtrain::SelfGroups> self_;  // without MPI
  std::vector<dtrain::RunLock> locks_;
};

}  // namespace dtrain_cli
