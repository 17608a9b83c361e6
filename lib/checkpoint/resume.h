// `dtrain resume`: which checkpoint to continue from (exactly the one named,
// or the newest complete one under a checkpoint directory, falling back to
// older ones when it is damaged), the checkpoint's config with the user's
// overrides (each change reported; changes that cannot apply to a run in
// progress refused, naming the key), and a Trainer restored to it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "config/config.h"
#include "train/trainer.h"

namespace dtrain {

// The checkpoints `path` names, to try in order: [the one] if it is a
// checkpoint directory or its checkpoint.h5, else every complete checkpoint
// under it (or under its checkpoints/ subdirectory), newest first. `exact`
// says which. Throws InputError if there is none.
struct Candidates {
  std::vector<std::string> dirs;
  bool exact = false;
  std::string root;  // the checkpoint directory searched (when not exact)
  // What was passed over and why: "step_00000012.tmp: incomplete (...)".
  std::vector<std::string> skipped;
  // Not exact: the run each of `dirs` belongs to, as its manifest says ("" when
  // unknown: written before run ids, or no readable manifest), and the run of
  // the directory: the one its `run` file names (written by each save), else
  // that of the checkpoint `latest` names, else the run most of them belong
  // to (ties: the newest's). A checkpoint of another run (copied
  // in) is passed over, naming both runs; naming it exactly resumes it.
  std::vector<std::string> runs;
  std::string run, run_source;  // run_source: how `run` was decided, for messages
};
Candidates find_checkpoints(const std::string& path);
// find_checkpoints on every rank of `world` (collective), where the ranks
// given the directory rank 0 was then take rank 0's list: a checkpoint saved
// or pruned between two ranks' listings (a run still going) cannot give them
// different models. Throws on every rank where any rank found none.
Candidates agreed_checkpoints(const std::string& path, Communicator& world);

// The key that verifies checkpoint `dir` for an evaluation, from its own
// config as `dtrain eval` takes it without --verify-key (null: the config
// names none): checkpoint.verify_key_file, else the public half of
// checkpoint.sign_key_file (PREFIX.pub beside it where there). Throws
// CheckpointError for an unreadable checkpoint, ConfigError for a key file
// that is not there, saying to give --verify-key. `overrides` (--set): those of
// checkpoint.verify_key_file and sign_key_file apply, as they do to the
// checkpoint resume() loads.
std::shared_ptr<const ckpt_sign::PublicKey> evaluation_key_of(const std::string& dir,
                                                              const std::vector<std::string>& overrides = {});

// The config to continue with: the checkpoint's resolved config plus
// `overrides` ("section.key=value"), validated for `world_size` ranks.
// `out_dir` (if not empty) becomes log.out_dir and, unless overridden,
// checkpoint.dir = <out_dir>/checkpoints. Changing parallel.dp re-derives
// train.grad_accum unless it or train.micro_batch is given. A run whose
// planner chose its layout (parallel.mode = "auto", parallel.planned) resumed
// on another number of ranks, without degrees given, asks `auto_layout` to
// choose those keys again for `world_size` (what the config fixed stays).
// Throws ConfigError naming every key whose change cannot apply.
struct ResumeConfig {
  Config cfg;
  std::vector<std::string> changes;  // "train.steps: 20 -> 40", one per changed key
  // The run and checkpoint directories the checkpoint's own config names
  // (before --out or --set moved them).
  std::string own_out_dir, own_checkpoint_dir;
};
// `evaluate` (dtrain eval): only the model's keys are refused, and the
// training keys name the validation data (`eval_data` in place of a GPT's
// data.val where given; ConfigError for a CNN).
ResumeConfig resume_config(const CheckpointMeta& meta, const std::string& checkpoint_dir,
                           const std::vector<std::string>& overrides, const std::string& out_dir,
                           int world_size, const AutoLayout& auto_layout = {}, bool evaluate = false,
                           const std::string& eval_data = {});

// Keeps the records of steps <= `step` in a metrics.jsonl (a run resumed in
// the directory it ran in drops what it did after the checkpoint); each line
// is read as JSON, and one that is not (a half-written last line) is dropped.
// Returns whether an evaluation of `step` (an "eval_loss" record) remains;
// true where there is no metrics file (nothing to complete).
bool trim_metrics(const std::string& path, int64_t step);

struct ResumeRequest {
  std::string path;
  std::vector<std::string> overrides;
  std::string out_dir;
  // The public key (or secret key file) the checkpoint must be signed by,
  // given from outside the checkpoint (`dtrain resume --verify-key FILE`).
  // Without it, the keys the checkpoint's own config names (with --set
  // overrides) decide: checkpoint.verify_key_file, else sign_key_file's public
  // half; with neither, checkpoints are not verified.
  std::string verify_key_file;
  int world_size = 1;
  // parallel.mode = "auto": plans a layout for world_size ranks where the
  // checkpoint's planner chose one for another number (resume_config).
  AutoLayout auto_layout;
  std::function<void(const std::string&)> log;   // progress (rank 0's lines)
  std::function<void(const std::string&)> warn;  // damage this rank found (and skipped)
  // Builds the trainer for a config (under MPI: the mesh of its layout
  // first); `elsewhere`: the run continues in another directory than the
  // checkpoint's own (whose earlier record, if any, is not this run's:
  // store::keep_earlier_output). Default: one process, progress to `log`.
  // The checkpoint sets every parameter next: the trainer need not draw them
  // (TrainerOptions::values_loaded).
  std::function<std::unique_ptr<Trainer>(const Config&, bool elsewhere)> make_trainer;
  // Runs `checks` (this rank's reading of the resumed config and its
  // directories: what one rank alone may refuse) so that every rank learns
  // the outcome together, before any builds a trainer (the app's
  // TrainingSetup::agree); none: runs them here.
  std::function<void(const std::function<std::string()>& checks)> agree;
  // `dtrain eval`: the checkpoint is read to be evaluated, not continued. No
  // output directory is checked or written (the run's metrics.jsonl stays as
  // it is), the optimizer state stays on disk (restore_trainer), and the
  // trainer reads the validation data only: the training keys are set to it
  // (data.train = data.val; a CNN's train_images and train_labels to its val_
  // ones), so that a checkpoint copied away from its training data
  // evaluates. `eval_data`: a GPT's token file or glob pattern in place of
  // data.val ("" keeps the config's).
  bool evaluate_only = false;
  std::string eval_data;
};

struct Resumed {
  std::unique_ptr<Trainer> trainer;
  CheckpointMeta meta;
  std::string dir;  // the checkpoint it continues from
  // The key its signature was checked with (null: not verified).
  std::shared_ptr<const ckpt_sign::PublicKey> key;
  // The checkpoints it chose from, as every rank agreed on them (dtrain eval --all).
  Candidates candidates;
  // The run's metrics.jsonl (cut back to the checkpoint's step) holds an
  // evaluation at that step (or there is none: another --out); false where a
  // stop skipped it.
  bool eval_logged = true;
};

// Finds, configures and loads; with several ranks every rank calls it and
// they agree (over `world`, all ranks) on which checkpoint loaded everywhere;
// each rank reads only its own part, whatever layout wrote the checkpoint.
// Throws CheckpointError when no candidate loads (naming each one's damage).
// A signature that fails (CheckpointSignatureError: unsigned, another key,
// changed after signing) stops the resume at that checkpoint: unlike damage,
// it is not passed over for an older one. Someone changed a checkpoint that
// only the key holder could write, and that is for a person to look into,
// not for the job to paper over (an older checkpoint is still resumed by
// naming it exactly).
//
// The output paths a checkpoint's config holds are followed only where the
// checkpoint lies in them: its checkpoint.dir must be the directory holding
// it and its log.out_dir must contain that; else ConfigError asking for --out
// (or --set log.out_dir / checkpoint.dir). A checkpoint copied in from
// elsewhere, signed or not, cannot make dtrain write where its config says:
// a copy is continued where it lies or where --out says.
Resumed resume(const ResumeRequest& req, Communicator& world);

}  // namespace dtrain
