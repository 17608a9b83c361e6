// A communicator over threads of one process, for tests of collective code
// (the checkpoint writer) with several ranks before an MPI build exists in
// the test tree: each thread is a rank. Supports what the checkpoint code
// uses (all-reduce of small tensors, broadcast, barrier); the rest throws.
// HDF5 is built thread-safe on Debian, so ranks may write files concurrently.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "core/comm.h"

namespace dtrain::testing {

class ThreadGroup {
 public:
  explicit ThreadGroup(int n) : slots_(n), n_(n) {}
  int size() const { return n_; }

  void barrier() {
    std::unique_lock lk(m_);
    const int64_t gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lk, [&] { return generation_ != gen; });
    }
  }

  // Every member's tensor, visible to all between the two barriers of a collective.
  std::vector<Tensor> slots_;

 private:
  int n_;
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> g, int rank) : g_(std::move(g)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return g_->size(); }
  const std::string& name() const override { return name_; }
  int world_rank(int r) const override { return r; }

  WorkHandle all_reduce(Tensor t, ReduceOp op) override {
    Tensor acc = Tensor::empty(t.shape(), t.dtype());
    collective(t, [&] {
      acc.copy_from(g_->slots_[0]);
      for (int r = 1; r < size(); ++r) combine(acc, g_->slots_[r], op);
    });
    t.copy_from(acc);
    return done();
  }
  WorkHandle broadcast(Tensor t, int root) override {
    Tensor v = Tensor::empty(t.shape(), t.dtype());
    collective(t, [&] { v.copy_from(g_->slots_[root]); });
    t.copy_from(v);
    return done();
  }
  WorkHandle barrier() override {
    g_->barrier();
    return done();
  }
  WorkHandle reduce_scatter(Tensor, Tensor, ReduceOp, std::vector<int64_t>) override { return no("reduce_scatter"); }
  WorkHandle all_gather(Tensor, Tensor, std::vector<int64_t>) override { return no("all_gather"); }
  WorkHandle send(Tensor, int, int) override { return no("send"); }
  WorkHandle recv(Tensor, int, int) override { return no("recv"); }
  void set_timeout(double) override {}
  const CommStats& stats() const override { return stats_; }

 private:
  struct Done : Work {
    void wait() override {}
    bool test() override { return true; }
  };
  WorkHandle done() { return std::make_unique<Done>(); }
  [[noreturn]] WorkHandle no(const char* what) {
    throw InternalError(fmt::format("ThreadCommunicator: {} is not implemented", what));
  }
  template <class F>
  void collective(const Tensor& t, F read_all) {
    g_->slots_[rank_] = t;
    g_->barrier();
    read_all();
    g_->barrier();
  }
  static void combine(Tensor& acc, const Tensor& x, ReduceOp op) {
    auto apply = [&](auto* a, const auto* b) {
      for (int64_t i = 0; i < acc.numel(); ++i)
        a[i] = op == ReduceOp::sum ? a[i] + b[i] : op == ReduceOp::max ? std::max(a[i], b[i]) : std::min(a[i], b[i]);
    };
    switch (acc.dtype()) {
      case DType::f32: apply(acc.data<float>(), x.data<float>()); break;
      case DType::f64: apply(acc.data<double>(), x.data<double>()); break;
      case DType::i32: apply(acc.data<int32_t>(), x.data<int32_t>()); break;
      default: throw InternalError("ThreadCommunicator: unsupported dtype");
    }
  }

  std::shared_ptr<ThreadGroup> g_;
  int rank_;
  std::string name_ = "world";
  CommStats stats_;
};

inline std::vector<std::unique_ptr<Communicator>> thread_communicators(int n) {
  auto g = std::make_shared<ThreadGroup>(n);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<ThreadCommunicator>(g, r));
  return out;
}

}  // namespace dtrain::testing
