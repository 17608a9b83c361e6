// `dtrain sweep SWEEP.toml [--out DIR] [--slurm]`: a hyperparameter sweep.
// The sweep file (lib/sweep/sweep.h) is read and every trial's config checked
// before anything starts; then the trials run, at most `concurrency` at once,
// as local processes (sweep_local.cpp) or Slurm array tasks
// (sweep_slurm.cpp), each a `dtrain run` into <DIR>/trial_NNN. The loop
// follows each trial's metrics.jsonl, stops the ones ASHA drops at a rung,
// and records every change in <DIR>/sweep.json, so that running the same
// command again resumes the sweep: finished, stopped and failed trials are
// kept, the others resume from their checkpoint or start again. SIGINT,
// SIGTERM, SIGHUP or SIGUSR1 to the sweep stops the trials cleanly (each
// checkpoints), records them as interrupted and exits 4; a second signal
// kills them. At the end: a table of the trials and <DIR>/best.toml.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "checkpoint/run_lock.h"
#include "config/schema.h"
#include "core/error.h"
#include "dist/watchdog.h"
#include "parallel/auto_layout.h"
#include "sweep/asha.h"
#include "sweep/record.h"
#include "sweep/sweep.h"
#include "commands.h"
#include "sweep_backend.h"
#include "training.h"

namespace dtrain_cli {

namespace {

namespace fs = std::filesystem;
using dtrain::sweep::Spec;
using dtrain::sweep::SweepRecord;
using dtrain::sweep::Trial;
using dtrain::sweep::TrialRecord;
using Clock = std::chrono::steady_clock;

struct SweepOpts {
  std::string path, out_dir;
  bool slurm = false;
};

// The stop signals main blocks for `dtrain sweep` (stop_signals_for), taken
// here one at a time so that a second one can be told from the first.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    for (int s : {SIGTERM, SIGUSR1, SIGINT, SIGHUP}) sigaddset(&set_, s);
  }
  // The name of a signal that arrived since the last call, or "".
  std::string take() {
    const timespec zero{0, 0};
    const int s = sigtimedwait(&set_, nullptr, &zero);
    if (s <= 0) return "";
    const char* name = sigabbrev_np(s);
    return name ? std::string("SIG") + name : std::to_string(s);
  }

 private:
  sigset_t set_{};
};

// One sweep per directory: a lock held while this process lives (the kernel
// drops it when the process dies, even by SIGKILL).
dtrain::LockFile sweep_lock(const std::string& dir) {
  return dtrain::LockFile((fs::path(dir) / "sweep.lock").string(), [&](const std::string& who) {
    return fmt::format("{}: another dtrain sweep is running in this directory ({})", dir, who);
  });
}

// A trial's checkpoint directory holds a complete checkpoint (step_N; step_N.tmp is one being written).
bool has_checkpoint(const std::string& trial_dir) {
  std::error_code ec;
  const fs::path dir = fs::path(trial_dir) / "checkpoints";
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("step_") && !name.ends_with(".tmp") && e.is_directory()) return true;
  }
  return false;
}

// An executable regular file (a directory passes access(X_OK)).
bool executable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0;
}

// `name` is an executable file, as given (with a '/') or on PATH.
bool on_path(const std::string& name) {
  if (name.empty()) return false;
  if (name.find('/') != std::string::npos) return executable(name);
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');)
    if (executable(fs::path(d.empty() ? "." : d) / name)) return true;
  return false;
}

std::string value_of(const std::string& override_text) { return override_text.substr(override_text.find('=') + 1); }

// A metric for people (the console, results.txt, best.toml's comment): six
// significant digits; sweep.json keeps every bit.
std::string metric_text(std::optional<double> v) { return v ? fmt::format("{:.6g}", *v) : "-"; }

// The last non-empty line of a trial's output.log, for a failure's note.
std::string last_line(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "output.log");
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

class Sweep {
 public:
  Sweep(Context& ctx, const SweepOpts& o) : ctx_(ctx), opts_(o) {}

