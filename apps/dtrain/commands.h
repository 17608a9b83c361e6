// The subcommands of `dtrain`, one file each (cmd_<name>.cpp): each adds its
// options to the CLI app and returns what to run when it was the one parsed.
// main.cpp only registers them, brings MPI up for those that need it and maps
// errors to exit codes.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "config/config.h"
#include "config/schema.h"
#include "core/file_kind.h"

namespace dtrain {
class MpiRuntime;
class SignalWatch;
class Watchdog;
}  // namespace dtrain

namespace dtrain_cli {

// Exit codes (only apps/ decides them).
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;
constexpr int kExitInternal = 3;
constexpr int kExitPreempted = 4;

// A number from `lo` to `hi` for a command-line option: CLI11's own range
// checks let NaN through, print DBL_MAX in full, and a typo's 1e-300 rate
// printed a 300-digit figure.
inline CLI::Validator number_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(text.c_str(), &end);
        const bool ok = !text.empty() && end == text.c_str() + text.size() && x >= lo && x <= hi;
        char range[64];
        std::snprintf(range, sizeof range, "from %g to %g", lo, hi);
        return ok ? "" : std::string("expected a number ") + range + ", got '" + text + "'";
      },
      "NUMBER", "number in range");
}

// A whole number from `lo` to `hi` for a command-line option, written in
// decimal digits: CLI11's own conversion clamps what overflows and its range
// check calls "abc" out of range.
inline CLI::Validator whole_number(uint64_t lo, uint64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        uint64_t x = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, x);
        const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        if (digits && ec == std::errc() && ptr == end && x >= lo && x <= hi) return "";
        return "expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" +
               (text.size() > 40 ? text.substr(0, 37) + "..." : text) + "'";
      },
      "INTEGER in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", "whole number");
}

// A directory or file name for a command-line option: not empty (an empty
// --out read as "not given" and wrote to the config's directory), and valid
// UTF-8 (it goes into the run's config.toml, which is TOML: UTF-8).
inline CLI::Validator path_name() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.empty()) return "expected a path, got an empty string";
        if (std::any_of(text.begin(), text.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; }))
          return "expected a path without control characters (a newline, a tab, ...)";
        if (!dtrain::config::valid_utf8(text))
          return "expected a path in UTF-8 (it is written into the run's config.toml)";
        return "";
      },
      "PATH", "path name");
}

// A directory to write into: a path_name() that is a directory or not there
// yet (a file or FIFO in its place fails now, not after the work).
inline CLI::Validator output_dir() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (std::string bad = path_name()(text); !bad.empty()) return bad;
        std::error_code ec;
        const auto st = std::filesystem::status(text, ec);
        if (!std::filesystem::exists(st) || std::filesystem::is_directory(st)) return "";
        return "expected a directory, but '" + text + "' is " +
               (std::filesystem::is_regular_file(st) ? std::string("a file") : dtrain::special_file_kind(text));
      },
      "DIR", "output directory");
}

// What a subcommand gets from main: which rank it is and the process-wide
// machinery made before anything else started a thread.
struct Context {
  int world_rank = 0;
  int world_size = 1;
  std::string rank_tag;                   // "rank 3: " with more than one rank, else ""
  // Set once MPI is up: under a launcher, before a needs_mpi subcommand runs;
  // on one process started without one, only when start_mpi() is called
  // (a GPU's device groups, profile), so a CPU run of one process pays no
  // MPI start-up (an Open MPI singleton: 0.35 s, and an orted).
  dtrain::MpiRuntime* mpi = nullptr;
  std::function<void()> start_mpi;
  dtrain::SignalWatch* signals = nullptr;
  dtrain::Watchdog* watchdog = nullptr;
  // Until a subcommand clears it, an error is one every rank sees alike (a
  // bad config): rank 0 reports it and no rank aborts the job.
  bool shared_failure = true;
  // Set by a rank whose failure another rank has said (TrainingSetup::agree):
  // it says nothing and leaves as the others do (nor does the watchdog, when
  // the launcher ends it with SIGTERM first: the other rank's abort).
  std::atomic<bool> failure_said_elsewhere{false};
  // Set on every rank where TrainingSetup::agree found that every rank
  // failed: rank 0 reports, then all meet at a barrier before leaving.
  bool failure_barrier = false;
};

