// Trials of `dtrain sweep --slurm` as one Slurm job array: task i runs trial i
// through tools/slurm/dtrain.sbatch (which checkpoints, requeues and resumes
// on preemption), from a small array script written into <sweep>/slurm/ that
// gives each task its trial's directory (DTRAIN_OUT) and overrides. Slurm runs
// at most `concurrency` tasks at once (--array=...%K). The sweep follows the
// tasks with squeue and their ends through each trial's slurm.log (what
// dtrain.sbatch wrote last). Stopping a task cleanly: SIGTERM to its batch
// shell (dtrain.sbatch passes it on as SIGUSR1: dtrain checkpoints and exits
// 4, and the script requeues the task), then scancel of the requeued task.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "commands.h"
#include "sweep_backend.h"

namespace dtrain_cli {

namespace {

namespace fs = std::filesystem;

// Runs a command (no shell), returns its exit status and stdout; stderr goes to `err`.
int run_command(const std::vector<std::string>& argv, std::string& out, std::string& err) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) return -1;
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  auto drain = [](int fd, std::string& s) {
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
    close(fd);
  };
  drain(out_pipe[0], out);  // small outputs: stdout then stderr cannot deadlock here
  drain(err_pipe[0], err);
  int ws = 0;
  if (pid < 0 || waitpid(pid, &ws, 0) != pid) return -1;
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

// How a trial's last dtrain.sbatch attempt ended, from its slurm.log.
TrialExit from_log(int64_t id, const std::string& trial_dir) {
  std::ifstream in(fs::path(trial_dir) / "slurm.log");
  std::string line, last;
  while (std::getline(in, line))
    if (line.find("dtrain finished") != std::string::npos || line.find("dtrain failed") != std::string::npos ||
        line.find("dtrain stopped") != std::string::npos || line.find("dtrain ended") != std::string::npos)
      last = line;
  std::smatch m;
  if (last.find("dtrain finished (exit 0)") != std::string::npos) return {id, 0, "exit 0"};
  if (std::regex_search(last, m, std::regex(R"((exit|status) (\d+))")))
    return {id, std::stoi(m[2]), fmt::format("{} {} (Slurm task)", m[1].str(), m[2].str())};
  return {id, -1, "the Slurm task ended before dtrain did (cancelled?)"};
}

class SlurmBackend : public SweepBackend {
 public:
  SlurmBackend(std::string self, const dtrain::sweep::Spec& spec, std::string dir)
      : self_(std::move(self)), spec_(spec), dir_(fs::absolute(dir).lexically_normal().string()) {
    const char* env = std::getenv("DTRAIN_TOOLS_DIR");
    sbatch_script_ = (fs::path(env && *env ? env : DTRAIN_TOOLS_DIR) / "slurm" / "dtrain.sbatch").string();
    if (!fs::is_regular_file(sbatch_script_))
      throw dtrain::RuntimeError(fmt::format("--slurm: {} not found (set DTRAIN_TOOLS_DIR)", sbatch_script_));
  }

  size_t free_slots(size_t) const override { return SIZE_MAX; }  // Slurm throttles the array

  void start(const std::vector<Launch>& launches) override {
    const fs::path sdir = fs::path(dir_) / "slurm";
    fs::create_directories(sdir);
    std::vector<std::string> ids;
    for (const Launch& l : launches) {
      std::ofstream args(sdir / fmt::format("trial_{:03}.args", l.trial->id), std::ios::trunc);
      for (const auto& a : l.args) args << a << '\n';
      ids.push_back(fmt::to_string(l.trial->id));
    }
    const fs::path script = sdir / "array.sh";
    std::ofstream(script, std::ios::trunc) << fmt::format(
        "#!/usr/bin/env bash\n"
        "# Written by dtrain sweep --slurm: task i of the array runs trial i with\n"
        "# {0} (its arguments: {1}/trial_NNN.args, one per line).\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --requeue\n"
        "#SBATCH --signal=B:USR1@300\n"
        "set -euo pipefail\n"
        "id=$(printf %03d \"$SLURM_ARRAY_TASK_ID\")\n"
        "mapfile -t args <\"{1}/trial_$id.args\"\n"
        "export DTRAIN_OUT=\"{2}/trial_$id\" DTRAIN_BIN=\"${{DTRAIN_BIN:-{3}}}\"\n"
        "exec bash \"{0}\" \"${{args[@]}}\"\n",
        sbatch_script_, sdir.string(), dir_, self_);
    std::vector<std::string> argv = {"sbatch", "--parsable",
                                     fmt::format("--array={}%{}", fmt::join(ids, ","), spec_.concurrency),
                                     "--job-name=sweep-" + fs::path(spec_.path).stem().string(),
                                     "--output=" + (sdir / "%A_%a.out").string()};
    argv.insert(argv.end(), spec_.slurm_options.begin(), spec_.slurm_options.end());
    argv.push_back(script.string());
    std::string out, err;
    const int rc = run_command(argv, out, err);
    if (rc == 127) throw dtrain::RuntimeError("--slurm: cannot run sbatch (Slurm's commands must be on PATH)");
    if (rc != 0)
      throw dtrain::RuntimeError(fmt::format("--slurm: sbatch failed (status {}): {}", rc, err.substr(0, err.find('\n'))));
    const std::string job = out.substr(0, out.find_first_of(";\n"));
    for (const Launch& l : launches) {
      l.trial->slurm_job = fmt::format("{}_{}", job, l.trial->id);
      watched_[l.trial->id] = l.trial->slurm_job;
    }
    print_line(
        fmt::format("sweep: submitted {} trials as Slurm job array {} ({})", launches.size(), job, script.string()));
  }

