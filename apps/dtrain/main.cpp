// dtrain: the command line. Registers the subcommands (one file each,
// commands.h), parses the arguments, runs the one given, and maps dtrain's
// error kinds to exit codes (only apps/ decides exit codes):
//   0 success, 1 runtime failure, 2 bad config or input (a damaged checkpoint
//   included), 3 internal error, 4 stopped by a preemption signal (SIGTERM,
//   SIGUSR1; SIGINT and SIGHUP on run and resume) after writing a checkpoint.
// Under mpirun/srun every rank runs this same program. MPI comes up only for
// the subcommands that talk to other ranks (run, resume, profile), and only
// under a launcher: its start costs about 0.4 s, which --help, keys,
// validate, plan, inspect, export and generate never pay (they learn their
// rank from the launcher's environment, and rank 0 prints), nor a CPU run of
// one process started alone (its groups have one member each). For
// training, the config is checked against the number of ranks, the mesh of
// groups is built, and the trainer runs this rank's part. Errors every rank
// sees alike (a bad config) are printed once, by rank 0; an error of one rank is
// printed with its rank and ends the whole job (MPI_Abort), so no other rank
// is left waiting.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "checkpoint/preempt.h"
#include "core/error.h"
#include "core/printable.h"
#include "core/version.h"
#include "dist/mpi_runtime.h"
#include "dist/watchdog.h"
#include "commands.h"

