#include "dist/watchdog.h"

#include <unistd.h>

#include <cstring>

namespace dtrain {

Watchdog::Watchdog(WatchdogOptions opts) : opts_(std::move(opts)), launcher_(opts_.launcher) {
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::set_blocked_on(std::string what) {
  std::lock_guard lock(notes_mu_);
  notes_.blocked_on = std::move(what);
}

void Watchdog::set_step(std::string step, std::string recovery) {
  std::lock_guard lock(notes_mu_);
  notes_.step = std::move(step);
  notes_.recovery = std::move(recovery);
}

Watchdog::Notes Watchdog::notes() const {
  std::lock_guard lock(notes_mu_);
  return notes_;
}

void Watchdog::loop() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point pending_since{}, gone_at{};
  bool pending = false, stuck_told = false, pending_told = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, opts_.period, [this] { return stop_; })) {
    const pid_t launcher = launcher_.load();
    if (launcher != 0 && !launcher_gone_.load() && getppid() != launcher) {
      launcher_gone_.store(true);
      gone_at = Clock::now();
      if (opts_.on_launcher_gone) opts_.on_launcher_gone();
    }
    if (launcher_gone_.load() && !stuck_told && opts_.on_stuck) {
      const double since = std::chrono::duration<double>(Clock::now() - gone_at).count();
      if (since >= opts_.launcher_exit_s) {
        stuck_told = true;
        opts_.on_stuck("the launcher's exit", since);
      }
    }
    sigset_t set;
    sigemptyset(&set);
    sigpending(&set);
    int signal = 0;
    for (int s : opts_.stop_signals)
      if (sigismember(&set, s) == 1) signal = s;
    if (!signal) {
      pending = false;  // taken by the step loop
      continue;
    }
    const auto now = Clock::now();
    if (!pending) pending_since = now, pending_told = false;
    pending = true;
    const double waited = std::chrono::duration<double>(now - pending_since).count();
    const char* abbrev = sigabbrev_np(signal);
    const std::string name = abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signal);
    if (!stuck_told && waited >= grace_s_.load() && opts_.on_stuck) {
      stuck_told = true;
      opts_.on_stuck(name, waited);
    } else if (!pending_told && !stuck_told && waited >= opts_.ack_after_s && opts_.on_pending) {
      pending_told = true;
      opts_.on_pending(name);
    }
  }
}

}  // namespace dtrain
