// CommWatchdog: the timeout and failure logic of device communication (NCCL)
// as a state machine with no NCCL or CUDA in it, so that CI tests it with a
// fake clock and a fake event source.
//
// A device collective returns at once; whether it completes is only seen by
// asking (cudaEventQuery, ncclCommGetAsyncError), and a hung one blocks the
// GPU, not the host. So each operation is registered when issued (operation,
// group, the group's collective number, start time, timeout) and a poll step,
// run every 100 ms by a thread of the NCCL runtime, drops the completed ones
// and, on the first operation past its timeout or the first asynchronous
// error a communicator reports, records the failure and calls the abort
// action once (ncclCommAbort on every communicator: stuck kernels exit and a
// host blocked on a full launch queue wakes up). The main thread then throws
// on its next call (check()), naming the collective, the group and, from the
// MPI twin's arrival board (explain), the ranks that did not arrive: the
// board is MPI, and only the main thread calls MPI.
// Thread-safe: begin/end/check from the main thread, poll from the watchdog's.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace dtrain {

struct CommWatchdogHooks {
  std::function<double()> now;  // seconds on a monotonic clock
  // True once operation `id` completed on the device (its event fired).
  std::function<bool(uint64_t id)> done;
  // The asynchronous error group `group`'s communicator reports ("" = none).
  std::function<std::string(const std::string& group)> async_error;
  // Aborts every communicator of the job's device groups (called at most once).
  std::function<void()> abort;
};

class CommWatchdog {
 public:
  struct Failure {
    std::string op;     // "all_reduce of 1024 bf16 (sum)"
    std::string group;  // "dp"
    int64_t seq = 0;    // the group's collective number
    uint64_t id = 0;    // the operation's registration
    std::string reason; // "did not complete within 30 s" or "NCCL reported: ..."
  };

  explicit CommWatchdog(CommWatchdogHooks hooks);

  // Registers an operation just issued; returns its id (from 1).
  uint64_t begin(std::string op, std::string group, int64_t seq, double timeout_s);
  // The main thread saw it complete (or dropped it): no longer watched.
  void end(uint64_t id);
  // One scan. Returns true when the watchdog has failed (now or before).
  bool poll();

  bool failed() const;
  Failure failure() const;  // valid when failed()
  size_t in_flight() const;
  bool aborted() const;
  // Throws RuntimeError when failed: "<op> on group '<group>' (collective #<seq>)
  // <reason>; <explain(failure)>; every NCCL communicator was aborted".
  // explain (main thread): who did not arrive, from the MPI twin; may be empty.
  void check(const std::function<std::string(const Failure&)>& explain = {}) const;
  static std::string message(const Failure& f, const std::string& explanation);

 private:
  struct Entry {
    uint64_t id;
    std::string op, group;
    int64_t seq;
    double start, timeout;
  };
  void fail(Failure f);  // with mu_ held

  CommWatchdogHooks hooks_;
  mutable std::mutex mu_;
  std::vector<Entry> live_;
  uint64_t next_id_ = 1;
  bool failed_ = false, aborted_ = false;
  Failure failure_;
};

}  // namespace dtrain
