// Data-parallel gradient reduction that overlaps the backward pass. The flat
// gradient buffer is cut into buckets (contiguous ranges, about
// parallel.bucket_mb each). Parameters are laid out in the order their layers
// were built, so when the backward pass has finished top-level layer i, every
// gradient from that layer's first parameter to the end of the buffer is
// final, and each bucket wholly inside that range starts its all-reduce
// while the backward of the earlier layers goes on. Polling the pending
// operations between layers lets MPI progress them.
#pragma once

#include <cstdint>
#include <vector>

#include "core/comm.h"
#include "model/param.h"

namespace dtrain {

class GradReducer {
 public:
  // dp: the data-parallel group (one member: nothing to do).
  GradReducer(ParamStore& params, Communicator& dp, double bucket_mb);

  // Called at the start of the backward pass that completes the step's
  // gradients.
  void begin();
  // Every gradient at flat offset >= `offset` is final: start the buckets
  // that lie wholly inside [offset, end). Also drives pending operations.
  void ready_from(int64_t offset);
  // Starts what is left and waits for every bucket. Returns the seconds spent
  // waiting here (the part of the reduction not hidden behind the backward).
  double finish();

  int64_t buckets() const { return static_cast<int64_t>(bounds_.size()) - 1; }
  // Flat offset of the first element of the parameter params.all()[index]
  // (the end of the buffer for index == size): what ready_from takes.
  int64_t offset_of_param(size_t index) const;

 private:
  ParamStore& params_;
  Communicator& dp_;
  std::vector<int64_t> bounds_;  // bucket b is [bounds_[b], bounds_[b+1])
  int64_t next_ = 0;             // buckets [next_, end) are started (from the back)
  std::vector<WorkHandle> pending_;
};

}  // namespace dtrain
