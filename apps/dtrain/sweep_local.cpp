// Trials of `dtrain sweep` as local child processes: fork + exec of the
// launcher prefix (if any) and this dtrain binary, in a process group of the
// trial's own (so a terminal's Ctrl-C reaches the sweep only, which stops the
// trials cleanly), with stdout and stderr appended to <trial>/output.log.
// Each child asks the kernel for SIGUSR1 when the sweep dies (even by
// SIGKILL): a dtrain run takes it as a preemption, writes a checkpoint and
// exits 4, so a sweep that is killed leaves no trial running unwatched, and
// running the sweep again resumes it from that checkpoint.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "sweep_backend.h"

namespace dtrain_cli {

namespace {

namespace fs = std::filesystem;

// The start time of process `pid` (field 22 of /proc/PID/stat, clock ticks
// since boot), or 0 if there is no such process.
uint64_t start_time(int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const auto close = stat.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) return std::stoull(field);
  return 0;
}

// The executable `name` resolves to on PATH (as execvp would), or `name`.
std::string on_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');) {
    const fs::path p = fs::path(d.empty() ? "." : d) / name;
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return name;
}

std::string describe(int wstatus) {
  if (WIFEXITED(wstatus)) return fmt::format("exit {}", WEXITSTATUS(wstatus));
  const char* name = sigabbrev_np(WTERMSIG(wstatus));
  return fmt::format("killed by SIG{}", name ? name : std::to_string(WTERMSIG(wstatus)).c_str());
}

class LocalBackend : public SweepBackend {
 public:
  LocalBackend(std::string self, std::vector<std::string> launcher, int64_t concurrency)
      : self_(std::move(self)), launcher_(std::move(launcher)), concurrency_(static_cast<size_t>(concurrency)) {
    if (!launcher_.empty()) launcher_[0] = on_path(launcher_[0]);
  }

  size_t free_slots(size_t running) const override { return running >= concurrency_ ? 0 : concurrency_ - running; }

  void start(const std::vector<Launch>& launches) override {
    for (const Launch& l : launches) start_one(l);
  }

  std::vector<TrialExit> reap() override {
    std::vector<TrialExit> out;
    for (auto it = children_.begin(); it != children_.end();) {
      int ws = 0;
      const pid_t r = waitpid(it->first, &ws, WNOHANG);
      if (r == it->first) {
        const int status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        out.push_back({it->second, status, describe(ws)});
        it = children_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  void stop(const dtrain::sweep::TrialRecord& t, bool hard) override {
    if (t.pid <= 0 || !children_.count(static_cast<pid_t>(t.pid))) return;
    if (hard)
      kill(-static_cast<pid_t>(t.pid), SIGKILL);  // the whole group: launcher and ranks
    else
      kill(static_cast<pid_t>(t.pid), SIGUSR1);  // dtrain checkpoints and exits 4; mpirun passes it on
  }

  bool adopt(dtrain::sweep::TrialRecord& t) override {
    if (t.pid <= 0 || t.pid_start == 0 || start_time(t.pid) != t.pid_start) return false;
    // Not a child of this process: it got SIGUSR1 when its sweep died and is
    // writing its checkpoint. Wait for it (the run directory is locked until
    // it ends), then kill what is left.
    const auto pid = static_cast<pid_t>(t.pid);
    kill(pid, SIGUSR1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (start_time(t.pid) == t.pid_start && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (start_time(t.pid) == t.pid_start) kill(-pid, SIGKILL);
    return false;
  }

 private:
  void start_one(const Launch& l) {
    std::vector<std::string> argv = launcher_;
    argv.push_back(self_);
    argv.insert(argv.end(), l.args.begin(), l.args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    fs::create_directories(l.trial->dir);
    const std::string log = (fs::path(l.trial->dir) / "output.log").string();
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw dtrain::RuntimeError(fmt::format("{}: cannot open: {}", log, std::strerror(errno)));
    const int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const std::string header = fmt::format("dtrain sweep: trial {}: {}\n", l.trial->id, fmt::join(argv, " "));
    if (write(out, header.data(), header.size()) < 0) {  // the log is for people; a failed write is not fatal
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      close(out);
      close(in);
      throw dtrain::RuntimeError(fmt::format("cannot start trial {}: fork: {}", l.trial->id, std::strerror(errno)));
    }
    if (pid == 0) {  // the child: async-signal-safe calls only, until exec
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGUSR1);
      if (getppid() != parent) kill(getpid(), SIGUSR1);  // the sweep died before prctl
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);  // the sweep blocks its stop signals
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGPIPE, &dfl, nullptr);  // ignored by the sweep; ignored signals survive exec
      dup2(in, 0);
      dup2(out, 1);
      dup2(out, 2);
      execv(cargv[0], cargv.data());
      const char msg[] = "dtrain sweep: cannot execute the trial's command\n";
      if (write(2, msg, sizeof msg - 1) < 0) {
      }
      _exit(127);
    }
    setpgid(pid, pid);
    close(out);
    close(in);
    l.trial->pid = pid;
    l.trial->pid_start = start_time(pid);
    children_[pid] = l.trial->id;
  }

  std::string self_;
  std::vector<std::string> launcher_;
  size_t concurrency_;
  std::map<pid_t, int64_t> children_;
};

}  // namespace

std::unique_ptr<SweepBackend> local_backend(std::string self, std::vector<std::string> launcher, int64_t concurrency) {
  return std::make_unique<LocalBackend>(std::move(self), std::move(launcher), concurrency);
}

}  // namespace dtrain_cli