namespace dtrain_cli {

void print_line(const std::string& s) {
  std::fputs(s.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (std::ferror(stdout)) std::clearerr(stdout);
}

int print_result(const std::string& s) {
  errno = 0;
  std::fputs(s.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const int err = std::ferror(stdout) ? (errno != 0 ? errno : EIO) : 0;
  std::clearerr(stdout);
  return err == EPIPE ? 0 : err;
}

void print_err(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
  std::clearerr(stderr);
}

// An error message as one printable line (core/printable.h).
std::string printable(std::string_view s) { return dtrain::printable(s); }

}  // namespace dtrain_cli

namespace {

using namespace dtrain_cli;

int exit_code_for(const dtrain::Error& e) {
  switch (e.kind()) {
    case dtrain::ErrorKind::kConfig:
    case dtrain::ErrorKind::kInput: return kExitConfig;
    case dtrain::ErrorKind::kRuntime: return kExitRuntime;
    case dtrain::ErrorKind::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

// A line to stderr from the watchdog's thread: never throws (an exception
// there would end the process without its checkpoint).
void say(const std::string& line) {
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  std::clearerr(stderr);
}

// stdout and stderr that are pipes nobody reads any more (the launcher that
// held their other ends died) are pointed at /dev/null, so that the rank's
// remaining writes (its log, its stop line) neither fail nor throw.
void silence_unread_output() {
  for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      if (fd == STDOUT_FILENO) std::fflush(stdout);
      const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
      if (null >= 0) {
        dup2(null, fd);
        close(null);
      }
      std::clearerr(fd == STDOUT_FILENO ? stdout : stderr);
    }
  }
}

// rank: "rank 3: " for an error of that rank alone, "" for one every rank shares.
void report(const dtrain::Error& e, const std::string& rank) {
  if (const auto* ce = dynamic_cast<const dtrain::ConfigError*>(&e)) {
    for (const auto& p : ce->problems()) eprint("dtrain: {}error: {}\n", rank, printable(p));
    if (ce->problems().size() > 1)
      eprint("dtrain: {} problems\n", ce->problems().size());
    return;
  }
  const char* what = e.kind() == dtrain::ErrorKind::kInternal ? "internal error (a dtrain bug)" : "error";
  eprint("dtrain: {}{}: {}\n", rank, what, printable(e.what()));
}

}  // namespace

int main(int argc, char** argv) {
  // Preemption signals are blocked before MPI or OpenMP start a thread (they
  // inherit the mask) and polled by the step loop at step boundaries.
  const std::vector<int> stop_signals = stop_signals_for(argc, argv);
  dtrain::SignalWatch signals(stop_signals);
  std::signal(SIGPIPE, SIG_IGN);
  const pid_t launcher = getppid();
  std::atomic<int> tag_rank{-1};  // the watchdog's thread reads it: "rank N: " once MPI says N of > 1
  auto tag = [&] { return tag_rank.load() >= 0 ? fmt::format("rank {}: ", tag_rank.load()) : std::string(); };
  // The command running (its name lives as long as the CLI::App), for the
  // watchdog's message: only run and resume have a setup and checkpoints.
  std::atomic<const char*> command{nullptr};
  // Context::failure_said_elsewhere once the Context exists: a stop then says nothing.
  std::atomic<const std::atomic<bool>*> quiet_flag{nullptr};
  // The exit code of a failure already reported (or left to rank 0 to
  // report): a launcher's SIGTERM while this rank leaves (MPI_Finalize, the
  // wait for rank 0's line) ends it with that code and no second line.
  std::atomic<int> leaving_with{-1};
  // Started after the signals are blocked (it inherits the mask) and ended
  // after MPI (whose finalisation it also watches). A stop signal during
  // setup ends the run at once (there is nothing to checkpoint yet); in
  // training the step loop takes it at the next step boundary and
  // checkpoints, unless it is stuck past the grace (waiting on a stopped
  // peer). Under a launcher, the launcher going away (SIGKILL to mpirun)
  // stops the rank as a SIGTERM would.
  dtrain::Watchdog watchdog(
      {.stop_signals = stop_signals,
       .on_launcher_gone =
           [&] {
             // The launcher held the other ends of our stdout and stderr (mpirun's
             // pipes): with it gone, writing there fails (EPIPE), which must not
             // end the rank before its checkpoint; they go to /dev/null instead.
             // Output redirected to files is kept.
             silence_unread_output();
             say(fmt::format("dtrain: {}the launcher (process {}) is gone; stopping\n", tag(), launcher));
             kill(getpid(), SIGTERM);
           },
       .on_pending =
           [&](const std::string& why) {
             // Rank 0 only (a signal usually reaches every rank), and only run
             // and resume, whose step loop takes it.
             const std::string name = command.load() ? command.load() : "";
             if (tag_rank.load() <= 0 && (name == "run" || name == "resume"))
               say(fmt::format("dtrain: {} received: the run stops with a checkpoint once the step or save in "
                               "progress ends (an evaluation in progress is abandoned)\n",
                               why));
           },
       .on_stuck =
           [&](const std::string& why, double secs) {
             // Another rank said why the job ends (its abort is what signalled this one).
             const int code = leaving_with.load();
             if (const std::atomic<bool>* quiet = quiet_flag.load(); quiet && quiet->load())
               std::_Exit(code >= 0 ? code : kExitRuntime);
             if (code >= 0) std::_Exit(code);
             const std::string name = command.load() ? command.load() : "";
             if (name != "" && name != "run" && name != "resume")
               say(fmt::format("dtrain: {}stopped by {} (dtrain {})\n", tag(), why, name));
             else if (watchdog.grace() == 0) {
               // A resume says what it would continue from (nothing of it changed).
               const std::string recovery = watchdog.notes().recovery;
               say(fmt::format("dtrain: {}stopped by {} during setup; no checkpoint written{}\n", tag(), why,
                               recovery.empty() ? "" : "; " + recovery));
             }
             else {
               // What it waited on (a stopped or dead peer, named) and what is safe on disk.
               const dtrain::Watchdog::Notes notes = watchdog.notes();
               std::string msg = fmt::format("stopped by {} after {:.0f} s blocked within {}", why, secs,
                                             notes.step.empty() ? "a step" : notes.step);
               if (!notes.blocked_on.empty()) msg += ", waiting in " + notes.blocked_on;
               msg += "; no checkpoint written";
               if (!notes.recovery.empty()) msg += "; " + notes.recovery;
               say(fmt::format("dtrain: {}{}\n", tag(), msg));
             }
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
        std::fputs(version_report().c_str(), stdout);
        std::fflush(stdout);
        // A GPU library of another major version than built against: what a
        // CUDA run would refuse (exit 2, as train.device = "cuda" would).
        if (const std::string why = version_refusal(); !why.empty()) {
          eprint("dtrain: {}\n", why);
          return kExitConfig;
        }
        return 0;
      } catch (const dtrain::Error& e) {
        eprint("dtrain: {}\n", e.what());
        return kExitRuntime;
      }
    }
  }
  // Which rank this is, from the launcher's environment until MPI (if the
  // subcommand needs it) says so itself.
  const dtrain::LaunchInfo launch = dtrain::launch_info();
  Context ctx;
  ctx.world_rank = launch.rank;
  ctx.world_size = launch.size;
  ctx.signals = &signals;
  ctx.watchdog = &watchdog;
  quiet_flag.store(&ctx.failure_said_elsewhere);
  if (!launch.launcher.empty()) watchdog.watch_launcher(launcher);

  CLI::App app{"dtrain: train GPT-style transformers and CNNs from TOML configs, on one process "
               "or many (mpirun -np N dtrain run ..., srun dtrain run ...)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dtrain " + dtrain::program_version(),
                       "Print the version and exit; --version --verbose: also the libraries built with and loaded (CUDA, cuBLASLt, cuDNN, NCCL, MPI, HDF5) and the CPU matrix products");
  const std::vector<Subcommand> commands = {add_run(app),      add_resume(app),   add_inspect(app), add_validate(app),
                                            add_profile(app),  add_keys(app),     add_plan(app),    add_hardware(app),
                                            add_export(app),   add_generate(app), add_eval(app),    add_sweep(app),
                                            add_keygen(app),   add_tokenize(app)};
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(commands.begin(), commands.end(), [&](const Subcommand& c) { return c.cli->get_name() == argv[1]; })) {
    std::vector<std::string> names;
    for (const Subcommand& c : commands) names.push_back(c.cli->get_name());
    if (ctx.world_rank == 0)
      eprint("dtrain: error: '{}' is not a dtrain command; expected one of {}\n", printable(argv[1]),
             fmt::join(names, ", "));
    return kExitConfig;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help, --version
      if (ctx.world_rank == 0) app.exit(e);
      return kExitOk;
    }
    // One line, as every other error (CLI11's own adds "Run with --help ...").
    // CLI11 says an option given twice as "At Most 1 required but received 2".
    constexpr std::string_view kTwice = "At Most 1 required but received ";
    std::string what = e.what();
    if (const auto at = what.find(kTwice); at != std::string::npos)
      what = what.substr(0, at) + "given " + what.substr(at + kTwice.size()) + " times; at most once";
    if (ctx.world_rank == 0)
      eprint("dtrain: error: {} (dtrain --help lists the commands and options)\n", printable(what));
    return kExitConfig;
  }
  const Subcommand* chosen = nullptr;
  for (const Subcommand& s : commands)
    if (s.cli->parsed()) chosen = &s;
  if (!chosen) return kExitInternal;  // require_subcommand(1): not reached
  command.store(chosen->cli->get_name().c_str());

