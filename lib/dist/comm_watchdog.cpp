// CommWatchdog (comm_watchdog.h): registration, the poll step, and the
// message the main thread throws.
#include "dist/comm_watchdog.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/error.h"

namespace dtrain {

CommWatchdog::CommWatchdog(CommWatchdogHooks hooks) : hooks_(std::move(hooks)) {
  DTRAIN_CHECK(hooks_.now && hooks_.done && hooks_.abort, "CommWatchdog needs a clock, an event source and an abort action");
}

uint64_t CommWatchdog::begin(std::string op, std::string group, int64_t seq, double timeout_s) {
  DTRAIN_CHECK(timeout_s > 0, "CommWatchdog: timeout {} s for {}", timeout_s, op);
  const double start = hooks_.now();
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_id_++;
  live_.push_back({id, std::move(op), std::move(group), seq, start, timeout_s});
  return id;
}

void CommWatchdog::end(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(live_, [&](const Entry& e) { return e.id == id; });
}

void CommWatchdog::fail(Failure f) {
  failed_ = true;
  failure_ = std::move(f);
}

bool CommWatchdog::poll() {
  std::unique_lock<std::mutex> lock(mu_);
  if (failed_) return true;
  // Completed operations leave; the oldest overdue one (they were issued in
  // order, so the first) is the failure.
  std::erase_if(live_, [&](const Entry& e) { return hooks_.done(e.id); });
  const double now = hooks_.now();
  for (const Entry& e : live_) {
    if (now - e.start >= e.timeout) {
      fail({e.op, e.group, e.seq, e.id, fmt::format("did not complete within {:g} s", e.timeout)});
      break;
    }
  }
  if (!failed_ && hooks_.async_error) {
    std::set<std::string> asked;
    for (const Entry& e : live_) {
      if (!asked.insert(e.group).second) continue;
      std::string err = hooks_.async_error(e.group);
      if (!err.empty()) {
        fail({e.op, e.group, e.seq, e.id, "failed: " + err});
        break;
      }
    }
  }
  if (!failed_) return false;
  aborted_ = true;
  lock.unlock();  // the abort may take time; nothing else changes once failed
  hooks_.abort();
  return true;
}

bool CommWatchdog::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

CommWatchdog::Failure CommWatchdog::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

size_t CommWatchdog::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.size();
}

bool CommWatchdog::aborted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

std::string CommWatchdog::message(const Failure& f, const std::string& explanation) {
  std::string s = fmt::format("{} on group '{}' (collective #{}) {}", f.op, f.group, f.seq, f.reason);
  if (!explanation.empty()) s += "; " + explanation;
  return s + "; every NCCL communicator was aborted";
}

void CommWatchdog::check(const std::function<std::string(const Failure&)>& explain) const {
  Failure f;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_) return;
    f = failure_;
  }
  throw RuntimeError(message(f, explain ? explain(f) : std::string()));
}

}  // namespace dtrain
