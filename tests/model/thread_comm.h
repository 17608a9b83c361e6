// An in-process communicator for tests: a group of N std::threads in one
// process, each holding the Communicator of its rank, so that tensor
// parallelism runs without MPI. Members publish their tensors in shared slots
// and meet at a barrier; every member then computes a reduction itself over
// all members' inputs in rank order (0, 1, ..., N-1), so the result is the
// same on every member, bit for bit, and does not depend on thread timing.
// Operations complete inside the call (the Work handles are already done).
//
// The barrier is a condition variable with a timeout rather than
// std::barrier: a member that fails (a REQUIRE throws, a bug throws) aborts
// the group, and the others throw instead of waiting forever.
//
// run_ranks(n, fn) runs fn(comm, rank) on n threads with OpenMP and BLAS at
// one thread each and rethrows the first failure on the calling thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "kernels/cpu/gemm.h"

namespace dtrain::testing {

class ThreadGroup;

namespace detail {

class DoneWork : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

template <class T>
T combine(T a, T b, ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return a + b;
    case ReduceOp::max: return std::max(a, b);
    case ReduceOp::min: return std::min(a, b);
  }
  return a;
}

// Calls f(T{}) for the dtypes the test communicator reduces.
template <class F>
void dispatch_reduce(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    default: throw InternalError(fmt::format("ThreadComm: no reduction for {}", dtype_name(t)));
  }
}

}  // namespace detail

// One member's view of a ThreadGroup.
class ThreadComm : public Communicator {
 public:
  ThreadComm(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}

  int rank() const override { return rank_; }
  inline int size() const override;
  inline const std::string& name() const override;
  int world_rank(int r) const override { return r; }

  inline WorkHandle all_reduce(Tensor t, ReduceOp op) override;
  inline WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op,
                                   std::vector<int64_t> counts = {}) override;
  inline WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts = {}) override;
  inline WorkHandle broadcast(Tensor t, int root) override;
  WorkHandle send(Tensor, int, int) override { return unsupported("send"); }
  WorkHandle recv(Tensor, int, int) override { return unsupported("recv"); }
  inline WorkHandle barrier() override;
  inline void set_timeout(double seconds) override;
  const CommStats& stats() const override { return stats_; }

 private:
  [[noreturn]] WorkHandle unsupported(const char* what) const {
    throw InternalError(fmt::format("ThreadComm: {} is not implemented (tensor parallelism uses "
                                    "collectives only)",
                                    what));
  }
  WorkHandle done(size_t bytes) {
    ++stats_.ops;
    stats_.bytes += static_cast<double>(bytes);
    return std::make_unique<detail::DoneWork>();
  }
  // Member offsets and counts of a total split by `counts` (empty: equal parts).
  inline std::vector<int64_t> parts(const std::vector<int64_t>& counts, int64_t total) const;

  ThreadGroup& g_;
  int rank_;
  CommStats stats_;
  std::vector<unsigned char> scratch_;  // this member's copy of a reduction's result
};

class ThreadGroup {
 public:
  explicit ThreadGroup(int n, std::string name = "tp") : n_(n), name_(std::move(name)), slots_(n) {
    for (int r = 0; r < n; ++r) comms_.push_back(std::make_unique<ThreadComm>(*this, r));
  }
  int size() const { return n_; }
  const std::string& name() const { return name_; }
  Communicator& comm(int rank) { return *comms_.at(rank); }

  // Wakes every member waiting at the barrier; they (and later arrivals) throw.
  void abort() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }

 private:
  friend class ThreadComm;

  // Every member arrives before any leaves; throws RuntimeError after the
  // timeout (naming the members that did not arrive) or when aborted.
  void arrive_and_wait(int rank, const char* op) {
    std::unique_lock<std::mutex> lock(mu_);
    if (aborted_) throw RuntimeError(fmt::format("{} on group {}: the group was aborted", op, name_));
    const uint64_t gen = generation_;
    arrived_.push_back(rank);
    if (static_cast<int>(arrived_.size()) == n_) {
      arrived_.clear();
      ++generation_;
      cv_.notify_all();
      return;
    }
    const bool ok = cv_.wait_for(lock, std::chrono::duration<double>(timeout_s_),
                                 [&] { return generation_ != gen || aborted_; });
    if (generation_ != gen) return;
    if (!ok) {
      std::string missing;
      for (int r = 0; r < n_; ++r)
        if (std::find(arrived_.begin(), arrived_.end(), r) == arrived_.end())
          missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      aborted_ = true;
      cv_.notify_all();
      throw RuntimeError(fmt::format("{} on group {} timed out after {} s: members {} did not arrive",
                                     op, name_, timeout_s_, missing));
    }
    throw RuntimeError(fmt::format("{} on group {}: the group was aborted", op, name_));
  }

  int n_;
  std::string name_;
  std::vector<Tensor> slots_;  // each member's published tensor for the current operation
  std::vector<std::unique_ptr<ThreadComm>> comms_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> arrived_;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  double timeout_s_ = 120;
};

int ThreadComm::size() const { return g_.n_; }
const std::string& ThreadComm::name() const { return g_.name_; }

void ThreadComm::set_timeout(double seconds) {
  std::lock_guard<std::mutex> lock(g_.mu_);
  g_.timeout_s_ = seconds;
}

