#include "core/comm.h"

#include <numeric>

namespace dtrain {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

// One member: reductions and gathers are copies (or nothing, in place);
// point-to-point has no peer to talk to.
class SelfCommunicator : public Communicator {
 public:
  SelfCommunicator(std::string name, int world_rank) : name_(std::move(name)), world_rank_(world_rank) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  int world_rank(int r) const override {
    DTRAIN_CHECK(r == 0, "group {} has one member, asked for member {}", name_, r);
    return world_rank_;
  }

  WorkHandle all_reduce(Tensor t, ReduceOp) override { return done(t.bytes()); }
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp, std::vector<int64_t> counts) override {
    check_counts(counts, in.numel());
    if (in.raw() != out.raw()) out.copy_from(in);
    return done(in.bytes());
  }
  WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) override {
    check_counts(counts, out.numel());
    if (in.raw() != out.raw()) out.copy_from(in);
    return done(in.bytes());
  }
  WorkHandle broadcast(Tensor t, int root) override {
    DTRAIN_CHECK(root == 0, "broadcast from member {} of the one-member group {}", root, name_);
    return done(t.bytes());
  }
  WorkHandle send(Tensor, int peer, int) override { return no_peer("send to", peer); }
  WorkHandle recv(Tensor, int peer, int) override { return no_peer("recv from", peer); }
  WorkHandle barrier() override { return done(0); }
  void set_timeout(double) override {}
  const CommStats& stats() const override { return stats_; }

 private:
  WorkHandle done(size_t bytes) {
    ++stats_.ops;
    stats_.bytes += static_cast<double>(bytes);
    return std::make_unique<DoneWork>();
  }
  void check_counts(const std::vector<int64_t>& counts, int64_t total) const {
    DTRAIN_CHECK(counts.empty() || (counts.size() == 1 && counts[0] == total),
                 "group {}: counts do not describe one member's {} elements", name_, total);
  }
  [[noreturn]] WorkHandle no_peer(const char* what, int peer) const {
    throw InternalError(fmt::format("{} member {} in the one-member group {}", what, peer, name_));
  }

  std::string name_;
  int world_rank_;
  CommStats stats_;
};

}  // namespace

namespace {

// Several Works completing together (batch_p2p's default).
class AllWork : public Work {
 public:
  explicit AllWork(std::vector<WorkHandle> works) : works_(std::move(works)) {}
  void wait() override {
    for (auto& w : works_) w->wait();
  }
  bool test() override {
    bool done = true;
    for (auto& w : works_) done = w->test() && done;  // drives every one
    return done;
  }

 private:
  std::vector<WorkHandle> works_;
};

}  // namespace

WorkHandle Communicator::batch_p2p(std::vector<P2POp> ops) {
  std::vector<WorkHandle> works;
  works.reserve(ops.size());
  for (P2POp& op : ops)
    works.push_back(op.kind == P2POp::Kind::send ? send(std::move(op.tensor), op.peer, op.tag)
                                                  : recv(std::move(op.tensor), op.peer, op.tag));
  return std::make_unique<AllWork>(std::move(works));
}

std::unique_ptr<Communicator> make_self_communicator(const std::string& name, int world_rank) {
  return std::make_unique<SelfCommunicator>(name, world_rank);
}

}  // namespace dtrain
