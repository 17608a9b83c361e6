#include "checkpoint/preempt.h"

#include <pthread.h>
#include <unistd.h>

#include <csignal>

#include <cstring>

#include "core/error.h"

namespace dtrain {

namespace {

// A second Ctrl-C: one line (write(2) is async-signal-safe), then SIGINT's
// default action, so that the shell sees the process ended by it (130).
extern "C" void second_interrupt(int sig) {
  static constexpr char kLine[] =
      "dtrain: interrupted again: stopped at once, without the checkpoint (the ones already written are whole)\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, kLine, sizeof kLine - 1);
  std::raise(sig);  // SA_RESETHAND restored the default action; delivered when this handler returns
}

}  // namespace

SignalWatch::SignalWatch(std::vector<int> signals) {
  sigemptyset(&set_);
  for (int s : signals) sigaddset(&set_, s);
  const int rc = pthread_sigmask(SIG_BLOCK, &set_, &old_);
  if (rc != 0) throw RuntimeError(fmt::format("cannot block signals: {}", std::strerror(rc)));
}

SignalWatch::~SignalWatch() {
  poll();  // drain: unblocking a pending SIGTERM would kill the process now
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  if (int_default_) sigaction(SIGINT, &old_int_, nullptr);
}

bool SignalWatch::poll() {
  const timespec zero{0, 0};
  for (;;) {
    const int s = sigtimedwait(&set_, nullptr, &zero);
    if (s <= 0) break;  // EAGAIN: nothing pending (EINTR: try at the next poll)
    if (first_ == 0) first_ = s;
    if (s == SIGINT) {  // Ctrl-C, taken: a second one ends the process at once (saying so, then its default action)
      struct sigaction dfl {};
      dfl.sa_handler = second_interrupt;
      dfl.sa_flags = SA_RESETHAND;
      sigemptyset(&dfl.sa_mask);
      int_default_ = sigaction(SIGINT, &dfl, &old_int_) == 0;
      sigdelset(&set_, SIGINT);
      sigset_t again;
      sigemptyset(&again);
      sigaddset(&again, SIGINT);
      pthread_sigmask(SIG_UNBLOCK, &again, nullptr);
    }
  }
  return first_ != 0;
}

std::string SignalWatch::name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string SignalWatch::received() const { return first_ == 0 ? "" : name(first_); }

}  // namespace dtrain
