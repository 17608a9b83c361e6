// NcclCommunicator: core's Communicator for tensors on a GPU over NCCL, one
// per mesh group, all split from one world communicator that an NcclRuntime
// owns. No NCCL header here (only nccl_communicator.cpp includes nccl.h).
//
// - Bootstrap: world rank 0's ncclGetUniqueId goes out with MPI_Bcast;
//   ncclCommInitRankConfig is non-blocking (config.blocking = 0: what makes
//   ncclCommAbort safe from the watchdog's thread), and every call that
//   returns ncclInProgress is settled by polling ncclCommGetAsyncError up to
//   the timeout. Groups are ncclCommSplit(world, color, key) with the mesh's
//   colors (mesh_splits), so each equals the MPI group of the same name.
// - Device-ordered: an operation records an event on the compute stream,
//   makes the group's communication stream wait on it, issues the NCCL call
//   there and records `done`; Work::wait() makes the compute stream wait on
//   `done` (the host does not block), Work::test() queries it.
// - The MPI twin (the mesh's MpiCommunicator of the same group) carries host
//   tensors and the barrier, and every device collective is announced on its
//   arrival board, so a timeout names the ranks that did not arrive.
// - Uneven all_gather / reduce_scatter (ZeRO-1's short last range): one
//   ncclBroadcast / ncclReduce per member inside ncclGroupStart/End; equal
//   parts use ncclAllGather / ncclReduceScatter. Point-to-point: ncclSend /
//   ncclRecv, grouped by batch_p2p (NCCL matches by order, not by tag).
// - Hangs: the runtime's watchdog thread (comm_watchdog.h) polls the works'
//   events and the communicators' async errors every 100 ms; past the timeout
//   it aborts every communicator, and the next call on the main thread (or
//   NcclRuntime::check) throws the failure.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "dist/mpi_communicator.h"

namespace dtrain {

namespace detail {
struct NcclState;
}

class NcclCommunicator;

// The job's NCCL: the world communicator, the groups split from it, the
// watchdog. One per process; outlives its communicators' Works.
class NcclRuntime {
 public:
  // Collective over the world twin's ranks (all of MPI_COMM_WORLD): makes the
  // world communicator on GPU `device` (this thread's current device after).
  NcclRuntime(int device, MpiCommunicator& world_twin, double timeout_s);
  ~NcclRuntime();  // stops the watchdog; destroys the communicators (aborts them after a failure)
  NcclRuntime(const NcclRuntime&) = delete;
  NcclRuntime& operator=(const NcclRuntime&) = delete;

  // Collective over the world: the group of the ranks with this color
  // (ordered by key); null where color < 0. twin: the MPI group of the same
  // members (host tensors, arrival notices); must outlive the result.
  std::unique_ptr<NcclCommunicator> split(const std::string& name, int color, int key,
                                          MpiCommunicator& twin);
  // The world communicator itself as a group (twin: the world's MPI group).
  std::unique_ptr<NcclCommunicator> world(MpiCommunicator& twin);

  // Throws the watchdog's failure (timeout or NCCL error), naming the
  // collective, the group and the ranks that did not arrive. Main thread.
  void check();
  bool failed() const;
  void set_timeout(double seconds);

 private:
  std::shared_ptr<detail::NcclState> s_;
};

class NcclCommunicator : public Communicator {
 public:
  ~NcclCommunicator() override;

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
  WorkHandle batch_p2p(std::vector<P2POp> ops) override;
  WorkHandle barrier() override;
  void set_compute_stream(void* stream) override;

  void set_timeout(double seconds) override;
  const CommStats& stats() const override;

  // The group's communication stream (cudaStream_t).
  void* comm_stream() const;

  struct Impl;  // nccl_communicator.cpp

 private:
  friend class NcclRuntime;
  explicit NcclCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> p_;
};

// "NCCL 2.28.9 (compiled 2.28.9)": for `dtrain --version --verbose`.
std::string nccl_report();
// Throws RuntimeError when the loaded NCCL's major version differs from the
// compiled one's (a mismatched library would fail in obscure ways later).
void nccl_check_version();
// The NCCL version code (major * 10000 + minor * 100 + patch) -> "2.28.9";
// whether two codes share a major version.
std::string nccl_version_string(int code);
bool nccl_same_major(int compiled, int loaded);

}  // namespace dtrain