  std::vector<TrialExit> reap() override {
    std::vector<TrialExit> ended;
    if (watched_.empty() || std::chrono::steady_clock::now() - last_poll_ < std::chrono::seconds(1)) return ended;
    last_poll_ = std::chrono::steady_clock::now();
    const auto states = queue();
    if (!states) return ended;  // squeue failed this time: ask again later
    for (auto it = watched_.begin(); it != watched_.end();) {
      const auto s = states->find(it->second);
      if (s == states->end()) {
        ended.push_back(from_log(it->first, (fs::path(dir_) / fmt::format("trial_{:03}", it->first)).string()));
        stopping_.erase(it->first);
        it = watched_.erase(it);
        continue;
      }
      // A stopped task that dtrain.sbatch requeued (or that never started): take it out of the queue.
      if (stopping_.count(it->first) && s->second != "RUNNING" && s->second != "COMPLETING") cancel(it->second, false);
      ++it;
    }
    return ended;
  }

  void stop(const dtrain::sweep::TrialRecord& t, bool hard) override {
    if (!watched_.count(t.id)) return;
    stopping_.insert(t.id);
    if (hard) return cancel(t.slurm_job, true);
    std::string out, err;
    run_command({"scancel", "--batch", "--signal=TERM", t.slurm_job}, out, err);
  }

  bool adopt(dtrain::sweep::TrialRecord& t) override {
    if (t.slurm_job.empty()) return false;
    const auto states = queue(t.slurm_job);
    if (!states || !states->count(t.slurm_job)) return false;
    watched_[t.id] = t.slurm_job;
    return true;
  }

 private:
  void cancel(const std::string& job, bool hard) {
    std::string out, err;
    if (hard)
      run_command({"scancel", "--signal=KILL", "--full", job}, out, err);
    run_command({"scancel", job}, out, err);
  }

  // Task -> state of the watched array jobs' tasks still in the queue ("123_4" -> "RUNNING").
  std::optional<std::map<std::string, std::string>> queue(const std::string& only = "") const {
    std::set<std::string> jobs;
    if (!only.empty()) jobs.insert(only.substr(0, only.find('_')));
    for (const auto& [id, job] : watched_) jobs.insert(job.substr(0, job.find('_')));
    std::string out, err;
    if (run_command({"squeue", "-h", "-r", "-o", "%i %T", "-j", fmt::format("{}", fmt::join(jobs, ","))}, out, err) != 0)
      return jobs.empty() || err.find("Invalid job id") != std::string::npos
                 ? std::optional(std::map<std::string, std::string>{})
                 : std::nullopt;
    std::map<std::string, std::string> states;
    std::istringstream lines(out);
    for (std::string task, state; lines >> task >> state;) states[task] = state;
    return states;
  }

  std::string self_;
  const dtrain::sweep::Spec& spec_;
  std::string dir_, sbatch_script_;
  std::map<int64_t, std::string> watched_;
  std::set<int64_t> stopping_;
  std::chrono::steady_clock::time_point last_poll_{};
};

}  // namespace

std::unique_ptr<SweepBackend> slurm_backend(std::string self, const dtrain::sweep::Spec& spec, std::string sweep_dir) {
  return std::make_unique<SlurmBackend>(std::move(self), spec, std::move(sweep_dir));
}

}  // namespace dtrain_cli
