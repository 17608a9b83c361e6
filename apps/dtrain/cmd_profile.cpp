// `dtrain profile CONFIG`: warm-up and measured steps of the config's layout
// with every scope and collective recorded, then where the time,
// communication and memory go (profile.h). With --write-hardware FILE it
// calibrates a hardware description on the ranks launched instead
// (calibrate.h). Both run on every rank of the launch.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "calibrate.h"
#include "core/file_kind.h"
#include "core/host_memory.h"
#include "parallel/hardware.h"
#include "dist/mpi_runtime.h"
#include "kernels/cpu/gemm.h"
#include "ops/runtime.h"
#include "parallel/auto_layout.h"
#include "profile.h"
#include "train/comm_recorder.h"
#include "commands.h"
#include "training.h"

namespace dtrain_cli {

namespace {

struct ProfileOpts {
  std::string config_path;
  std::vector<std::string> overrides;
  dtrain::ProfileOptions popts;
  std::string hardware_out, hardware_out_name;
};

// --write-hardware: the ranks measure alone and together, not in a layout.
int calibrate(Context& ctx, ProfileOpts& o, TrainingSetup& setup, const dtrain::AutoLayout& auto_layout) {
  std::vector<std::string> overrides = o.overrides;
  std::string command = fmt::format("mpirun -np {} dtrain profile {}", ctx.world_size, o.config_path);
  for (const std::string& s : overrides) command += " --set " + s;
  command += " --write-hardware " + o.hardware_out;
  overrides.push_back("parallel.mode=manual");
  overrides.push_back("parallel.dp=" + std::to_string(ctx.world_size));
  overrides.push_back("parallel.tp=1");
  overrides.push_back("parallel.pp=1");
  const dtrain::Config cfg = dtrain::load_config(o.config_path, overrides, ctx.world_size, auto_layout);
  // No GPU: one line before anything is measured.
  if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
    throw dtrain::ConfigError(why);
  dtrain::cpu::gemm_backend();  // a bad DTRAIN_CPU_GEMM: one line, exit 2, like a config error
  bool replacing = false;  // an earlier calibration at that path
  {  // an unwritable output fails now (on every rank alike), not after minutes of measuring
    const std::filesystem::path out_path(o.hardware_out);
    const std::filesystem::path dir = out_path.has_parent_path() ? out_path.parent_path() : ".";
    const bool exists = std::filesystem::exists(out_path);
    if (std::error_code ec; !exists && !std::filesystem::is_directory(dir, ec))
      throw dtrain::ConfigError(fmt::format("--write-hardware {}: cannot write there ({} is not a directory{})",
                                            o.hardware_out, dir.string(),
                                            std::filesystem::exists(dir, ec) ? "" : ": it does not exist"));
    if (access((exists ? out_path : dir).c_str(), W_OK) != 0)
      throw dtrain::ConfigError(fmt::format("--write-hardware {}: cannot write there ({} is not writable)",
                                            o.hardware_out, (exists ? out_path : dir).string()));
    replacing = exists;
    // An earlier calibration is replaced; any other file is not (it may be anything of the user's).
    if (exists) {
      if (const std::string kind = dtrain::special_file_kind(o.hardware_out); !kind.empty())
        throw dtrain::ConfigError(fmt::format("--write-hardware {}: {}, not a file to write", o.hardware_out, kind));
      std::ifstream in(o.hardware_out);
      std::string first;
      std::getline(in, first);
      if (!first.starts_with(dtrain::kHardwareFileHeader))
        throw dtrain::ConfigError(fmt::format("--write-hardware {}: the file exists and is not a dtrain hardware "
                                              "file (its first line is not '{}'); it is not overwritten: remove it "
                                              "or name another file",
                                              o.hardware_out, dtrain::kHardwareFileHeader));
    }
  }
  setup.comm.timeout_seconds = cfg.parallel.timeout;
  dtrain::Mesh cmesh(dtrain::MeshLayout{ctx.world_size, 1, 1}, setup.comm);
  dtrain::CalibrateOptions copts;
  copts.steps = o.popts.steps;
  copts.warmup = std::max<int64_t>(o.popts.warmup, 1);
  copts.ranks_per_node = ctx.mpi->ranks_on_node();
  copts.local_rank = setup.options.local_rank;
  copts.threads_default = setup.options.cores;
  copts.cores = static_cast<int>(std::thread::hardware_concurrency());
  copts.node_memory_bytes = dtrain::host_memory().bytes;  // the RAM, or the job's cgroup limit
  copts.config_path = o.config_path;
  copts.command = command;
  copts.name = o.hardware_out_name.empty() ? std::filesystem::path(o.hardware_out).stem().string() : o.hardware_out_name;
  copts.timeout_seconds = cfg.parallel.timeout;
  copts.groups_for = [&setup](const dtrain::Config& c) { return setup.groups_for(c); };
  ctx.shared_failure = false;
  const dtrain::Calibration cal = dtrain::calibrate_hardware(cfg, cmesh.world(), copts);
  if (ctx.world_rank == 0) {
    std::ofstream f(o.hardware_out);
    f << dtrain::write_calibrated_toml(cal.hardware, cal.table);
    f.close();
    if (!f) throw dtrain::RuntimeError(fmt::format("cannot write '{}'", o.hardware_out));
    print_line(cal.summary);
    print_line(fmt::format("wrote {}{}", o.hardware_out, replacing ? " (replacing the earlier calibration there)" : ""));
  }
  return kExitOk;
}

// Recorded groups, a profiler, the report.
int profile(Context& ctx, ProfileOpts& o, TrainingSetup& setup, const dtrain::AutoLayout& auto_layout) {
  const dtrain::Config cfg = dtrain::load_config(o.config_path, o.overrides, ctx.world_size, auto_layout);
  dtrain::ProfileOptions popts = o.popts;
  if (popts.out_dir.empty()) popts.out_dir = cfg.log.out_dir + "/profile";
  popts.config_path = o.config_path;
  if (std::string why = dtrain::ops::device_unavailable(cfg.train.device); !why.empty())
    throw dtrain::ConfigError(why);
  // The report's directory, made before any step is measured: one that cannot be is a bad --out (2).
  if (std::error_code ec; std::filesystem::create_directories(popts.out_dir, ec), ec)
    throw dtrain::ConfigError(fmt::format("--out {}: cannot be created: {}", popts.out_dir, ec.message()));
  dtrain::Profiler prof(true);
  dtrain::RecordedGroups recorded(setup.groups_for(cfg), prof);
  setup.options.profiler = &prof;
  dtrain::Trainer trainer(cfg, recorded.groups(), print_line, setup.options);
  ctx.shared_failure = false;
  const std::string text = dtrain::run_profile(trainer, prof, popts);
  if (ctx.world_rank == 0) std::fputs(text.c_str(), stdout);
  return kExitOk;
}

}  // namespace

Subcommand add_profile(CLI::App& app) {
  auto o = std::make_shared<ProfileOpts>();
  auto* profile_cmd = app.add_subcommand("profile", "Run warm-up and measured steps and print where the time, "
                                                    "communication and memory go; writes a Chrome trace");
  dtrain::ProfileOptions& popts = o->popts;
  profile_cmd->add_option("config", o->config_path, "TOML config file")->required()->check(CLI::ExistingFile);
  profile_cmd->add_option("--set", o->overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  profile_cmd->add_option("--steps", popts.steps, "Measured steps (parallel.sync = \"local\": rounded up to whole sync periods)")
      ->check(whole_number(1, 1 << 30))
      ->capture_default_str();
  profile_cmd->add_option("--warmup", popts.warmup, "Warm-up steps before measuring (rounded up likewise)")
      ->check(whole_number(0, 1 << 30))
      ->capture_default_str();
  profile_cmd->add_option("--out", popts.out_dir, "Where trace.json and profile.json go (default <log.out_dir>/profile)")
      ->check(output_dir());
  profile_cmd->add_option("--peak-gflops", popts.peak_gflops,
                          "Peak GFLOP/s per rank for MFU (default: the best of an sgemm measured before and after the steps)")
      ->check(number_in(1e-3, 1e9));
  CLI::Option* write_hardware = profile_cmd->add_option("--write-hardware", o->hardware_out,
                          "Instead of profiling the config's layout: calibrate a hardware description on the ranks "
                          "launched (compute rate, per-layer overhead, memory bandwidth, ranks per core, links) "
                          "and write it to this TOML file for --hardware / parallel.hardware")
      ->check(path_name());
  profile_cmd->add_option("--hardware-name", o->hardware_out_name, "The name written into that file (default: its stem)")
      ->needs(write_hardware);
  return {profile_cmd,
          [o](Context& ctx) {
            const dtrain::AutoLayout auto_layout = dtrain::make_auto_layout([](const std::string&) {});
            // The calibration measures MPI's links and the ranks per node, even on one process.
            if (!o->hardware_out.empty()) ctx.start_mpi();
            TrainingSetup setup(ctx, /*verbose=*/false);
            return o->hardware_out.empty() ? profile(ctx, *o, setup, auto_layout)
                                           : calibrate(ctx, *o, setup, auto_layout);
          },
          /*needs_mpi=*/true};
}

}  // namespace dtrain_cli
