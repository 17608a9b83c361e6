// The communicator interface: collectives and point-to-point transfers over a
// group of ranks, in tensors, as PyTorch's c10d does it. Every operation is
// non-blocking and returns a Work handle to wait on, which is what lets the
// gradient reduction of data parallelism run while the backward pass goes on.
// It lives in core (it speaks only tensors and groups) so that layers
// (tensor-parallel all-reduces) and the step loop use it without depending on
// MPI; the MPI implementation lives in lib/dist, NCCL's will sit beside it.
//
// Contract for every implementation:
// - A group has size() members numbered 0..size()-1; world_rank(r) maps them
//   to ranks of the whole job (for messages that name ranks).
// - Tensors are handles: the Work keeps what it uses alive until completion.
//   The caller must not touch an output (or an in-place input) before wait().
// - Collectives are called by every member in the same order (as in MPI/NCCL).
// - wait() throws RuntimeError when the operation does not complete within the
//   group's timeout, naming the operation, the group and the ranks that did
//   not arrive; a hang never goes unreported.
// - Tensors on a GPU: the communicator reads them after the work already
//   enqueued on the compute stream it was given (set_compute_stream), and
//   wait() orders the result before later work on that stream (NCCL: the
//   stream waits on an event, the host does not block; the MPI-staged path:
//   the copy back is complete when wait() returns).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dtrain {

enum class ReduceOp : uint8_t { sum, max, min };
const char* reduce_op_name(ReduceOp op);

// One transfer of a batch of point-to-point operations (batch_p2p).
struct P2POp {
  enum class Kind : uint8_t { send, recv };
  Kind kind = Kind::send;
  Tensor tensor;
  int peer = 0;  // group member
  int tag = 0;
};

// A pending operation.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until complete (throws RuntimeError on timeout or failure).
  virtual void wait() = 0;
  // True once complete; also drives progress (call it between layers).
  virtual bool test() = 0;
};
using WorkHandle = std::unique_ptr<Work>;

// What a communicator did so far, for the profiler.
struct CommStats {
  int64_t ops = 0;         // operations issued
  double bytes = 0;        // payload bytes handed to the operations
  double wait_seconds = 0; // time spent blocked in wait()
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "world", "dp", "tp", "pp", "embed", ...: used in messages and profiles.
  virtual const std::string& name() const = 0;
  // The job-wide rank of group member r.
  virtual int world_rank(int r) const = 0;

  // In place: every member's t becomes op over all members' t.
  virtual WorkHandle all_reduce(Tensor t, ReduceOp op) = 0;
  // in: sum(counts) elements (counts[r] per member; empty = size() equal parts
  // of in.numel()); out: this member's counts[rank()] elements of op over all
  // members' in, taken from the member's part.
  virtual WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op,
                                    std::vector<int64_t> counts = {}) = 0;
  // in: counts[rank()] elements; out: sum(counts), member r's in at offset
  // sum(counts[0..r)). Empty counts = equal parts of out.numel().
  virtual WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts = {}) = 0;
  virtual WorkHandle broadcast(Tensor t, int root) = 0;
  // Point to point within the group; tags separate concurrent streams.
  virtual WorkHandle send(Tensor t, int peer, int tag) = 0;
  virtual WorkHandle recv(Tensor t, int peer, int tag) = 0;
  virtual WorkHandle barrier() = 0;
  // Sends and receives issued together, completing together: what a pipeline
  // stage's "send to the next, receive from the next" needs without
  // deadlocking on a library that matches by order (NCCL groups them in one
  // ncclGroupStart/End). Default: each posted with send/recv (MPI's Isend +
  // Irecv), one Work that waits for all.
  virtual WorkHandle batch_p2p(std::vector<P2POp> ops);

  // The compute stream (cudaStream_t) whose work produces and consumes the
  // device tensors given to this communicator; null = the device's default
  // stream. Communicators of host tensors ignore it.
  virtual void set_compute_stream(void* stream) { (void)stream; }

  // Seconds an operation may take before wait() reports the hang.
  virtual void set_timeout(double seconds) = 0;
  virtual const CommStats& stats() const = 0;
};

// The group of one rank: every collective is the identity (or a copy), done
// at once. What a layer gets when its dimension is not parallelised.
std::unique_ptr<Communicator> make_self_communicator(const std::string& name, int world_rank = 0);

// Blocking helpers.
inline void all_reduce(Communicator& c, Tensor t, ReduceOp op = ReduceOp::sum) {
  c.all_reduce(std::move(t), op)->wait();
}

}  // namespace dtrain