std::vector<int64_t> ThreadComm::parts(const std::vector<int64_t>& counts, int64_t total) const {
  std::vector<int64_t> c = counts;
  if (c.empty()) {
    DTRAIN_CHECK(total % g_.n_ == 0, "group {}: {} elements in {} equal parts", g_.name_, total, g_.n_);
    c.assign(g_.n_, total / g_.n_);
  }
  DTRAIN_CHECK(static_cast<int>(c.size()) == g_.n_, "group {}: {} counts for {} members", g_.name_,
               c.size(), g_.n_);
  int64_t sum = 0;
  for (int64_t x : c) sum += x;
  DTRAIN_CHECK(sum == total, "group {}: counts sum to {}, not {}", g_.name_, sum, total);
  return c;
}

// Publish; barrier; reduce all members' t in rank order into scratch;
// barrier (every member has read every input); copy scratch into t.
WorkHandle ThreadComm::all_reduce(Tensor t, ReduceOp op) {
  g_.slots_[rank_] = t;
  g_.arrive_and_wait(rank_, "all_reduce");
  for (int r = 0; r < g_.n_; ++r)
    DTRAIN_CHECK(g_.slots_[r].numel() == t.numel() && g_.slots_[r].dtype() == t.dtype(),
                 "all_reduce on group {}: member {} gave {} {}, member {} {} {}", g_.name_, r,
                 g_.slots_[r].numel(), dtype_name(g_.slots_[r].dtype()), rank_, t.numel(),
                 dtype_name(t.dtype()));
  const int64_t n = t.numel();
  scratch_.resize(t.bytes());
  detail::dispatch_reduce(t.dtype(), [&](auto z) {
    using T = decltype(z);
    T* acc = reinterpret_cast<T*>(scratch_.data());
    std::memcpy(acc, g_.slots_[0].raw(), t.bytes());
    for (int r = 1; r < g_.n_; ++r) {
      const T* x = static_cast<const T*>(g_.slots_[r].raw());
      for (int64_t i = 0; i < n; ++i) acc[i] = detail::combine(acc[i], x[i], op);
    }
  });
  g_.arrive_and_wait(rank_, "all_reduce");
  std::memcpy(t.raw(), scratch_.data(), t.bytes());
  return done(t.bytes());
}

WorkHandle ThreadComm::reduce_scatter(Tensor in, Tensor out, ReduceOp op,
                                      std::vector<int64_t> counts) {
  const std::vector<int64_t> c = parts(counts, in.numel());
  DTRAIN_CHECK(out.numel() == c[rank_], "reduce_scatter: output of {} for a part of {}", out.numel(),
               c[rank_]);
  int64_t off = 0;
  for (int r = 0; r < rank_; ++r) off += c[r];
  g_.slots_[rank_] = in;
  g_.arrive_and_wait(rank_, "reduce_scatter");
  scratch_.resize(out.bytes());
  detail::dispatch_reduce(in.dtype(), [&](auto z) {
    using T = decltype(z);
    T* acc = reinterpret_cast<T*>(scratch_.data());
    std::memcpy(acc, static_cast<const T*>(g_.slots_[0].raw()) + off, out.bytes());
    for (int r = 1; r < g_.n_; ++r) {
      const T* x = static_cast<const T*>(g_.slots_[r].raw()) + off;
      for (int64_t i = 0; i < c[rank_]; ++i) acc[i] = detail::combine(acc[i], x[i], op);
    }
  });
  g_.arrive_and_wait(rank_, "reduce_scatter");
  std::memcpy(out.raw(), scratch_.data(), out.bytes());
  return done(in.bytes());
}

WorkHandle ThreadComm::all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) {
  const std::vector<int64_t> c = parts(counts, out.numel());
  DTRAIN_CHECK(in.numel() == c[rank_], "all_gather: input of {} for a part of {}", in.numel(), c[rank_]);
  g_.slots_[rank_] = in;
  g_.arrive_and_wait(rank_, "all_gather");
  const size_t elem = dtype_size(out.dtype());
  std::vector<unsigned char>& buf = scratch_;
  buf.resize(out.bytes());
  size_t off = 0;
  for (int r = 0; r < g_.n_; ++r) {
    std::memcpy(buf.data() + off, g_.slots_[r].raw(), static_cast<size_t>(c[r]) * elem);
    off += static_cast<size_t>(c[r]) * elem;
  }
  g_.arrive_and_wait(rank_, "all_gather");  // in may be a view of out
  std::memcpy(out.raw(), buf.data(), out.bytes());
  return done(in.bytes());
}

WorkHandle ThreadComm::broadcast(Tensor t, int root) {
  DTRAIN_CHECK(0 <= root && root < g_.n_, "broadcast from member {} of {}", root, g_.n_);
  g_.slots_[rank_] = t;
  g_.arrive_and_wait(rank_, "broadcast");
  if (rank_ != root) std::memcpy(t.raw(), g_.slots_[root].raw(), t.bytes());
  g_.arrive_and_wait(rank_, "broadcast");
  return done(t.bytes());
}

WorkHandle ThreadComm::barrier() {
  g_.arrive_and_wait(rank_, "barrier");
  return done(0);
}

// Runs fn(comm, rank) for every rank of a new group of n, one std::thread
// each, with OpenMP and BLAS at one thread (set in each thread: OpenMP's
// thread count is per thread). Joins them all, restores the caller's thread
// count and rethrows the first failure.
inline void run_ranks(int n, const std::function<void(Communicator&, int)>& fn) {
  const int saved = cpu::num_threads();
  cpu::set_num_threads(1);
  ThreadGroup group(n);
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        cpu::set_num_threads(1);
        fn(group.comm(r), r);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!first) first = std::current_exception();
        }
        group.abort();
      }
    });
  for (auto& t : threads) t.join();
  cpu::set_num_threads(saved);
  if (first) std::rethrow_exception(first);
}

}  // namespace dtrain::testing
