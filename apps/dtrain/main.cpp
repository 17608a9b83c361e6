// dtrain: the command line. Parses arguments, runs one subcommand, and maps
// dtrain's error kinds to exit codes (only apps/ decides exit codes):
//   0 success, 1 runtime failure, 2 bad config or input (a damaged checkpoint
//   included), 3 internal error, 4 stopped by a preemption signal (SIGTERM,
//   SIGUSR1) after writing a checkpoint.
// Under mpirun/srun every rank runs this same program: MPI comes up first,
// the config is checked against the number of ranks, the mesh of groups is
// built, and the trainer runs this rank's part. Errors every rank sees alike
// (a bad config) are printed once, by rank 0; an error of one rank is
// printed with its rank and ends the whole job (MPI_Abort), so no other rank
// is left waiting.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "checkpoint/hf.h"
#include "checkpoint/inspect.h"
#include "checkpoint/preempt.h"
#include "checkpoint/resume.h"
#include "checkpoint/run_lock.h"
#include "checkpoint/session.h"
#include "config/config.h"
#include "config/footprint.h"
#include "data/check.h"
#include "dist/mesh_groups.h"
#include "kernels/cpu/gemm.h"
#include "dist/device_groups.h"
#include "dist/mpi_runtime.h"
#include "ops/runtime.h"
#include "core/device.h"
#include "dist/watchdog.h"
#include "train/comm_recorder.h"
#include "train/calibrate.h"
#include "train/profile.h"
#include "parallel/auto_layout.h"
#include "parallel/plan_report.h"
#include "train/trainer.h"
#include "commands.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;
constexpr int kExitInternal = 3;
constexpr int kExitPreempted = 4;

