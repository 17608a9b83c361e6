// The MPI communicator's reduce-scatter: a ring of point-to-point messages on
// the group's own communicator. Open MPI 4.1's non-blocking
// MPI_Ireduce_scatter (libnbc, which has no algorithm to choose) took 2-3x
// as long as an MPI_Iallreduce of the same tensor, which moves twice the
// bytes; the ring takes about half of the all-reduce
// (tools/bench/parallel_results.md, "reduce-scatter"). Member r ends with
// part r: the partial sum of part c starts at member c + 1 and travels the
// ring, each member adding its own part, so every element is reduced in the
// same fixed order on every run (((x_{c+1} + x_{c+2}) + ...) + x_c).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/comm.h"
#include "core/tensor.h"

namespace dtrain::detail {

// b[i] = a[i] op b[i] for n elements of type t, as the MPI op (and, for
// bf16, the group's bf16 op: in fp32, rounded once) would.
void reduce_into(DType t, ReduceOp op, const void* a, void* b, int64_t n);

class RingReduceScatter {
 public:
  // parts: elements per member; in holds their sum, out this member's part
  // (out may be the start of in); type: MPI's for one element (counts stay
  // in elements, which the caller bounds to int). scratch: at least scratch_bytes(parts, t)
  // bytes that nothing else uses until the ring is done. Nothing is posted
  // until start().
  RingReduceScatter(MPI_Comm comm, int rank, int size, int tag, DType t, MPI_Datatype type, ReduceOp op,
                    const void* in, void* out, std::vector<int> parts, Tensor scratch);
  static size_t scratch_bytes(const std::vector<int>& parts, DType t);
  // Posts the first step (or, alone in the group, copies the part): an MPI
  // error code.
  int start();
  // Advances: when the step in flight has arrived, adds this member's
  // contribution and posts the next. Sets *done after the last. An MPI error code.
  int progress(bool* done);
  // The requests in flight (MPI_REQUEST_NULL when none) and the buffer they
  // use, for a Work dropped before completion to hand over.
  MPI_Request* requests() { return requests_; }
  Tensor scratch() const { return scratch_; }

 private:
  int post();
  const std::byte* in_part(int member) const { return in_ + offsets_[member] * esize_; }

  MPI_Comm comm_;
  int rank_, size_, tag_;
  DType dtype_;
  MPI_Datatype type_;
  ReduceOp op_;
  const std::byte* in_;
  std::byte* out_;
  std::vector<int> parts_;
  std::vector<int64_t> offsets_;
  size_t esize_;
  Tensor scratch_;  // two buffers of the largest part: the partial sent, the one received
  std::byte* send_ = nullptr;
  std::byte* recv_ = nullptr;
  int step_ = 0;
  MPI_Request requests_[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
};

}  // namespace dtrain::detail