struct Subcommand {
  CLI::App* cli = nullptr;
  std::function<int(Context&)> run;  // on every rank; returns the exit status
  bool needs_mpi = false;            // MPI is initialised only for these (and, on one process, lazily)
};

Subcommand add_run(CLI::App& app);       // dtrain run CONFIG
Subcommand add_resume(CLI::App& app);    // dtrain resume PATH
Subcommand add_inspect(CLI::App& app);   // dtrain inspect PATH
Subcommand add_validate(CLI::App& app);  // dtrain validate CONFIG
Subcommand add_profile(CLI::App& app);   // dtrain profile CONFIG [--write-hardware FILE]
Subcommand add_keys(CLI::App& app);      // dtrain keys
Subcommand add_keygen(CLI::App& app);    // dtrain keygen PREFIX
Subcommand add_plan(CLI::App& app);      // dtrain plan CONFIG --devices N
Subcommand add_hardware(CLI::App& app);  // dtrain hardware NAME
Subcommand add_export(CLI::App& app);    // dtrain export CHECKPOINT --format hf --out DIR
Subcommand add_generate(CLI::App& app);  // dtrain generate CHECKPOINT [--prompt ...]
Subcommand add_eval(CLI::App& app);      // dtrain eval CHECKPOINT [--data FILE] [--batches N]
Subcommand add_sweep(CLI::App& app);     // dtrain sweep SWEEP.toml [--out DIR] [--slurm]
Subcommand add_tokenize(CLI::App& app);  // dtrain tokenize TEXT --out PREFIX [--tokenizer hf ...]

// The signals main blocks before anything starts a thread, for the command
// line given: SIGTERM and SIGUSR1 (preemption); `dtrain run` and `resume`
// also SIGINT (Ctrl-C: a checkpoint and exit 4; a second one ends the process
// at once) and SIGHUP (a closed terminal: the same), unless SIGHUP is ignored
// (nohup); `dtrain sweep` SIGINT and SIGHUP (the same unless ignored), which
// stop its trials cleanly (cmd_sweep.cpp).
std::vector<int> stop_signals_for(int argc, char** argv);

// `dtrain --version --verbose`: compiled and loaded library versions, the
// GPUs, MPI, HDF5, the CPU's matrix-product paths (version.cpp).
std::string version_report();
// Empty, or the one line refusing a loaded CUDA runtime, cuBLASLt, cuDNN or
// NCCL whose major version differs from the one dtrain was built with.
std::string version_refusal();

// log.plot: draws <log.out_dir>/loss.png at the end of a run (plot.cpp).
void plot_run(const dtrain::Config& cfg, const std::function<void(const std::string&)>& log);

// A line on stdout; a reader that went away (`dtrain run ... | head`) must
// not end the run: SIGPIPE is ignored and a failed write is dropped.
void print_line(const std::string& s);
// A line on stdout that is the command's product (dtrain eval's result):
// the errno of a failed write (0: written), for the command to report. A
// reader that went away (EPIPE) is not a failure: 0.
int print_result(const std::string& s);

// fmt::print to stderr that never throws: a failed write (stderr closed, a
// full disk, a reader gone) loses the message, not the work (fmt's own
// print throws std::system_error, which ended commands as internal errors).
void print_err(std::string_view text);
template <typename... Args>
void eprint(fmt::format_string<Args...> f, Args&&... args) {
  print_err(fmt::format(f, std::forward<Args>(args)...));
}

// Text echoed in a message (a config's line, a --set value, a path) as one
// printable line: control bytes and bytes that are not UTF-8 as \xNN.
std::string printable(std::string_view s);

}  // namespace dtrain_cli
