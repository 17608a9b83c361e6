// MpiCommunicator: core's Communicator over an MPI communicator it owns (a
// duplicate or a split of its parent), for CPU tensors of fp32, fp64 and
// int32. Every operation is an MPI non-blocking call (MPI_Iallreduce, ...);
// Work::wait polls MPI_Test against the group's timeout, and on timeout
// throws a RuntimeError that names the operation, the group, its collective
// number and the world ranks that did not arrive (see arrival_board.h).
// After a failure the group refuses further operations: collectives are
// matched by order, so a group that lost one can never be trusted again.
// Tensors on a GPU go through host staging (staging.h, mpi_staging.cpp):
// copied after the compute stream's work into reused pinned buffers, the MPI
// operation on those, the results copied back when the Work completes.
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>

#include "core/comm.h"
#include "dist/staging.h"

namespace dtrain {

// Receives one line per operation issued, e.g. "rank 3 tp#17 all_reduce 4096
// fp32 sum": for debugging a job whose ranks disagree on the order.
using CommTrace = std::function<void(const std::string& line)>;
// A trace that prints each line to stderr.
CommTrace trace_to_stderr();

struct MpiCommOptions {
  double timeout_seconds = 300;  // how long wait() waits before reporting a hang
  // Arrival notices (arrival_board.h): what lets a timeout name the missing
  // ranks. Must be the same on every member.
  bool arrival_notices = true;
  CommTrace trace;  // none: no tracing
  // Reduce-scatters of at least this many bytes (the whole input) run as
  // dtrain's ring (mpi_ring.h); smaller ones as MPI_Ireduce_scatter, whose
  // fewer rounds win where ranks outnumber cores (apps/bench/
  // comm_bench.results.md). Must be the same on every member.
  size_t ring_reduce_scatter_bytes = size_t{1} << 20;
  // Told what a wait is blocked on once it has waited `blocked_after_s`, and
  // again each second after (the operation, its group and the diagnosis a
  // timeout would give: "world rank 1 (last here at #6) did not arrive"),
  // then "" when it completes or fails. From the waiting thread; for whatever
  // must explain a stop while blocked (the run's watchdog). None: not told.
  std::function<void(const std::string& blocked_on)> on_blocked;
  double blocked_after_s = 1;
};

namespace detail {
struct MpiGroup;
struct OpInfo;
}

class MpiCommunicator : public Communicator {
 public:
  // Collective over parent (MPI_Comm_dup): the group of all its ranks.
  MpiCommunicator(MPI_Comm parent, std::string name, MpiCommOptions options = {});
  // Collective over parent (MPI_Comm_split): the ranks that pass the same
  // color, ordered by key. Null for color MPI_UNDEFINED.
  static std::unique_ptr<MpiCommunicator> split(MPI_Comm parent, int color, int key,
                                                std::string name, MpiCommOptions options = {});
  // Takes ownership of comm (freed with the communicator). Collective over
  // comm when it has more than one member (the group duplicates it).
  static std::unique_ptr<MpiCommunicator> adopt(MPI_Comm comm, std::string name,
                                                MpiCommOptions options = {});
  ~MpiCommunicator() override;

  int rank() const override;
  int size() const override;
  const std::string& name() const override;
  int world_rank(int r) const override;

  WorkHandle all_reduce(Tensor t, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op,
                            std::vector<int64_t> counts = {}) override;
  WorkHandle all_gather(Tensor in, Tensor out, std::vector<int64_t> counts = {}) override;
  WorkHandle broadcast(Tensor t, int root) override;
  WorkHandle send(Tensor t, int peer, int tag) override;
  WorkHandle recv(Tensor t, int peer, int tag) override;
  WorkHandle barrier() override;
  void set_compute_stream(void* stream) override;

  // Device tensors are staged through `copier` and buffers from `allocate`
  // (default: the CUDA copier on the compute stream, pinned buffers). Tests
  // pass a copier that stages host tensors, to run the staged path without a
  // GPU.
  void set_staging(std::shared_ptr<StagingCopier> copier, StagingPool::Allocate allocate = {});
  // The staging buffers (null until a device tensor came).
  const StagingPool* staging_pool() const;

  void set_timeout(double seconds) override;
  const CommStats& stats() const override;

  double timeout() const;
  void set_trace(CommTrace trace);
  // The number the next collective gets (collectives are numbered from 1).
  int64_t next_sequence() const;
  // True once an operation failed (timeout or MPI error); further calls throw.
  bool failed() const;
  // The MPI communicator of the data (not the arrival notices).
  MPI_Comm handle() const;

  // For the device communicator (NCCL) whose twin this is, so that its
  // timeouts name the missing ranks as the MPI path does: numbers a
  // collective issued on the device and announces it on the arrival board
  // (sets op.seq; throws when the board shows the members disagree), and
  // later explains a timeout of it ("world rank 1 (last here at #6) did
  // not arrive").
  // Main thread only (MPI_THREAD_FUNNELED).
  void announce_device(detail::OpInfo& op);
  std::string explain_device(const detail::OpInfo& op);
  // "all_reduce of 1024 bf16 (sum)" (with member names for roots and peers).
  std::string describe(const detail::OpInfo& op) const;

 private:
  explicit MpiCommunicator(std::shared_ptr<detail::MpiGroup> group);
  // True when the operation's tensors must be staged (checks they agree).
  bool staged(const char* op, const Tensor& a, const Tensor& b = {});
  WorkHandle staged_all_reduce(Tensor t, ReduceOp op);
  WorkHandle staged_reduce_scatter(Tensor in, Tensor out, ReduceOp op, std::vector<int64_t> counts);
  WorkHandle staged_all_gather(Tensor in, Tensor out, std::vector<int64_t> counts);
  WorkHandle staged_broadcast(Tensor t, int root);
  WorkHandle staged_p2p(Tensor t, int peer, int tag, bool sending);
  std::shared_ptr<detail::MpiGroup> g_;
};

}  // namespace dtrain
