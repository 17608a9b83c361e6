// Preemption signals without a handler or a global flag: the signals a
// scheduler sends before it kills a job (SIGTERM; SIGUSR1 via Slurm's
// --signal) are blocked, so they stay pending instead of killing the process,
// and the step loop polls for them at step boundaries (sigtimedwait with a zero
// timeout). Blocking must happen before any other thread starts (OpenMP,
// MPI): threads inherit the mask, and a thread that does not block a signal
// would take it with its default action, termination.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

namespace dtrain {

class SignalWatch {
 public:
  // Blocks `signals` in the calling thread (and so in threads it starts later).
  explicit SignalWatch(std::vector<int> signals = {SIGTERM, SIGUSR1});
  // Consumes any still pending and restores the previous mask.
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  // True once one of the signals has arrived (consumes pending ones; cheap).
  // A SIGINT taken is unblocked in the calling thread with its default action,
  // so that a second one (Ctrl-C pressed again) ends the process at once: also
  // where SIGINT was ignored (a background job of a script: the shell sets it
  // so), which blocking had overridden for the first.
  bool poll();
  // The first signal received ("SIGTERM"), or "" if none.
  std::string received() const;
  int received_number() const { return first_; }  // its number, 0 if none
  // "SIGTERM" for signal number `sig`.
  static std::string name(int sig);

 private:
  sigset_t set_{};
  sigset_t old_{};
  int first_ = 0;
  bool int_default_ = false;         // SIGINT's action set to its default by poll()
  struct sigaction old_int_ {};      // the action it replaced, restored at the end
};

}  // namespace dtrain