// A reader that went away (`dtrain run ... | head`) must not end the run:
// SIGPIPE is ignored and a failed write to stdout is dropped.
void print_line(const std::string& s) {
  std::fputs(s.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (std::ferror(stdout)) std::clearerr(stdout);
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
  if (const char* k = std::getenv("DTRAIN_TEST_FAIL_AT_FILE_OP")) {
    auto count = std::make_shared<int64_t>(0);
    const int64_t at = std::atoll(k);
    f.on_file_op = [count, at](const std::string& what) {
      if (++*count == at) throw dtrain::RuntimeError("test: file operation " + std::to_string(at) + " fails: " + what);
    };
  }
  if (const char* k = std::getenv("DTRAIN_TEST_NAN_AT_STEP")) f.nan_at_step = std::atoll(k);
  return f;
}

// A config whose ranks on this machine would need more than its memory is
// refused before the model is built (validate's limit is an absolute one,
// the same on every machine).
void check_fits_memory(const dtrain::Config& cfg, int ranks_here, int local_rank) {
  if (cfg.train.device == "cuda") {  // the rank's GPU holds what one rank needs
    std::string why;
    const int gpus = dtrain::gpu::device_count(&why);
    const dtrain::gpu::DeviceInfo d = dtrain::gpu::device_info(local_rank % gpus);
    const double need = dtrain::config::footprint(cfg).total();
    if (need > static_cast<double>(d.total_bytes))
      throw dtrain::ConfigError(fmt::format(
          "{}: the model and batch would need about {} per GPU, more than the {} of cuda:{} ({}); `dtrain plan` "
          "shows what a layout needs (more tp/pp, ZeRO, recomputation or a smaller train.micro_batch)",
          cfg.source.empty() ? "config" : cfg.source, dtrain::config::format_bytes(need),
          dtrain::config::format_bytes(static_cast<double>(d.total_bytes)), local_rank % gpus, d.name));
    return;
  }
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  const double need = dtrain::config::footprint(cfg).total() * std::max(1, ranks_here);
  if (ram > 0 && need > ram)
    throw dtrain::ConfigError(fmt::format(
        "{}: the model and batch would need about {} on this machine ({} rank{} here), more than its {} of "
        "memory (model size, train.micro_batch, train.seq_len, parallel layout)",
        cfg.source.empty() ? "config" : cfg.source, dtrain::config::format_bytes(need), std::max(1, ranks_here),
        ranks_here > 1 ? "s" : "", dtrain::config::format_bytes(ram)));
}

// The output and checkpoint directories must be writable: the nearest
// existing directory at or above each (it will be created below that).
std::vector<std::string> output_problems(const dtrain::Config& cfg) {
  std::vector<std::string> out;
  for (auto [key, dir] : {std::pair{"log.out_dir", &cfg.log.out_dir}, std::pair{"checkpoint.dir", &cfg.checkpoint.dir}}) {
    std::filesystem::path p = std::filesystem::absolute(*dir);
    std::error_code ec;
    while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
    if (!std::filesystem::is_directory(p, ec))
      out.push_back(fmt::format("{}: '{}' cannot be created: '{}' is not a directory", key, *dir, p.string()));
    else if (access(p.c_str(), W_OK | X_OK) != 0)
      out.push_back(fmt::format("{}: '{}' cannot be written: '{}' is not writable", key, *dir, p.string()));
  }
  return out;
}

// Forwards the step-loop hooks and tells the watchdog how long a stop signal
// may wait for the next step boundary: three times the longest step so far
// (checkpoint writes included), at least 5 s; 60 s until the first step ends.
class GraceHooks : public dtrain::TrainHooks {
 public:
  GraceHooks(dtrain::TrainHooks& inner, dtrain::Watchdog& dog) : inner_(inner), dog_(dog) { dog_.set_grace(60); }
  bool should_stop(int64_t done) override { return inner_.should_stop(done); }
  void after_step(int64_t done, bool stopping) override {
    inner_.after_step(done, stopping);
    const auto now = std::chrono::steady_clock::now();
    longest_ = std::max(longest_, std::chrono::duration<double>(now - last_).count());
    last_ = now;
    dog_.set_grace(std::max(5.0, 3 * longest_));
  }

 private:
  dtrain::TrainHooks& inner_;
  dtrain::Watchdog& dog_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  double longest_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  // Preemption signals are blocked before MPI or OpenMP start a thread (they
  // inherit the mask) and polled by the step loop at step boundaries.
  dtrain::SignalWatch signals;
  std::signal(SIGPIPE, SIG_IGN);
  const pid_t launcher = getppid();
  std::atomic<int> tag_rank{-1};  // the watchdog's thread reads it: "rank N: " once MPI says N of > 1
  auto tag = [&] { return tag_rank.load() >= 0 ? fmt::format("rank {}: ", tag_rank.load()) : std::string(); };
  // Started after the signals are blocked (it inherits the mask) and ended
  // after MPI (whose finalisation it also watches). A stop signal during
  // setup ends the run at once (there is nothing to checkpoint yet); in
  // training the step loop takes it at the next step boundary and
  // checkpoints, unless it is stuck past the grace (waiting on a stopped
  // peer). Under a launcher, the launcher going away (SIGKILL to mpirun)
  // stops the rank as a SIGTERM would.
  dtrain::Watchdog watchdog(
      {.on_launcher_gone =
           [&] {
             fmt::print(stderr, "dtrain: {}the launcher (process {}) is gone; stopping\n", tag(), launcher);
             kill(getpid(), SIGTERM);
           },
       .on_stuck =
           [&](const std::string& why, double secs) {
             fmt::print(stderr, "dtrain: {}stopped by {} {}; no checkpoint written\n", tag(), why,
                        watchdog.grace() == 0 ? "during setup"
                                              : fmt::format("after {:.0f} s blocked within a step", secs));
             std::fflush(stderr);
             std::_Exit(kExitRuntime);
           }});
  {  // --version --verbose: the versions built with and loaded, before MPI starts
    bool version = false, verbose_flag = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      version |= a == "--version";
      verbose_flag |= a == "--verbose" || a == "-v";
    }
    if (version && verbose_flag) {
      try {
        fmt::print("{}", dtrain_cli::version_report());
        return 0;
      } catch (const dtrain::Error& e) {
        fmt::print(stderr, "dtrain: {}\n", e.what());
        return kExitRuntime;
      }
    }
  }
  dtrain::MpiRuntime mpi(&argc, &argv);
  const int world_rank = mpi.world_rank(), world_size = mpi.world_size();
  const std::string rank_tag = world_size > 1 ? fmt::format("rank {}: ", world_rank) : "";
  if (world_size > 1) tag_rank.store(world_rank);
  if (mpi.launched()) watchdog.watch_launcher(launcher);
  CLI::App app{"dtrain: train GPT-style transformers and CNNs from TOML configs, on one process "
               "or many (mpirun -np N dtrain run ..., srun dtrain run ...)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dtrain ") + DTRAIN_VERSION);

  std::string config_path, out_dir, checkpoint_path;
  std::vector<std::string> overrides;
  bool verbose = false, verify = false;

  auto* run = app.add_subcommand("run", "Train the model a config describes");
  run->add_option("config", config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  run->add_option("--set", overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--out", out_dir, "Output directory (overrides log.out_dir)");
  run->add_flag("--verbose,-v", verbose,
                "Every rank prints its mesh coordinates and traces each pipeline operation and "
                "collective of the step loop on stderr");

  auto* resume = app.add_subcommand(
      "resume", "Continue training from a checkpoint (the newest good one of a directory), on any layout");
  resume->add_option("path", checkpoint_path,
                     "A checkpoint directory (step_N) or its checkpoint.h5: exactly that one; or a "
                     "directory of checkpoints: the newest complete one, falling back to older ones "
                     "if it is damaged")
      ->required();
  resume->add_option("--set", overrides, "Override a key of the checkpoint's config (repeatable)")
      ->allow_extra_args(false);
  resume->add_option("--out", out_dir, "Output directory (default: the checkpoint's run directory)");
  resume->add_flag("--verbose,-v", verbose, "As for run");

  auto* inspect = app.add_subcommand("inspect", "Describe a checkpoint: step, layout, config, tensors");
  inspect->add_option("path", checkpoint_path, "A checkpoint, its checkpoint.h5, or a directory of them")
      ->required();
  inspect->add_flag("--verify", verify, "Also read every tensor back and check its checksum");

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
                      "Peak GFLOP/s per rank for MFU (default: the best of an sgemm measured before and after the steps)")
      ->check(CLI::PositiveNumber);
  std::string hardware_out, hardware_out_name;
  profile->add_option("--write-hardware", hardware_out,
                      "Instead of profiling the config's layout: calibrate a hardware description on the ranks "
                      "launched (compute rate, per-layer overhead, memory bandwidth, ranks per core, links) "
                      "and write it to this TOML file for --hardware / parallel.hardware");
  profile->add_option("--hardware-name", hardware_out_name, "The name written into that file (default: its stem)");
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
                   "Hardware preset (h100-sxm, h200, a100-80gb, cpu-local) or hardware TOML file; default: the "
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
  hardware->add_option("name", hardware_name, "h100-sxm, h200, a100-80gb, cpu-local, or a .toml file")->required();
  // Subcommands in files of their own (commands.h); they run on rank 0 only.
  const std::vector<dtrain_cli::Subcommand> extra = {dtrain_cli::add_export(app),
                                                     dtrain_cli::add_generate(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = world_rank == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 1);
    return code == 0 ? kExitOk : kExitConfig;
  }

  bool shared_failure = true;  // every rank fails alike until the ranks part ways
  try {
    for (const auto& s : extra)
      if (s.cli->parsed()) return world_rank == 0 ? s.run() : kExitOk;
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
    if (inspect->parsed()) {
      const std::string text = dtrain::describe_checkpoint(checkpoint_path, verify);
      if (world_rank == 0) std::fputs(text.c_str(), stdout);
      return kExitOk;
    }
    std::string layout_why;  // parallel.mode = "auto": what the planner chose and why
    const dtrain::AutoLayout auto_layout = dtrain::make_auto_layout([&](const std::string& why) { layout_why = why; });
    if (validate->parsed()) {
      if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
      dtrain::Config cfg = dtrain::load_config(config_path, overrides, world_size, auto_layout);
      // The data files and output directories too, every problem at once.
      std::vector<std::string> problems = dtrain::data_problems(cfg);
      for (std::string& p : output_problems(cfg)) problems.push_back(std::move(p));
      if (!problems.empty()) throw dtrain::ConfigError(problems);
      if (world_rank == 0) {
        if (!layout_why.empty()) fmt::print(stderr, "dtrain: {}\n", layout_why);
        std::fputs(dtrain::to_toml(cfg).c_str(), stdout);
        fmt::print(stderr, "dtrain: {} is valid\n", config_path);
        if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
          fmt::print(stderr, "dtrain: note: {}; a run here would stop there\n", why);
      }
      return kExitOk;
    }

    // Training: run or resume.
    const TestFaults faults = test_faults();
    auto log = [world_rank](const std::string& s) {
      if (world_rank == 0) print_line(s);
    };
    dtrain::MpiCommOptions comm;
    if (verbose) comm.trace = dtrain::trace_to_stderr();
    dtrain::TrainerOptions options;
    options.inject_nan_at_step = faults.nan_at_step;
    options.local_rank = mpi.local_rank();
    if (verbose) options.trace = [](const std::string& line) { fmt::print(stderr, "dtrain: {}\n", line); };
    // The mesh of the config's layout (rebuilt only if a config asks for another);
    // on GPUs the device groups (NCCL or MPI host-staged, parallel.device_comm).
    std::unique_ptr<dtrain::Mesh> mesh;
    std::unique_ptr<dtrain::DeviceGroups> device_groups;
    auto groups_for = [&](const dtrain::Config& cfg) -> dtrain::Groups {
      const dtrain::MeshLayout want{static_cast<int>(cfg.parallel.dp), static_cast<int>(cfg.parallel.tp),
                                    static_cast<int>(cfg.parallel.pp)};
      comm.timeout_seconds = cfg.parallel.timeout;
      if (cfg.train.device == "cuda") {
        device_groups.reset();
        mesh.reset();
        dtrain::DeviceGroupsOptions o{.device_comm = cfg.parallel.device_comm, .timeout_s = cfg.parallel.timeout,
                                      .mpi = comm, .log = log};
        device_groups = std::make_unique<dtrain::DeviceGroups>(
            want, options.local_rank % std::max(1, dtrain::gpu::device_count(nullptr)), o);
        options.comm_check = [dg = device_groups.get()] { dg->check(); };
        if (verbose) fmt::print(stderr, "dtrain: {}{}; {}\n", rank_tag, mpi.describe(), device_groups->mesh().describe());
        return device_groups->groups();
      }
      if (!mesh || mesh->layout().dp != want.dp || mesh->layout().tp != want.tp || mesh->layout().pp != want.pp) {
        mesh.reset();
        mesh = std::make_unique<dtrain::Mesh>(want, comm);
        if (verbose) fmt::print(stderr, "dtrain: {}{}; {}\n", rank_tag, mpi.describe(), mesh->describe());
      }
      return dtrain::mesh_groups(*mesh);
    };
    // One run per output and checkpoint directory: rank 0 holds the locks, every rank learns the outcome.
    std::vector<dtrain::RunLock> locks;
    auto lock_dirs = [&](const dtrain::Config& cfg) {
      std::string problem;
      if (world_rank == 0) {
        try {
          // The checkpoint directory too where it is not inside the output directory (whose
          // lock covers the default one, which a run that writes no checkpoint never creates).
          const auto out = std::filesystem::weakly_canonical(cfg.log.out_dir);
          const auto ck = std::filesystem::weakly_canonical(cfg.checkpoint.dir);
          const bool ck_inside = std::mismatch(out.begin(), out.end(), ck.begin(), ck.end()).first == out.end();
          std::vector<std::string> dirs = {cfg.log.out_dir};
          if (!ck_inside) dirs.push_back(cfg.checkpoint.dir);
          for (const std::string& dir : dirs) {
            const bool held = std::any_of(locks.begin(), locks.end(), [&](const dtrain::RunLock& l) {
              return std::filesystem::weakly_canonical(l.dir()) == std::filesystem::weakly_canonical(dir);
            });
            if (!held) locks.emplace_back(dir);
          }
        } catch (const dtrain::Error& e) {
          problem = e.what();
        }
      }
      int failed = problem.empty() ? 0 : 1;
      if (world_size > 1) MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
      if (failed) throw dtrain::ConfigError(problem.empty() ? "rank 0 could not lock the run's directories" : problem);
    };
    auto make_trainer = [&](const dtrain::Config& cfg) {
      // The device before anything else: no GPU is one line, exit 2.
      if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
        throw dtrain::ConfigError(why);
      check_fits_memory(cfg, mpi.ranks_on_node(), options.local_rank);
      if (auto problems = output_problems(cfg); !problems.empty()) throw dtrain::ConfigError(problems);
      lock_dirs(cfg);
      const dtrain::Groups groups = groups_for(cfg);
      return std::make_unique<dtrain::Trainer>(cfg, groups, print_line, options);
    };
    if (profile->parsed() && !hardware_out.empty()) {  // --- calibration (train/calibrate.h)
      std::string command = fmt::format("mpirun -np {} dtrain profile {}", world_size, config_path);
      for (const std::string& o : overrides) command += " --set " + o;
      command += " --write-hardware " + hardware_out;
      overrides.push_back("parallel.mode=manual");  // the ranks measure alone and together, not in a layout
      overrides.push_back("parallel.dp=" + std::to_string(world_size));
      overrides.push_back("parallel.tp=1");
      overrides.push_back("parallel.pp=1");
      const dtrain::Config cfg = dtrain::load_config(config_path, overrides, world_size, auto_layout);
      dtrain::cpu::gemm_backend();  // a bad DTRAIN_CPU_GEMM: one line, exit 2, like a config error
      {  // an unwritable output fails now (on every rank alike), not after minutes of measuring
        const std::filesystem::path out_path(hardware_out);
        const std::filesystem::path dir = out_path.has_parent_path() ? out_path.parent_path() : ".";
        const bool exists = std::filesystem::exists(out_path);
        if (access((exists ? out_path : dir).c_str(), W_OK) != 0)
          throw dtrain::ConfigError(fmt::format("--write-hardware {}: cannot write there ({} is not writable)",
                                                hardware_out, (exists ? out_path : dir).string()));
      }
      comm.timeout_seconds = cfg.parallel.timeout;
      dtrain::Mesh cmesh(dtrain::MeshLayout{world_size, 1, 1}, comm);
      dtrain::CalibrateOptions copts;
      copts.steps = popts.steps;
      copts.warmup = std::max<int64_t>(popts.warmup, 1);
      copts.ranks_per_node = mpi.ranks_on_node();
      copts.cores = static_cast<int>(std::thread::hardware_concurrency());
      copts.node_memory_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
      copts.config_path = config_path;
      copts.command = command;
      copts.name = hardware_out_name.empty() ? std::filesystem::path(hardware_out).stem().string() : hardware_out_name;
      copts.timeout_seconds = cfg.parallel.timeout;
      shared_failure = false;
      const dtrain::Calibration cal = dtrain::calibrate_hardware(cfg, cmesh.world(), copts);
      if (world_rank == 0) {
        std::ofstream f(hardware_out);
        f << dtrain::write_calibrated_toml(cal.hardware, cal.table);
        f.close();
        if (!f) throw dtrain::RuntimeError(fmt::format("cannot write '{}'", hardware_out));
        print_line(cal.summary);
        print_line(fmt::format("wrote {}", hardware_out));
      }
      return kExitOk;
    }
    if (profile->parsed()) {  // --- dtrain profile (train/profile.h): recorded groups, a profiler, the report
      const dtrain::Config cfg = dtrain::load_config(config_path, overrides, world_size, auto_layout);
      if (popts.out_dir.empty()) popts.out_dir = cfg.log.out_dir + "/profile";
      popts.config_path = config_path;
      if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
        throw dtrain::ConfigError(why);
      dtrain::Profiler prof(true);
      dtrain::RecordedGroups recorded(groups_for(cfg), prof);
      options.profiler = &prof;
      dtrain::Trainer ptrainer(cfg, recorded.groups(), print_line, options);
      shared_failure = false;
      const std::string text = dtrain::run_profile(ptrainer, prof, popts);
      if (world_rank == 0) std::fputs(text.c_str(), stdout);
      return kExitOk;
    }
    std::unique_ptr<dtrain::Trainer> trainer;
    int64_t start = 0;
    std::string run_id;  // a resume continues its checkpoint's run; a new run draws one
    if (run->parsed()) {
      if (!out_dir.empty()) overrides.push_back("log.out_dir=" + out_dir);
      const dtrain::Config cfg = dtrain::load_config(config_path, overrides, world_size, auto_layout);
      if (!layout_why.empty()) log(layout_why);
      trainer = make_trainer(cfg);
      for (const std::string& line : dtrain::apply_init_from(trainer->model(), cfg.model)) log(line);
    } else {
      // All ranks, before the checkpoint's layout is known: to agree on which checkpoint loaded.
      dtrain::Mesh all(dtrain::MeshLayout{world_size, 1, 1}, comm);
      dtrain::Resumed r = dtrain::resume(
          {.path = checkpoint_path,
           .overrides = overrides,
           .out_dir = out_dir,
           .world_size = world_size,
           .log = log,
           .warn = [&](const std::string& s) { fmt::print(stderr, "dtrain: {}warning: {}\n", rank_tag, s); },
           .make_trainer = make_trainer},
          all.world());
      trainer = std::move(r.trainer);
      start = r.meta.step;
      run_id = r.meta.run_id;
      if (start >= trainer->config().train.steps) {
        log(fmt::format("nothing to do: the checkpoint is at step {} = train.steps (continue further "
                        "with --set train.steps=N)",
                        start));
        return kExitOk;
      }
    }
    shared_failure = false;  // from here on one rank may fail alone
    dtrain::CheckpointSession session(
        *trainer, {.signals = &signals, .start_step = start, .run_id = run_id, .log = log, .on_file_op = faults.on_file_op,
                   .warn = [&](const std::string& s) { fmt::print(stderr, "dtrain: {}warning: {}\n", rank_tag, s); }});
    GraceHooks hooks(session, watchdog);
    const dtrain::TrainSummary summary = trainer->run({.start_step = start, .hooks = &hooks});
    session.finish();  // checkpoint.async: the write in flight
    if (world_rank == 0) dtrain_cli::plot_run(trainer->config(), log);
    if (summary.stopped) {
      if (world_rank == 0)
        fmt::print(stderr,
                   "dtrain: stopped by {} after step {} of {}; checkpoint {}; continue with: dtrain "
                   "resume {}\n",
                   session.stop_reason(), summary.steps, trainer->config().train.steps,
                   session.last_dir(), trainer->config().checkpoint.dir);
      return kExitPreempted;
    }
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
