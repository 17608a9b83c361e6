// dtrain: the command line. Parses arguments, runs one subcommand, and maps
// dtrain's error kinds to exit codes (only apps/ decides exit codes):
//   0 success, 1 runtime failure, 2 bad config or input, 3 internal error.
// Under mpirun/srun every rank runs this same program: MPI comes up first,
// the config is checked against the number of ranks, the mesh of groups is
// built, and the trainer runs this rank's part. Errors every rank sees alike
// (a bad config) are printed once, by rank 0; an error of one rank is
// printed with its rank and ends the whole job (MPI_Abort), so no other rank
// is left waiting.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "config/config.h"
#include "dist/mesh_groups.h"
#include "dist/mpi_runtime.h"
#include "train/comm_recorder.h"
#include "train/profile.h"
#include "train/trainer.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;
constexpr int kExitInternal = 3;

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

// `rank` is "" on one process, "rank 3: " under a launcher.
void report(const dtrain::Error& e, const std::string& rank) {
  if (const auto* ce = dynamic_cast<const dtrain::ConfigError*>(&e)) {
    for (const auto& p : ce->problems()) fmt::print(stderr, "dtrain: error: {}\n", p);
    if (ce->problems().size() > 1)
      fmt::print(stderr, "dtrain: {} problems in the config\n", ce->problems().size());
    return;
  }
  const char* what = e.kind() == dtrain::ErrorKind::kInternal ? "internal error (a dtrain bug)" : "error";
  fmt::print(stderr, "dtrain: {}{}: {}\n", rank, what, e.what());
}

}  // namespace

int main(int argc, char** argv) {
  dtrain::MpiRuntime mpi(&argc, &argv);
  const int world_rank = mpi.world_rank(), world_size = mpi.world_size();
  const std::string rank_tag = world_size > 1 ? fmt::format("rank {}: ", world_rank) : "";
  CLI::App app{"dtrain: train GPT-style transformers and CNNs from TOML configs, on one process "
               "or many (mpirun -np N dtrain run ..., srun dtrain run ...)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dtrain ") + DTRAIN_VERSION);

  std::string config_path, out_dir;
  std::vector<std::string> overrides;

  auto* run = app.add_subcommand("run", "Train the model a config describes");
  run->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  run->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--out", out_dir, "Output directory (overrides log.out_dir)");
  bool verbose = false;
  run->add_flag("--verbose,-v", verbose,
                "Every rank prints its mesh coordinates and traces each pipeline operation and "
                "collective of the step loop on stderr");

  auto* validate = app.add_subcommand("validate", "Check a config and print its resolved values");
  validate->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  validate->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  // --- dtrain profile (train/profile.h)
  auto* profile = app.add_subcommand("profile", "Run warm-up and measured steps and print where the time, "
                                                "communication and memory go; writes a Chrome trace");
  dtrain::ProfileOptions popts;
  profile->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  profile->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  profile->add_option("--steps", popts.steps, "Measured steps")->check(CLI::PositiveNumber);
  profile->add_option("--warmup", popts.warmup, "Warm-up steps before measuring")->check(CLI::NonNegativeNumber);
  profile->add_option("--out", popts.out_dir, "Where trace.json and profile.json go (default <log.out_dir>/profile)");
  profile->add_option("--peak-gflops", popts.peak_gflops,
                      "Peak GFLOP/s per rank for MFU (default: measure an sgemm at the start)")
      ->check(CLI::PositiveNumber);
  auto* keys = app.add_subcommand("keys", "List every config key with its type, default and help");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = world_rank == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 1);
    return code == 0 ? kExitOk : kExitConfig;
  }

  bool shared_failure = true;  // every rank fails alike until the ranks part ways
  try {
    if (keys->parsed()) {
      if (world_rank == 0) std::fputs(dtrain::describe_keys().c_str(), stdout);
      return kExitOk;
    }
    if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
    dtrain::Config cfg = dtrain::load_config(config_path, overrides, world_size);
    if (validate->parsed()) {
      if (world_rank == 0) {
        std::fputs(dtrain::to_toml(cfg).c_str(), stdout);
        fmt::print(stderr, "dtrain: {} is valid\n", config_path);
      }
      return kExitOk;
    }
    dtrain::MpiCommOptions comm;
    comm.timeout_seconds = cfg.parallel.timeout;
    if (verbose) comm.trace = dtrain::trace_to_stderr();
    dtrain::Mesh mesh(dtrain::MeshLayout{static_cast<int>(cfg.parallel.dp), static_cast<int>(cfg.parallel.tp),
                                         static_cast<int>(cfg.parallel.pp)},
                      comm);
    dtrain::TrainerOptions options;
    if (verbose) {
      fmt::print(stderr, "dtrain: {}{}; {}\n", rank_tag, mpi.describe(), mesh.describe());
      options.trace = [](const std::string& line) { fmt::print(stderr, "dtrain: {}\n", line); };
    }
    if (profile->parsed()) {  // --- dtrain profile: recorded groups, a profiler, the report
      if (popts.out_dir.empty()) popts.out_dir = cfg.log.out_dir + "/profile";
      popts.config_path = config_path;
      dtrain::Profiler prof(true);
      dtrain::RecordedGroups recorded(dtrain::mesh_groups(mesh), prof);
      options.profiler = &prof;
      dtrain::Trainer trainer(cfg, recorded.groups(), print_line, options);
      shared_failure = false;
      const std::string report = dtrain::run_profile(trainer, prof, popts);
      if (world_rank == 0) std::fputs(report.c_str(), stdout);
      return kExitOk;
    }
    dtrain::Trainer trainer(cfg, dtrain::mesh_groups(mesh), print_line, options);
    shared_failure = false;  // from here on one rank may fail alone
    trainer.run();
    return kExitOk;
  } catch (const dtrain::Error& e) {
    const bool config = e.kind() == dtrain::ErrorKind::kConfig || e.kind() == dtrain::ErrorKind::kInput;
    if (world_rank == 0 || !(shared_failure && config)) report(e, rank_tag);
    const int code = exit_code_for(e);
    if (world_size > 1 && !(shared_failure && config)) MPI_Abort(MPI_COMM_WORLD, code);
    return code;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dtrain: {}internal error (a dtrain bug): {}\n", rank_tag, e.what());
    if (world_size > 1) MPI_Abort(MPI_COMM_WORLD, kExitInternal);
    return kExitInternal;
  }
}
