// A Communicator that forwards to another and tells a Profiler about every
// operation from its issue to its completion (when wait() returns or test()
// first says done). `dtrain profile` hands the trainer Groups made of these,
// so every collective and transfer the step loop and the layers issue (dp
// buckets, pipeline sends and receives, tp all-reduces, the tied embedding's
// all-reduce) lands in the trace without the trainer knowing about it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "parallel/layout.h"
#include "train/profiler.h"

namespace dtrain {

class RecordingCommunicator : public Communicator {
 public:
  // inner and profiler outlive this.
  RecordingCommunicator(Communicator& inner, Profiler& profiler) : inner_(inner), prof_(profiler) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  int world_rank(int r) const override { return inner_.world_rank(r); }

  WorkHandle all_reduce(Tensor t, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op, std::vector<int64_t> counts = {}) override;
  WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts = {}) override;
  WorkHandle broadcast(Tensor t, int root) override;
  WorkHandle send(Tensor t, int peer, int tag) override;
  WorkHandle recv(Tensor t, int peer, int tag) override;
  WorkHandle barrier() override;
  WorkHandle batch_p2p(std::vector<P2POp> ops) override;
  void set_compute_stream(void* stream) override { inner_.set_compute_stream(stream); }

  void set_timeout(double seconds) override { inner_.set_timeout(seconds); }
  const CommStats& stats() const override { return inner_.stats(); }

 private:
  WorkHandle wrap(WorkHandle w, CommOp op, double bytes);
  Communicator& inner_;
  Profiler& prof_;
};

// Groups whose communicators (all but world, which the profiler itself uses)
// record into `profiler`.
class RecordedGroups {
 public:
  RecordedGroups(const Groups& inner, Profiler& profiler);
  const Groups& groups() const { return groups_; }

 private:
  std::vector<std::unique_ptr<Communicator>> owned_;
  Groups groups_;
};

}  // namespace dtrain
