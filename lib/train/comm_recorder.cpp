#include "train/comm_recorder.h"

namespace dtrain {

namespace {

class RecordingWork : public Work {
 public:
  RecordingWork(WorkHandle inner, Profiler& p, const std::string& group, CommOp op, double bytes)
      : inner_(std::move(inner)), prof_(p), group_(group), op_(op), bytes_(bytes),
        issued_(Profiler::Clock::now()) {}

  void wait() override {
    const auto t0 = Profiler::Clock::now();
    inner_->wait();
    blocked_ += std::chrono::duration<double>(Profiler::Clock::now() - t0).count();
    done();
  }
  bool test() override {
    const bool d = inner_->test();
    if (d) done();
    return d;
  }

 private:
  void done() {
    if (reported_) return;
    reported_ = true;
    prof_.add_comm(group_, op_, bytes_, issued_, Profiler::Clock::now(), blocked_);
  }
  WorkHandle inner_;
  Profiler& prof_;
  const std::string& group_;
  CommOp op_;
  double bytes_;
  double blocked_ = 0;  // seconds inside wait()
  Profiler::Clock::time_point issued_;
  bool reported_ = false;
};

}  // namespace

WorkHandle RecordingCommunicator::wrap(WorkHandle w, CommOp op, double bytes) {
  return std::make_unique<RecordingWork>(std::move(w), prof_, inner_.name(), op, bytes);
}

WorkHandle RecordingCommunicator::all_reduce(Tensor t, ReduceOp op) {
  const double b = static_cast<double>(t.bytes());
  return wrap(inner_.all_reduce(std::move(t), op), CommOp::all_reduce, b);
}
WorkHandle RecordingCommunicator::reduce_scatter(Tensor in, Tensor out, ReduceOp op, std::vector<int64_t> counts) {
  const double b = static_cast<double>(in.bytes());
  return wrap(inner_.reduce_scatter(std::move(in), std::move(out), op, std::move(counts)), CommOp::reduce_scatter, b);
}
WorkHandle RecordingCommunicator::all_gather(Tensor in, Tensor out, std::vector<int64_t> counts) {
  const double b = static_cast<double>(out.bytes());
  return wrap(inner_.all_gather(std::move(in), std::move(out), std::move(counts)), CommOp::all_gather, b);
}
WorkHandle RecordingCommunicator::broadcast(Tensor t, int root) {
  const double b = static_cast<double>(t.bytes());
  return wrap(inner_.broadcast(std::move(t), root), CommOp::broadcast, b);
}
WorkHandle RecordingCommunicator::send(Tensor t, int peer, int tag) {
  const double b = static_cast<double>(t.bytes());
  return wrap(inner_.send(std::move(t), peer, tag), CommOp::p2p, b);
}
WorkHandle RecordingCommunicator::recv(Tensor t, int peer, int tag) {
  const double b = static_cast<double>(t.bytes());
  return wrap(inner_.recv(std::move(t), peer, tag), CommOp::p2p, b);
}
WorkHandle RecordingCommunicator::barrier() { return wrap(inner_.barrier(), CommOp::barrier, 0); }
WorkHandle RecordingCommunicator::batch_p2p(std::vector<P2POp> ops) {
  double b = 0;
  for (const P2POp& o : ops) b += static_cast<double>(o.tensor.bytes());
  return wrap(inner_.batch_p2p(std::move(ops)), CommOp::p2p, b);  // one grouped transfer
}

RecordedGroups::RecordedGroups(const Groups& inner, Profiler& profiler) : groups_(inner) {
  auto rec = [&](Communicator* c) -> Communicator* {
    owned_.push_back(std::make_unique<RecordingCommunicator>(*c, profiler));
    return owned_.back().get();
  };
  groups_.dp = rec(inner.dp);
  groups_.tp = rec(inner.tp);
  groups_.pp = rec(inner.pp);
  groups_.embed = rec(inner.embed);
}

}  // namespace dtrain
