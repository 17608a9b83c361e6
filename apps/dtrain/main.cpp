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
#include "parallel/auto_layout.h"
#include "parallel/plan_report.h"
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
  auto* keys = app.add_subcommand("keys", "List every config key with its type, default and help");

  dtrain::PlanCommand plan_cmd;
  bool plan_json = false;
  int plan_top = 10;
  auto* plan = app.add_subcommand(
      "plan", "Rank the parallel layouts of a config's model on N devices by predicted step time "
              "(no training, no GPU); the config's own dp/tp/pp are set aside");
  plan->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  plan->add_option("--devices", plan_cmd.devices, "Number of devices (ranks)")->required()->check(CLI::Range(1, 1 << 24));
  plan->add_option("--hardware", plan_cmd.hardware,
                   "Hardware preset (h100-sxm, a100-80gb, cpu-local) or hardware TOML file; default: the "
                   "config's parallel.hardware, else cpu-local");
  plan->add_option("--precision", plan_cmd.precision, "fp32 or bf16 (default: the config's train.precision)");
  plan->add_option("--set", overrides,
                   "Override a key (repeatable); parallel.dp/tp/pp/zero/schedule and train.micro_batch fix "
                   "that choice")
      ->allow_extra_args(false);
  plan->add_flag("--json", plan_json, "Print the plan as JSON");
  plan->add_option("--top", plan_top, "How many layouts to list (0 = all)")->check(CLI::NonNegativeNumber);
  plan->add_flag("--runnable", plan_cmd.runnable_only,
                 "Only layouts `dtrain run` can run as predicted (no what-ifs such as recomputation)");

  std::string hardware_name;
  auto* hardware = app.add_subcommand(
      "hardware", "Print a hardware preset (or check and print a hardware file) in the TOML format that "
                  "--hardware and parallel.hardware read");
  hardware->add_option("name", hardware_name, "h100-sxm, a100-80gb, cpu-local, or a .toml file")->required();

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
    if (hardware->parsed()) {
      if (world_rank == 0) std::fputs(dtrain::write_hardware_toml(dtrain::load_hardware(hardware_name)).c_str(), stdout);
      return kExitOk;
    }
    if (plan->parsed()) {
      if (world_rank != 0) return kExitOk;
      plan_cmd.config_path = config_path;
      plan_cmd.overrides = overrides;
      const dtrain::Plan p = dtrain::run_plan_command(plan_cmd);
      std::fputs((plan_json ? dtrain::format_plan_json(p, plan_top) : dtrain::format_plan_text(p, plan_top)).c_str(),
                 stdout);
      return kExitOk;
    }
    if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
    std::string layout_why;  // parallel.mode = "auto": what the planner chose and why
    dtrain::Config cfg = dtrain::load_config(config_path, overrides, world_size,
                                             dtrain::make_auto_layout([&](const std::string& why) { layout_why = why; }));
    if (validate->parsed()) {
      if (world_rank == 0) {
        if (!layout_why.empty()) fmt::print(stderr, "dtrain: {}\n", layout_why);
        std::fputs(dtrain::to_toml(cfg).c_str(), stdout);
        fmt::print(stderr, "dtrain: {} is valid\n", config_path);
      }
      return kExitOk;
    }
    if (world_rank == 0 && !layout_why.empty()) print_line(layout_why);
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