  int run() {
    ctx_.watchdog->set_grace(30);  // stop signals are taken every 100 ms below, not at step boundaries
    spec_ = dtrain::sweep::parse_spec(opts_.path);
    trials_ = dtrain::sweep::make_trials(spec_);
    const auto configs = dtrain::sweep::check_trials(spec_, trials_, dtrain::make_auto_layout());
    {  // the files each trial reads first (data, keys, init_from), every problem once: the base's
       // where every trial has it, else the first trial's that has it (a value from [space])
      std::vector<std::vector<std::string>> found;
      std::map<std::string, size_t> count;
      for (const auto& c : configs) {
        found.push_back(input_problems(c));
        for (const auto& p : found.back()) ++count[p];
      }
      std::vector<std::string> problems;
      std::set<std::string> seen;
      for (size_t i = 0; i < found.size(); ++i)
        for (const auto& p : found[i])
          if (seen.insert(p).second)
            problems.push_back(count[p] == configs.size() || i >= trials_.size()
                                   ? fmt::format("{}: base {}: {}", spec_.path, spec_.base, p)
                                   : fmt::format("{}: trial {} ({}): {}", spec_.path, trials_[i].id,
                                                 dtrain::sweep::values_text(trials_[i]), p));
      if (!problems.empty()) throw dtrain::ConfigError(problems);
    }
    if (!spec_.launcher.empty() && !opts_.slurm && !on_path(spec_.launcher[0]))
      throw dtrain::ConfigError(fmt::format("{}: launcher: {}", spec_.path,
                                            spec_.launcher[0].empty() ? "its first element (the program) is empty"
                                            : spec_.launcher[0].find('/') != std::string::npos
                                                ? fmt::format("{}: not an executable file", spec_.launcher[0])
                                                : fmt::format("{}: no such program on PATH", spec_.launcher[0])));
    dir_ = !opts_.out_dir.empty() ? opts_.out_dir : (fs::path("runs") / fs::path(opts_.path).stem()).string();
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) throw dtrain::RuntimeError(fmt::format("{}: cannot create the sweep directory: {}", dir_, ec.message()));
    const dtrain::LockFile lock = sweep_lock(dir_);
    load_or_start_record();
    backend_ = opts_.slurm ? slurm_backend(self_exe(), spec_, dir_)
                           : local_backend(self_exe(), spec_.launcher, spec_.concurrency);
    asha_.emplace(spec_.asha.rungs, spec_.asha.reduction, spec_.maximize());
    for (const TrialRecord& t : rec_.trials)
      for (const auto& [rung, v] : t.rungs) asha_->record(rung, v);
    adopt_orphans();
    save();
    const std::string how = spec_.search == "grid" ? fmt::format("a grid of {} trials", trials_.size())
                                                   : fmt::format("{} random trials (seed {})", trials_.size(), spec_.seed);
    const size_t done = static_cast<size_t>(std::count_if(rec_.trials.begin(), rec_.trials.end(),
                                                          [](const TrialRecord& t) { return t.done(); }));
    say(fmt::format("sweep {}: {}, {} {} at most {} at once{}{}; in {}", opts_.path, how, spec_.metric,
                    spec_.maximize() ? "max" : "min", spec_.concurrency, opts_.slurm ? " (Slurm array)" : "",
                    spec_.asha.rungs.empty() ? "" : fmt::format(", ASHA rungs at steps [{}] keeping 1/{}",
                                                                fmt::join(spec_.asha.rungs, ", "),
                                                                fmt::format("{:g}", spec_.asha.reduction)),
                    dir_));
    if (done > 0) say(fmt::format("sweep: resuming: {} of {} trials already done", done, rec_.trials.size()));
    loop();
    save();
    print_table();
    if (!stop_signal_.empty()) {
      say(fmt::format("sweep: stopped by {}; run `dtrain sweep {}{}` again to resume it", stop_signal_, opts_.path,
                      opts_.out_dir.empty() ? "" : " --out " + opts_.out_dir));
      return kExitPreempted;
    }
    return write_best();
  }

 private:
  struct Live {
    dtrain::sweep::MetricsTail tail;
    bool asha_stop = false, stopping = false, killed = false;
    Clock::time_point stop_at{};
  };

  void say(const std::string& s) const { print_line(s); }

  static std::string self_exe() {
    std::error_code ec;
    const auto p = fs::read_symlink("/proc/self/exe", ec);
    if (ec) throw dtrain::RuntimeError("cannot find this dtrain binary (/proc/self/exe): " + ec.message());
    return p.string();
  }

  std::string trial_dir(int64_t id) const { return (fs::path(dir_) / fmt::format("trial_{:03}", id)).string(); }

  void save() {
    try {
      dtrain::sweep::save_record(dir_, rec_);
    } catch (const dtrain::Error& e) {
      if (!save_failed_) eprint("dtrain: warning: {}\n", printable(e.what()));
      save_failed_ = true;
    }
  }

  void load_or_start_record() {
    const std::string file = (fs::path(dir_) / "sweep.json").string();
    const std::string base = fs::absolute(spec_.base).lexically_normal().string();
    if (auto r = dtrain::sweep::load_record(dir_)) {
      rec_ = std::move(*r);
      if (rec_.trials.size() > trials_.size())
        throw dtrain::ConfigError(fmt::format("{}: the sweep there has {} trials and {} makes {}: a different sweep "
                                              "(give another --out)",
                                              file, rec_.trials.size(), opts_.path, trials_.size()));
      for (size_t i = 0; i < rec_.trials.size(); ++i)
        if (rec_.trials[i].overrides != trials_[i].overrides)
          throw dtrain::ConfigError(fmt::format("{}: trial {} there is ({}) and {} makes it ({}): a different sweep "
                                                "(give another --out)",
                                                file, i, fmt::join(rec_.trials[i].overrides, " "), opts_.path,
                                                dtrain::sweep::values_text(trials_[i])));
      // The settings every trial shares: other ones make other trials (a
      // trial resumed under them would continue on another schedule).
      if ((rec_.base && *rec_.base != base) || (rec_.set && *rec_.set != spec_.set))
        throw dtrain::ConfigError(fmt::format(
            "{}: the sweep there ran with base {} and set [{}]; {} gives base {} and set [{}]: a different sweep "
            "(give another --out)",
            file, rec_.base.value_or("?"), fmt::join(rec_.set.value_or(std::vector<std::string>{}), ", "), opts_.path,
            base, fmt::join(spec_.set, ", ")));
      if (rec_.metric != spec_.metric || rec_.mode != spec_.mode)
        for (TrialRecord& t : rec_.trials) t.rungs.clear();  // ASHA's values were of another metric
    }
    // A trial directory this sweep never started that holds a run (checkpoints
    // or metrics) is someone else's: resuming it would report that run's
    // numbers as the trial's.
    for (size_t i = 0; i < trials_.size(); ++i) {
      const bool started = i < rec_.trials.size() && rec_.trials[i].attempts > 0;
      const fs::path d = trial_dir(trials_[i].id);
      std::error_code ec;
      if (!started && (fs::exists(d / "checkpoints", ec) || fs::exists(d / "metrics.jsonl", ec)))
        throw dtrain::ConfigError(fmt::format("{}: holds a run (checkpoints or metrics.jsonl) that this sweep did not "
                                              "start{}: give the sweep another --out, or move it away",
                                              d.string(), i < rec_.trials.size() ? "" : " (no record of it in " + file + ")"));
    }
    rec_.base = base;
    rec_.set = spec_.set;
    rec_.sweep_file = opts_.path;
    rec_.metric = spec_.metric;
    rec_.mode = spec_.mode;
    for (size_t i = rec_.trials.size(); i < trials_.size(); ++i) {
      TrialRecord t;
      t.id = trials_[i].id;
      t.overrides = trials_[i].overrides;
      rec_.trials.push_back(std::move(t));
    }
    for (TrialRecord& t : rec_.trials) t.dir = trial_dir(t.id);
  }

  // Trials a killed sweep left running: wait for them (local processes) or
  // watch them again (Slurm jobs); else they start again (from a checkpoint).
  void adopt_orphans() {
    for (TrialRecord& t : rec_.trials) {
      if (t.state != "running") continue;
      if (backend_->adopt(t)) {
        live_.emplace(t.id, Live{dtrain::sweep::MetricsTail((fs::path(t.dir) / "metrics.jsonl").string(), spec_.metric)});
        say(fmt::format("sweep: trial {} is still running ({}): watching it again", t.id, t.slurm_job));
      } else {
        t.state = "interrupted";
        t.pid = 0;
        t.note = "its sweep was killed";
      }
    }
  }

  std::vector<std::string> launch_args(const TrialRecord& t) const {
    std::vector<std::string> sets = spec_.set;
    sets.insert(sets.end(), t.overrides.begin(), t.overrides.end());
    std::vector<std::string> args;
    if (opts_.slurm) {
      args = {spec_.base};  // dtrain.sbatch chooses run or resume and adds --out and checkpoint.dir
    } else if (has_checkpoint(t.dir)) {
      args = {"resume", (fs::path(t.dir) / "checkpoints").string(), "--out", t.dir};
    } else {
      args = {"run", spec_.base, "--out", t.dir};
      sets.push_back("checkpoint.dir=" + (fs::path(t.dir) / "checkpoints").string());
    }
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    return args;
  }

  void start_trials() {
    if (!stop_signal_.empty()) return;
    size_t slots = backend_->free_slots(live_.size());
    std::vector<Launch> launches;
    std::vector<std::string> started;  // said once the backend took them (an sbatch that fails: none)
    for (TrialRecord& t : rec_.trials) {
      if (slots == 0) break;
      if (t.done() || live_.count(t.id)) continue;
      const bool resume = has_checkpoint(t.dir);
      launches.push_back({&t, launch_args(t)});
      t.state = "running";
      t.attempts += 1;
      t.note.clear();
      live_.emplace(t.id, Live{dtrain::sweep::MetricsTail((fs::path(t.dir) / "metrics.jsonl").string(), spec_.metric)});
      started.push_back(fmt::format("sweep: trial {} {} ({})", t.id, resume ? "resumes from its checkpoint" : "starts",
                                    fmt::join(t.overrides, " ")));
      --slots;
    }
    if (launches.empty()) return;
    fs::create_directories(dir_);
    backend_->start(launches);
    for (const std::string& line : started) say(line);
    save();
  }

  // New metrics of the running trials; ASHA's decisions at the rungs they reached.
  void follow(bool ended_id_known = false, int64_t ended_id = -1) {
    for (auto& [id, live] : live_) {
      TrialRecord& t = rec_.trials[static_cast<size_t>(id)];
      live.tail.poll();
      t.steps = live.tail.last_step();
      if (const auto b = live.tail.best(spec_.maximize())) t.best = b->value, t.best_step = b->step;
      if (live.asha_stop || live.stopping) continue;
      const bool ended = ended_id_known && ended_id == id;
      for (int64_t rung : spec_.asha.rungs) {
        if (t.rungs.count(rung)) continue;
        const auto v = live.tail.at_rung(rung, ended);
        if (!v) break;
        t.rungs[rung] = *v;
        if (ended) continue;  // record it; a trial that ended is not stopped
        if (!asha_->decide(rung, *v)) {
          live.asha_stop = true;
          live.stop_at = Clock::now();
          t.stopped_at = rung;
          say(fmt::format("sweep: trial {} stopped by ASHA at step {}: {} {} is not among the best 1/{} there", id,
                          rung, spec_.metric, metric_text(*v), fmt::format("{:g}", spec_.asha.reduction)));
          backend_->stop(t, false);
          save();
          break;
        }
        save();
      }
    }
  }

  void reap() {
    for (const TrialExit& e : backend_->reap()) {
      follow(true, e.id);
      TrialRecord& t = rec_.trials[static_cast<size_t>(e.id)];
      Live& live = live_.at(e.id);
      t.exit_code = e.status;
      t.pid = 0;
      if (e.status == 0) {
        t.state = "finished";
        t.note = live.asha_stop ? "finished before ASHA's stop arrived" : "";
        t.stopped_at = -1;
      } else if (live.asha_stop) {
        t.state = "stopped";
        t.note = fmt::format("ASHA at step {} ({})", t.stopped_at, e.how);
      } else if (live.stopping || (e.status == kExitPreempted && t.attempts < 3)) {
        t.state = "interrupted";
        t.note = live.stopping ? fmt::format("stopped by the sweep's {} ({})", stop_signal_, e.how)
                               : fmt::format("stopped from outside ({}); resumes", e.how);
      } else {
        t.state = "failed";
        t.note = fmt::format("{}: {}", e.how, last_line(t.dir));
      }
      say(fmt::format("sweep: trial {} {}: best {} {} at step {}, {} steps{}", t.id, t.state, spec_.metric,
                      metric_text(t.best), t.best_step, t.steps, t.note.empty() ? "" : " (" + t.note + ")"));
      live_.erase(e.id);
      save();
    }
  }

  void take_signals() {
    for (std::string s; !(s = signals_.take()).empty();) {
      if (stop_signal_.empty()) {
        stop_signal_ = s;
        say(fmt::format("sweep: got {}: stopping the {} running trial{} (each writes a checkpoint; {} again kills "
                        "them)",
                        s, live_.size(), live_.size() == 1 ? "" : "s", s));
        for (auto& [id, live] : live_) {
          live.stopping = true;
          live.stop_at = Clock::now();
          if (!live.asha_stop) backend_->stop(rec_.trials[static_cast<size_t>(id)], false);
        }
      } else {
        hard_stop("a second signal");
      }
    }
  }

  void hard_stop(const std::string& why) {
    for (auto& [id, live] : live_) {
      if (live.killed) continue;
      say(fmt::format("sweep: killing trial {} ({})", id, why));
      backend_->stop(rec_.trials[static_cast<size_t>(id)], true);
      live.killed = true;
    }
  }

  void loop() {
    constexpr auto kStopWait = std::chrono::seconds(120);  // a checkpoint's time, then SIGKILL
    for (;;) {
      take_signals();
      start_trials();
      follow();
      reap();
      for (auto& [id, live] : live_)
        if ((live.asha_stop || live.stopping) && !live.killed && Clock::now() - live.stop_at > kStopWait) {
          say(fmt::format("sweep: trial {} did not stop within {} s: killing it", id, kStopWait.count()));
          backend_->stop(rec_.trials[static_cast<size_t>(id)], true);
          live.killed = true;
        }
      const bool pending = std::any_of(rec_.trials.begin(), rec_.trials.end(), [&](const TrialRecord& t) {
        return !t.done() && !live_.count(t.id);
      });
      if (live_.empty() && (!pending || !stop_signal_.empty())) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  const TrialRecord* best() const {
    const TrialRecord* b = nullptr;
    for (const TrialRecord& t : rec_.trials) {
      if (!t.best) continue;
      if (!b || (spec_.maximize() ? *t.best > *b->best : *t.best < *b->best)) b = &t;
    }
    return b;
  }

  void print_table() {
    // The metrics of every trial, read again (the metric may have changed since they ran).
    for (TrialRecord& t : rec_.trials) {
      dtrain::sweep::MetricsTail tail((fs::path(t.dir) / "metrics.jsonl").string(), spec_.metric);
      tail.poll();
      if (tail.last_step() > 0) t.steps = tail.last_step();
      const auto b = tail.best(spec_.maximize());
      t.best = b ? std::optional(b->value) : std::nullopt;
      t.best_step = b ? b->step : -1;
    }
    save();
    const TrialRecord* top = best();
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> head = {"trial"};
    for (const auto& a : spec_.space) head.push_back(a.key);
    for (const char* h : {"best", "at step", "steps", "status"}) head.push_back(h);
    head[1 + spec_.space.size()] = "best " + spec_.metric;
    rows.push_back(head);
    for (const TrialRecord& t : rec_.trials) {
      std::vector<std::string> r = {fmt::format("{}{}", t.id, &t == top ? "*" : "")};
      for (const auto& o : t.overrides) r.push_back(value_of(o));
      r.push_back(metric_text(t.best));
      r.push_back(t.best_step >= 0 ? fmt::to_string(t.best_step) : "-");
      r.push_back(fmt::to_string(t.steps));
      std::string status = t.state;
      if (t.state == "stopped") status = fmt::format("stopped at {} (ASHA)", t.stopped_at);
      if (t.state == "failed") status = fmt::format("failed ({})", t.note.substr(0, t.note.find(':')));
      r.push_back(status);
      rows.push_back(r);
    }
    std::vector<size_t> width(head.size(), 0);
    for (const auto& r : rows)
      for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::string table;
    for (const auto& r : rows) {
      std::string line;
      for (size_t i = 0; i < r.size(); ++i)
        line += fmt::format("{:<{}}", r[i], i + 1 < r.size() ? width[i] + 2 : 0);
      table += line + "\n";
    }
    std::fputs(table.c_str(), stdout);
    std::fflush(stdout);
    std::ofstream(fs::path(dir_) / "results.txt") << table;
  }

  int write_best() {
    const TrialRecord* top = best();
    if (!top) {
      eprint("dtrain: error: sweep {}: no trial recorded {} (see the trials' output.log in {})\n", opts_.path,
             spec_.metric, dir_);
      return kExitRuntime;
    }
    std::vector<std::string> sets = spec_.set;
    sets.insert(sets.end(), top->overrides.begin(), top->overrides.end());
    sets.push_back("log.out_dir=" + (fs::path("runs") / (fs::path(opts_.path).stem().string() + "-best")).string());
    const dtrain::Config cfg = dtrain::load_config(spec_.base, sets, static_cast<int>(spec_.ranks), dtrain::make_auto_layout());
    const std::string path = (fs::path(dir_) / "best.toml").string();
    std::ofstream out(path, std::ios::trunc);
    // Run as the trials ran: behind their launcher, or on their ranks.
    const std::string launch = !spec_.launcher.empty() ? fmt::format("{} ", fmt::join(spec_.launcher, " "))
                               : spec_.ranks > 1       ? fmt::format("mpirun -np {} ", spec_.ranks)
                                                       : std::string();
    out << fmt::format("# dtrain sweep {}: the best trial, {} ({}): {} {} at step {}\n# base {}; run it with: "
                       "{}dtrain run {}\n",
                       opts_.path, top->id, fmt::join(top->overrides, " "), spec_.metric, metric_text(top->best),
                       top->best_step, spec_.base, launch, path)
        << dtrain::to_toml(cfg);
    out.flush();
    if (!out) throw dtrain::RuntimeError(fmt::format("{}: cannot write", path));
    const auto failed = std::count_if(rec_.trials.begin(), rec_.trials.end(), [](const TrialRecord& t) {
      return t.state == "failed";
    });
    say(fmt::format("sweep: best trial {} ({}): {} {}; {} written{}", top->id, fmt::join(top->overrides, " "),
                    spec_.metric, metric_text(top->best), path,
                    failed ? fmt::format("; {} trials failed (see their output.log)", failed) : ""));
    return kExitOk;
  }

  Context& ctx_;
  SweepOpts opts_;
  Spec spec_;
  std::vector<Trial> trials_;
  std::string dir_;
  SweepRecord rec_;
  std::unique_ptr<SweepBackend> backend_;
  std::optional<dtrain::sweep::Asha> asha_;
  std::map<int64_t, Live> live_;
  StopSignals signals_;
  std::string stop_signal_;
  bool save_failed_ = false;
};

}  // namespace

