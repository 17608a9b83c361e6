// The insides of MpiCommunicator, shared by its operations
// (mpi_communicator.cpp) and their Work (mpi_group.cpp): the group's state,
// how an operation is described in traces and errors, and the Work that polls
// MPI_Test against the timeout. The Work holds the group by shared_ptr, so a
// Work may outlive its communicator.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "dist/arrival_board.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_ring.h"

namespace dtrain::detail {

enum class OpKind : int64_t { all_reduce = 1, reduce_scatter, all_gather, broadcast, barrier, send, recv };
const char* op_kind_name(OpKind k);

// One operation, as traces, messages and arrival notices describe it.
struct OpInfo {
  OpKind kind = OpKind::barrier;
  DType dtype = DType::f32;
  int64_t count = 0;  // elements; for collectives the same on every member
  ReduceOp reduce = ReduceOp::sum;
  int member = -1;    // broadcast root, send/recv peer
  int tag = 0;
  int64_t seq = 0;    // collectives: the group's number for it, from 1
  bool uneven = false;

  bool collective() const { return kind != OpKind::send && kind != OpKind::recv; }
  bool reduces() const { return kind == OpKind::all_reduce || kind == OpKind::reduce_scatter; }
  Notice notice() const;
  static OpInfo from(const Notice& n);
};

// An operation whose Work was dropped before it completed: MPI still owns its
// request and buffers, so the group keeps them until MPI is done with them.
struct Orphan {
  MPI_Request request;
  bool receive;  // a point-to-point receive, which MPI can cancel
  Tensor a, b;
  std::vector<int> counts, displs;
};

struct MpiGroup {
  MPI_Comm comm = MPI_COMM_NULL;  // owned
  // The reduce-scatter ring's messages (mpi_ring.h), apart from the
  // members' own sends and receives on comm; owned, made when size > 1.
  MPI_Comm ring = MPI_COMM_NULL;
  // Scratch buffers of finished rings, reused (a fresh one of 64 MiB costs
  // its page faults on every reduce-scatter): at most kRingBuffers kept.
  static constexpr size_t kRingBuffers = 4;
  std::vector<Tensor> ring_buffers;
  Tensor ring_buffer(size_t bytes);       // a kept one at least that large, or a new one
  void keep_ring_buffer(Tensor buffer);
  std::string name;
  int rank = 0;
  int size = 1;
  int tag_ub = 32767;
  std::vector<int> world_ranks;
  double timeout = 300;
  CommTrace trace;
  std::function<void(const std::string&)> on_blocked;  // MpiCommOptions::on_blocked
  double blocked_after_s = 1;
  CommStats stats;
  int64_t seq = 0;  // collectives issued
  size_t ring_bytes = 0;  // MpiCommOptions::ring_reduce_scatter_bytes
  std::unique_ptr<ArrivalBoard> board;  // null when notices are off or size == 1
  std::string failure;  // the first failure; non-empty = unusable
  std::vector<Orphan> orphans;
  // Reductions of bf16 tensors (MPI has no bf16): each pair of elements
  // summed (or compared) in fp32 and rounded once. Indexed by ReduceOp.
  MPI_Op bf16_ops[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};
  // Host staging of device tensors (staging.h): made on the first device
  // tensor; `staging_inner` while a staged operation posts its host one.
  void* compute_stream = nullptr;
  std::shared_ptr<StagingCopier> copier;
  bool copier_given = false;  // by set_staging (else made for the compute stream)
  StagingPool::Allocate staging_allocate;
  std::shared_ptr<StagingPool> pool;
  bool staging_inner = false;

  // Takes comm (sets MPI_ERRORS_RETURN on it); collective over comm when it
  // has more than one member (it duplicates comm for the ring, and for the
  // notices when they are on).
  MpiGroup(MPI_Comm comm, std::string name, const MpiCommOptions& options);
  ~MpiGroup();
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  void reap_orphans();
  // "all_reduce of 1024 fp32 (sum)"
  std::string what(const OpInfo& op) const;
  // "all_reduce of 1024 fp32 (sum) on group 'dp' (collective #17; world ranks 0, 2)"
  std::string where(const OpInfo& op) const;
  // "rank 3 dp#17 all_reduce 1024 fp32 sum"
  std::string trace_line(const OpInfo& op) const;
  // Records the first failure (later operations refuse to start) and throws.
  [[noreturn]] void fail(const std::string& message);
  void check_usable() const;
  // Why a timed-out operation did not complete: who did not arrive, or who
  // called something else under its number; when every member arrived and
  // this one has waited `waited_s` (at least kSilentSeconds), who has sent
  // nothing since (no heartbeat: stopped, dead, or blocked elsewhere).
  static constexpr double kSilentSeconds = 3;
  std::string diagnose(const OpInfo& op, double waited_s = 0);
  // Fails when the notices showed a member that called a different
  // collective under some number than this member did.
  void check_mismatch();

 private:
  std::string member_name(int m) const;
};

class MpiWork : public Work {
 public:
  MpiWork(std::shared_ptr<MpiGroup> g, OpInfo op, Tensor a, Tensor b)
      : g_(std::move(g)), op_(op), a_(std::move(a)), b_(std::move(b)) {}
  ~MpiWork() override;

  bool test() override;
  void wait() override;

  MPI_Request* request() { return &request_; }
  // Makes this Work the ring's (instead of one MPI request's); returns its
  // start's MPI error code.
  int run(std::unique_ptr<RingReduceScatter> ring);
  // Count and displacement arrays that MPI reads until the operation completes.
  std::vector<int>& counts() { return counts_; }
  std::vector<int>& displs() { return displs_; }

 private:
  bool poll();
  void orphan_ring();  // hands the ring's requests in flight to the group

  std::shared_ptr<MpiGroup> g_;
  OpInfo op_;
  Tensor a_, b_;  // kept alive until MPI is done with them
  std::vector<int> counts_, displs_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::unique_ptr<RingReduceScatter> ring_;
  bool done_ = false;
};

}  // namespace dtrain::detail
