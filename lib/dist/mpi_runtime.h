// MpiRuntime: MPI's lifetime as an object. main() makes one before anything
// talks to MPI and it finalises MPI when it goes out of scope, so the library
// keeps no global "is MPI up" flag of its own. It asks for
// MPI_THREAD_FUNNELED: OpenMP threads exist, but only the main thread calls
// MPI. Errors on the world (and on every communicator lib/dist creates) are
// returned, not fatal, and become RuntimeError. With Open MPI it selects the
// ring algorithm for non-blocking all-reduce unless the environment sets
// OMPI_MCA_coll_libnbc_iallreduce_algorithm (see mpi_runtime.cpp).
//
// Failure and exit: MPI_Finalize waits for every rank, and Open MPI's does so
// in a way that neither times out nor notices an MPI_Abort elsewhere. So the
// destructor first waits, polling, at most finalize_timeout() seconds for
// every rank to come to a barrier (a rank killed meanwhile by an abort dies
// there), and if they do not all come it leaves without MPI_Finalize, which
// makes the launcher end the job with an error. An app that caught a
// communicator failure may therefore simply return its error status; it may
// also end the whole job at once with MPI_Abort(MPI_COMM_WORLD, code). lib/
// never aborts: that is the app's decision.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace dtrain {

class MpiRuntime {
 public:
  // Initialises MPI (or adopts it, without finalising, if someone already did).
  MpiRuntime();
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return rank_; }
  int world_size() const { return size_; }
  // How many ranks share this rank's node (shared memory). Collective: every
  // rank of the world calls it.
  int ranks_on_node() const;
  // This rank's index among the ranks of its node (0 .. ranks_on_node - 1):
  // which GPU of the node it takes. Collective, like ranks_on_node.
  int local_rank() const;
  // The cores this rank's threads may use: each core of its CPU affinity
  // shared out among the ranks of its node that may run on it too, at least
  // 1. A launcher that binds every rank to cores of its own gives each all of
  // its own; ranks whose affinities overlap (bound to one socket, or left
  // unbound: Open MPI with more ranks than slots, mpirun --bind-to none) get
  // a share each, rather than a thread per core every one. Collective, like
  // ranks_on_node.
  int cores_for_rank() const;
  // How many ranks of this rank's node (itself included) give the same `key`
  // (up to 63 bytes): a GPU's bus id, for the ranks that share one device.
  // Collective, like ranks_on_node.
  int ranks_on_node_with(const std::string& key) const;
  // True under a launcher (mpirun/mpiexec, srun); false for a singleton.
  bool launched() const { return !launcher_.empty(); }
  // "mpirun", "srun" or "" (a plain process: a one-rank singleton).
  const std::string& launcher() const { return launcher_; }
  // "Open MPI v4.1.4, rank 0 of 4 (mpirun)": for --verbose.
  std::string describe() const;
  // How long the destructor waits for the other ranks before finalising
  // (default 300 s).
  double finalize_timeout() const { return finalize_timeout_; }
  void set_finalize_timeout(double seconds);

 private:
  void init(int* argc, char*** argv);
  template <class T>
  std::vector<T> gather_on_node(const T* mine, size_t count) const;

  bool owns_ = false;
  MPI_Comm exit_comm_ = MPI_COMM_NULL;  // the destructor's barrier (a dup of the world)
  double finalize_timeout_ = 300;
  int rank_ = 0;
  int size_ = 1;
  std::string launcher_;
  std::string library_;
};

// Where a launcher started this process, from the environment alone, without
// initialising MPI (which costs about 0.4 s): for the commands that need no
// MPI (validate, plan, inspect, ...) but still run once per rank under
// mpirun/srun and print on rank 0 only. Open MPI (OMPI_COMM_WORLD_RANK/SIZE),
// MPICH/Hydra (PMI_RANK/PMI_SIZE) and Slurm's srun (SLURM_PROCID,
// SLURM_STEP_NUM_TASKS or SLURM_NTASKS); a plain process is rank 0 of 1.
struct LaunchInfo {
  int rank = 0;
  int size = 1;
  std::string launcher;  // "mpirun", "srun" or "", as MpiRuntime::launcher()
};
LaunchInfo launch_info();

// Throws RuntimeError "MPI_X failed: <MPI's message>" when rc is not
// MPI_SUCCESS.
void mpi_check(int rc, const char* call);

}  // namespace dtrain
