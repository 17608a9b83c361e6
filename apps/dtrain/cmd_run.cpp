// `dtrain run CONFIG` and `dtrain resume PATH`: training on every rank of the
// launch. Run builds the trainer from a config (and model.init_from); resume
// from the newest good checkpoint, on any layout. Both then train under a
// CheckpointSession (periodic and preemption checkpoints, checkpoint.async)
// and draw the loss plot at the end (log.plot).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "checkpoint/hf.h"
#include "checkpoint/preempt.h"
#include "checkpoint/resume.h"
#include "checkpoint/session.h"
#include "dist/mpi_runtime.h"
#include "parallel/auto_layout.h"
#include "commands.h"
#include "training.h"

namespace dtrain_cli {

namespace {

struct TrainOpts {
  std::string config_path, checkpoint_path, out_dir, verify_key;
  std::vector<std::string> overrides;
  bool verbose = false;
};

// The step loop from `start` under a checkpoint session; the exit status.
// run_id: a resume continues its checkpoint's run; a new run (empty) draws one.
// eval_missing: resumed at a step whose due evaluation a stop skipped.
int train(Context& ctx, TrainingSetup& setup, dtrain::Trainer& trainer, int64_t start, const std::string& run_id = {},
          const std::string& start_dir = {}, bool eval_missing = false) {
  const auto log = setup.log();
  const TestFaults faults = test_faults();
  ctx.shared_failure = false;  // from here on one rank may fail alone
  dtrain::CheckpointSession session(
      trainer, {.signals = ctx.signals, .start_step = start, .start_dir = start_dir, .run_id = run_id, .log = log,
                .on_file_op = faults.on_file_op,
                .warn = [&](const std::string& s) { eprint("dtrain: {}warning: {}\n", ctx.rank_tag, printable(s)); }});
  GraceHooks hooks(session, *ctx.watchdog, start, trainer.config().checkpoint.dir);
  const dtrain::TrainSummary summary =
      trainer.run({.start_step = start, .eval_missing = eval_missing, .hooks = &hooks});
  session.finish();  // checkpoint.async: the write in flight
  // Not on a stop: a preemption's grace is for the checkpoint (the plot took
  // 0.46 s of a 0.53 s stop), and the resume draws the whole run.
  if (ctx.world_rank == 0 && !summary.stopped) plot_run(trainer.config(), log);
  if (summary.stopped) {
    std::fflush(stdout);  // the log's lines (the checkpoint's included) before this one
    if (ctx.world_rank == 0 && session.last_dir().empty())  // during the evaluation before the first step
      eprint("dtrain: stopped by {} during the evaluation at step {} of {}; {}\n", session.stop_reason(),
             summary.steps, trainer.config().train.steps,
             summary.steps == 0 ? "no checkpoint written (the run had done no step): run it again"
                                : session.recovery());
    else if (ctx.world_rank == 0 && summary.steps == trainer.config().train.steps)
      eprint("dtrain: stopped by {} after the last step ({} of {}), before its evaluation; checkpoint {}; "
             "evaluate it with: dtrain resume {}\n",
             session.stop_reason(), summary.steps, trainer.config().train.steps, session.last_dir(),
             trainer.config().checkpoint.dir);
    else if (ctx.world_rank == 0)
      eprint("dtrain: stopped by {} after step {} of {}; checkpoint {}; continue with: dtrain resume {}\n",
             session.stop_reason(), summary.steps, trainer.config().train.steps, session.last_dir(),
             trainer.config().checkpoint.dir);
    return kExitPreempted;
  }
  return kExitOk;
}

}  // namespace

Subcommand add_run(CLI::App& app) {
  auto o = std::make_shared<TrainOpts>();
  auto* run = app.add_subcommand("run", "Train the model a config describes");
  run->add_option("config", o->config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  run->add_option("--set", o->overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--out", o->out_dir, "Output directory (overrides log.out_dir)")->check(output_dir());
  run->add_flag("--verbose,-v", o->verbose,
                "Every rank prints its mesh coordinates and traces each pipeline operation and "
                "collective of the step loop on stderr");
  return {run,
          [o](Context& ctx) {
            std::string layout_why;  // parallel.mode = "auto": what the planner chose and why
            const dtrain::AutoLayout auto_layout =
                dtrain::make_auto_layout([&](const std::string& why) { layout_why = why; });
            TrainingSetup setup(ctx, o->verbose);
            const auto log = setup.log();
            std::vector<std::string> overrides = o->overrides;
            if (!o->out_dir.empty()) overrides.push_back("log.out_dir=" + dtrain::config::toml_string(o->out_dir));
            // Read on every rank (each its own copy): a rank that cannot stops them all.
            std::optional<dtrain::Config> loaded;
            setup.agree([&] {
              loaded.emplace(dtrain::load_config(o->config_path, overrides, ctx.world_size, auto_layout));
              dtrain::derive_used_vocab(loaded->model);  // a padded import's rows never predicted
              return std::string();  // compared once checked (make_trainer)
            });
            const dtrain::Config& cfg = *loaded;
            if (!layout_why.empty()) log(layout_why);
            if (ctx.world_rank == 0)  // reads an hf tokenizer: once
              if (std::string note = tokenizer_note(cfg); !note.empty()) eprint("dtrain: warning: {}\n", note);
            std::unique_ptr<dtrain::Trainer> trainer = setup.make_trainer(cfg, /*new_run=*/true);
            // Under ZeRO each rank takes its range of the imported weights.
            for (const std::string& line : dtrain::init_trainer_from(*trainer, cfg.data.tokenizer)) log(line);
            return train(ctx, setup, *trainer, 0);
          },
          /*needs_mpi=*/true};
}

Subcommand add_resume(CLI::App& app) {
  auto o = std::make_shared<TrainOpts>();
  auto* resume = app.add_subcommand(
      "resume", "Continue training from a checkpoint (the newest good one of a directory), on any layout");
  resume->add_option("path", o->checkpoint_path,
                     "A checkpoint directory (step_N) or its checkpoint.h5: exactly that one; or a "
                     "directory of checkpoints: the newest complete one, falling back to older ones "
                     "if it is damaged")
      ->required();
  resume->add_option("--set", o->overrides, "Override a key of the checkpoint's config (repeatable)")
      ->allow_extra_args(false);
  resume->add_option("--out", o->out_dir, "Output directory (default: the checkpoint's run directory)")
      ->check(output_dir());
  resume->add_option("--verify-key", o->verify_key,
                     "Refuse a checkpoint not signed by this key (a dtrain keygen .pub file, or the secret "
                     ".key); given here, from outside the checkpoint, it also covers a checkpoint whose config "
                     "was stripped of its key");
  resume->add_flag("--verbose,-v", o->verbose, "As for run");
  return {resume,
          [o](Context& ctx) {
            // Stopped before training (loading a large checkpoint): what is left is what was there.
            ctx.watchdog->set_step("", fmt::format("the checkpoints are as they were: continue with: dtrain resume {}",
                                                   printable(o->checkpoint_path)));
            TrainingSetup setup(ctx, o->verbose);
            const auto log = setup.log();
            std::unique_ptr<dtrain::Trainer> trainer;
            int64_t start = 0;
            std::string run_id, start_dir;
            bool eval_missing = false;  // the checkpoint's step: an evaluation due there, skipped by a stop
            std::string layout_why;  // the layout planned again (parallel.mode = "auto", other ranks)
            {  // all ranks, before the checkpoint's layout is known: to agree on which checkpoint loaded
              std::optional<dtrain::Mesh> all;
              dtrain::SelfGroups alone;  // one process without MPI
              dtrain::Communicator& world =
                  ctx.mpi ? all.emplace(dtrain::MeshLayout{ctx.world_size, 1, 1}, setup.comm).world() : *alone.groups().world;
              dtrain::Resumed r = dtrain::resume(
                  {.path = o->checkpoint_path,
                   .overrides = o->overrides,
                   .out_dir = o->out_dir,
                   .verify_key_file = o->verify_key,
                   .world_size = ctx.world_size,
                   // An auto-mode run's layout, planned again for another number of ranks: said once.
                   .auto_layout = dtrain::make_auto_layout([&](const std::string& why) {
                     if (std::exchange(layout_why, why).empty()) log(why);
                   }),
                   .log = log,
                   .warn = [&](const std::string& s) { eprint("dtrain: {}warning: {}\n", ctx.rank_tag, printable(s)); },
                   .make_trainer = [&](const dtrain::Config& cfg, bool elsewhere) {
                     return setup.make_trainer(cfg, /*new_run=*/false, /*keep_earlier=*/elsewhere);
                   },
                   .agree = [&](const std::function<std::string()>& checks) { setup.agree(checks); },
                   .evaluate_only = false,
                   .eval_data = {}},
                  world);
              trainer = std::move(r.trainer);
              start = r.meta.step;
              run_id = r.meta.run_id;
              start_dir = r.dir;
              eval_missing = !r.eval_logged;
            }
            // Stopped at the last step: its evaluation, which the stop skipped, is all that is left.
            if (start >= trainer->config().train.steps && !(eval_missing && start == trainer->config().train.steps)) {
              log(fmt::format("nothing to do: the checkpoint is at step {} = train.steps (continue further "
                              "with --set train.steps=N)",
                              start));
              return kExitOk;
            }
            return train(ctx, setup, *trainer, start, run_id, start_dir, eval_missing);
          },
          /*needs_mpi=*/true};
}

}  // namespace dtrain_cli