  std::optional<dtrain::MpiRuntime> mpi;  // finalised after the errors are reported (MPI_Abort needs it)
  ctx.start_mpi = [&] {
    if (mpi) return;
    mpi.emplace(&argc, &argv);
    ctx.mpi = &*mpi;
    ctx.world_rank = mpi->world_rank();
    ctx.world_size = mpi->world_size();
  };
  // Under a launcher every rank starts MPI now, together. One process started
  // without one has no other rank to talk to: MPI waits until something asks.
  if (chosen->needs_mpi && !launch.launcher.empty()) ctx.start_mpi();
  ctx.rank_tag = ctx.world_size > 1 ? fmt::format("rank {}: ", ctx.world_rank) : "";
  if (ctx.world_size > 1) tag_rank.store(ctx.world_rank);

  // Without MPI no rank waits for another: one that fails just returns.
  const bool can_abort = ctx.mpi && ctx.world_size > 1;
  try {
    return chosen->run(ctx);
  } catch (const dtrain::Error& e) {
    const bool config = e.kind() == dtrain::ErrorKind::kConfig || e.kind() == dtrain::ErrorKind::kInput;
    const bool said_elsewhere = ctx.failure_said_elsewhere;  // TrainingSetup::agree: another rank says it
    // Every rank failed alike: a config all of them read (TrainingSetup::agree),
    // or a failure of values they agreed on (a non-finite loss): rank 0 says
    // it, then they all leave together.
    const bool agreed = dynamic_cast<const dtrain::AgreedRuntimeError*>(&e) != nullptr;
    const bool shared = (ctx.shared_failure && config) || agreed;
    const bool barrier = can_abort && (ctx.failure_barrier || agreed);
    const int code = exit_code_for(e);
    if (!said_elsewhere && (ctx.world_rank == 0 || !shared)) {
      report(e, shared ? "" : ctx.rank_tag);
      std::fflush(stderr);
      leaving_with.store(code);  // said: nothing more to say
      if (barrier) MPI_Barrier(MPI_COMM_WORLD);
    } else {
      leaving_with.store(code);
      if (barrier) MPI_Barrier(MPI_COMM_WORLD);
      // Rank 0 says it. mpirun ends the job at the first rank that exits
      // non-zero and can drop what it has not yet forwarded of the others'
      // output (1 in 20 runs of `mpirun -np 4 dtrain validate` lost rank 0's
      // line): the other ranks give it time to get out first, and leave
      // quietly when the launcher stops them meanwhile (SIGTERM once rank 0
      // has exited).
      watchdog.set_grace(60);
      sigset_t stops;
      sigemptyset(&stops);
      for (int s : stop_signals) sigaddset(&stops, s);
      const timespec wait{2, 0};
      while (sigtimedwait(&stops, nullptr, &wait) < 0 && errno == EINTR) {
      }
    }
    if (can_abort && !said_elsewhere && !shared) MPI_Abort(MPI_COMM_WORLD, code);
    return code;
  } catch (const std::exception& e) {
    eprint("dtrain: {}internal error (a dtrain bug): {}\n", ctx.rank_tag, printable(e.what()));
    leaving_with.store(kExitInternal);
    if (can_abort) MPI_Abort(MPI_COMM_WORLD, kExitInternal);
    return kExitInternal;
  }
}
