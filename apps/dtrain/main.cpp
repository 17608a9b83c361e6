// dtrain: the command line. Parses arguments, runs one subcommand, and maps
// dtrain's error kinds to exit codes (only apps/ decides exit codes):
//   0 success, 1 runtime failure, 2 bad config or input (a damaged checkpoint
//   included), 3 internal error, 4 stopped by a preemption signal after
//   writing a checkpoint.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "checkpoint/inspect.h"
#include "checkpoint/resume.h"
#include "checkpoint/session.h"
#include "config/config.h"
#include "train/trainer.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;
constexpr int kExitInternal = 3;
constexpr int kExitPreempted = 4;

void print_line(const std::string& s) {
  std::fputs(s.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int exit_code_for(const dtrain::Error& e) {
  switch (e.kind()) {
    case dtrain::ErrorKind::kConfig:
    case dtrain::ErrorKind::kInput: return kExitConfig;
    case dtrain::ErrorKind::kRuntime: return kExitRuntime;
    case dtrain::ErrorKind::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

void report(const dtrain::Error& e) {
  if (const auto* ce = dynamic_cast<const dtrain::ConfigError*>(&e)) {
    for (const auto& p : ce->problems()) fmt::print(stderr, "dtrain: error: {}\n", p);
    if (ce->problems().size() > 1)
      fmt::print(stderr, "dtrain: {} problems in the config\n", ce->problems().size());
    return;
  }
  const char* what = e.kind() == dtrain::ErrorKind::kInternal ? "internal error (a dtrain bug)" : "error";
  fmt::print(stderr, "dtrain: {}: {}\n", what, e.what());
}

void print_warning(const std::string& s) { fmt::print(stderr, "dtrain: warning: {}\n", s); }

// Fault injection for the end-to-end tests, from the environment:
//   DTRAIN_TEST_KILL_AT_FILE_OP=k  SIGKILL right after the k-th file operation
//                                  of the checkpoint writes (counted over the run);
//                                  k = 0 lists them on stderr instead
//   DTRAIN_TEST_NAN_AT_STEP=k      the loss of step k becomes NaN
struct TestFaults {
  std::function<void(const std::string&)> on_file_op;
  int64_t nan_at_step = 0;
};

TestFaults test_faults() {
  TestFaults f;
  if (const char* k = std::getenv("DTRAIN_TEST_KILL_AT_FILE_OP")) {
    auto count = std::make_shared<int64_t>(0);
    const int64_t at = std::atoll(k);
    f.on_file_op = [count, at](const std::string& what) {
      ++*count;
      if (at == 0) fmt::print(stderr, "dtrain: test: file operation {}: {}\n", *count, what);
      if (*count == at) {
        fmt::print(stderr, "dtrain: test: SIGKILL after file operation {}: {}\n", at, what);
        std::raise(SIGKILL);
      }
    };
  }
  if (const char* k = std::getenv("DTRAIN_TEST_NAN_AT_STEP")) f.nan_at_step = std::atoll(k);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dtrain: train GPT-style transformers and CNNs from TOML configs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dtrain ") + DTRAIN_VERSION);

  std::string config_path, out_dir;
  std::vector<std::string> overrides;

  auto* run = app.add_subcommand("run", "Train the model a config describes");
  run->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  run->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--out", out_dir, "Output directory (overrides log.out_dir)");

  auto* validate = app.add_subcommand("validate", "Check a config and print its resolved values");
  validate->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  validate->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  auto* keys = app.add_subcommand("keys", "List every config key with its type, default and help");

  std::string checkpoint_path;
  auto* resume = app.add_subcommand(
      "resume", "Continue training from a checkpoint (the newest good one of a directory)");
  resume->add_option("path", checkpoint_path,
                     "A checkpoint directory (step_N) or its checkpoint.h5: exactly that one; or a "
                     "directory of checkpoints: the newest complete one, falling back to older ones "
                     "if it is damaged")
      ->required();
  resume->add_option("--set", overrides, "Override a key of the checkpoint's config (repeatable)")
      ->allow_extra_args(false);
  resume->add_option("--out", out_dir, "Output directory (default: the checkpoint's run directory)");

  bool verify = false;
  auto* inspect = app.add_subcommand("inspect", "Describe a checkpoint: step, layout, config, tensors");
  inspect->add_option("path", checkpoint_path, "A checkpoint, its checkpoint.h5, or a directory of them")
      ->required();
  inspect->add_flag("--verify", verify, "Also read every tensor back and check its checksum");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitConfig;
  }

  try {
    if (keys->parsed()) {
      std::fputs(dtrain::describe_keys().c_str(), stdout);
      return kExitOk;
    }
    if (inspect->parsed()) {
      std::fputs(dtrain::describe_checkpoint(checkpoint_path, verify).c_str(), stdout);
      return kExitOk;
    }
    if (validate->parsed()) {
      if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
      dtrain::Config cfg = dtrain::load_config(config_path, overrides);
      std::fputs(dtrain::to_toml(cfg).c_str(), stdout);
      fmt::print(stderr, "dtrain: {} is valid\n", config_path);
      return kExitOk;
    }
    // Training (run or resume). Preemption signals are blocked before any
    // thread starts and polled at step boundaries.
    dtrain::SignalWatch signals;
    auto world = dtrain::make_self_communicator("world");
    const TestFaults faults = test_faults();
    std::unique_ptr<dtrain::Trainer> trainer;
    int64_t start = 0;
    if (run->parsed()) {
      if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
      trainer = std::make_unique<dtrain::Trainer>(dtrain::load_config(config_path, overrides), print_line);
    } else {
      dtrain::Resumed r = dtrain::resume({.path = checkpoint_path, .overrides = overrides,
                                          .out_dir = out_dir, .world_size = world->size(),
                                          .log = print_line, .warn = print_warning},
                                         *world);
      trainer = std::move(r.trainer);
      start = r.meta.step;
      if (start >= trainer->config().train.steps) {
        print_line(fmt::format("nothing to do: the checkpoint is at step {} = train.steps (continue "
                               "further with --set train.steps=N)",
                               start));
        return kExitOk;
      }
    }
    const dtrain::ParallelConfig& par = trainer->config().parallel;
    dtrain::CheckpointSession session(
        *trainer, {.world = world.get(),
                   .layout = {par.dp, par.tp, par.pp, world->size()},
                   .signals = &signals,
                   .start_step = start,
                   .log = print_line,
                   .on_file_op = faults.on_file_op});
    const dtrain::TrainSummary summary =
        trainer->run({.start_step = start, .hooks = &session, .inject_nan_at_step = faults.nan_at_step});
    if (summary.stopped) {
      fmt::print(stderr,
                 "dtrain: stopped by {} after step {} of {}; checkpoint {}; continue with: dtrain "
                 "resume {}\n",
                 session.stop_reason(), summary.steps, trainer->config().train.steps,
                 session.last_dir(), trainer->config().checkpoint.dir);
      return kExitPreempted;
    }
    return kExitOk;
  } catch (const dtrain::Error& e) {
    report(e);
    return exit_code_for(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "dtrain: internal error (a dtrain bug): {}\n", e.what());
    return kExitInternal;
  }
}