std::vector<int> stop_signals_for(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  // Ctrl-C on a run stops it as a preemption does, with a checkpoint; so does
  // a hangup (the terminal closed), unless the process was started to ignore
  // it (nohup): a blocked signal is queued even where it is ignored.
  struct sigaction hup {};
  const bool hup_ignored = sigaction(SIGHUP, nullptr, &hup) == 0 && hup.sa_handler == SIG_IGN;
  std::vector<int> s = {SIGTERM, SIGUSR1};
  if (command == "sweep" || command == "run" || command == "resume") {
    s.push_back(SIGINT);
    if (!hup_ignored) s.push_back(SIGHUP);
  }
  return s;
}

Subcommand add_sweep(CLI::App& app) {
  auto o = std::make_shared<SweepOpts>();
  auto* sweep = app.add_subcommand("sweep", "Run a hyperparameter sweep: grid or random search, ASHA early stopping, "
                                            "resumable (README, Sweeps)");
  sweep->add_option("sweep_file", o->path, "TOML sweep file")->required()->check(CLI::ExistingFile);
  sweep->add_option("--out", o->out_dir, "Sweep directory (default runs/<sweep file name>)")->check(output_dir());
  sweep->add_flag("--slurm", o->slurm, "Run the trials as a Slurm job array of tools/slurm/dtrain.sbatch");
  return {sweep, [o](Context& ctx) { return Sweep(ctx, *o).run(); }};
}

}  // namespace dtrain_cli
