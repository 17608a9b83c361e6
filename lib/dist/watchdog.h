// A thread that notices what the main thread cannot while it is busy or
// blocked (building a 2000-layer model, loading a checkpoint, waiting on a
// peer that was stopped): the launcher that started this rank going away,
// and a stop signal left pending longer than the run's current phase allows.
// The step loop takes stop signals at step boundaries (checkpoint/preempt.h,
// which keeps them blocked and pending until then); the watchdog only looks
// at the pending set (sigpending) and never consumes them. What to do is the
// caller's: the watchdog calls back from its own thread, once per event.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dtrain {

struct WatchdogOptions {
  // The launcher: the parent process at start (mpirun's daemon, slurmstepd).
  // When getppid() no longer returns it, this process was re-parented: the
  // launcher is gone. 0 = do not watch.
  pid_t launcher = 0;
  std::vector<int> stop_signals = {SIGTERM, SIGUSR1};
  std::chrono::milliseconds period{100};
  // Called once when the launcher is gone. If the process still runs
  // `launcher_exit_s` later (a stop that cannot finish, MPI_Finalize waiting
  // for a daemon that is dead), on_stuck is called with "the launcher's exit".
  std::function<void()> on_launcher_gone;
  double launcher_exit_s = 30;
  // Called once per signal when a stop signal has been pending `ack_after_s`
  // while the grace allows more (a long step or checkpoint save in progress:
  // the person who pressed Ctrl-C learns it was taken).
  std::function<void(const std::string& signal)> on_pending;
  double ack_after_s = 1;
  // Called once when a stop signal (its name, "SIGTERM") has been pending
  // longer than the grace (see set_grace); `seconds` = how long.
  std::function<void(const std::string& signal, double seconds)> on_stuck;
};

class Watchdog {
 public:
  explicit Watchdog(WatchdogOptions opts);
  ~Watchdog();  // stops and joins the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // How long a stop signal may stay pending before on_stuck: 0 during setup
  // (nothing to checkpoint yet: act at once), about a step's time in training.
  void set_grace(double seconds) { grace_s_.store(seconds); }
  double grace() const { return grace_s_.load(); }
  bool launcher_gone() const { return launcher_gone_.load(); }
  // Starts watching the launcher (after MPI has said whether there is one).
  void watch_launcher(pid_t launcher) { launcher_.store(launcher); }

  // Kept for on_stuck to say why a stop could not finish and what is safe:
  // what the main thread is blocked on ("" = nothing known; MpiCommOptions::
  // on_blocked), where the run is ("step 57") and how it can continue ("the
  // newest checkpoint is ..."). Any thread.
  struct Notes {
    std::string blocked_on, step, recovery;
  };
  void set_blocked_on(std::string what);
  void set_step(std::string step, std::string recovery);
  Notes notes() const;

 private:
  void loop();

  WatchdogOptions opts_;
  std::atomic<double> grace_s_{0};
  std::atomic<bool> launcher_gone_{false};
  std::atomic<pid_t> launcher_{0};
  mutable std::mutex notes_mu_;
  Notes notes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dtrain
