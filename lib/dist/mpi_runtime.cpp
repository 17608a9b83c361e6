// MPI initialisation and finalisation, launcher detection and the error check
// that turns MPI's return codes into RuntimeError.
#include "dist/mpi_runtime.h"

#include <mpi.h>

#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "core/error.h"

namespace dtrain {

namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

std::string detect_launcher() {
  if (env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMI_SIZE") || env_set("HYDRA_CONTROL_FD"))
    return "mpirun";
  if (env_set("SLURM_STEP_ID") && env_set("SLURM_PROCID")) return "srun";
  // Not PMIX_RANK: Open MPI's singleton sets it for itself during MPI_Init.
  return "";
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return *end == '\0' && x >= 0 && x < (1L << 30) ? static_cast<int>(x) : fallback;
}

}  // namespace

LaunchInfo launch_info() {
  LaunchInfo li;
  li.launcher = detect_launcher();
  if (env_set("OMPI_COMM_WORLD_SIZE")) {
    li.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    li.size = env_int("OMPI_COMM_WORLD_SIZE", 1);
  } else if (env_set("PMI_SIZE")) {
    li.rank = env_int("PMI_RANK", 0);
    li.size = env_int("PMI_SIZE", 1);
  } else if (li.launcher == "srun") {
    li.rank = env_int("SLURM_PROCID", 0);
    li.size = env_int("SLURM_STEP_NUM_TASKS", env_int("SLURM_NTASKS", 1));
  }
  li.size = std::max(li.size, 1);
  if (li.rank >= li.size) li.rank = 0;
  return li;
}

void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  throw RuntimeError(fmt::format("{} failed: {}", call,
                                 len ? std::string(text, len) : fmt::format("MPI error {}", rc)));
}

MpiRuntime::MpiRuntime() { init(nullptr, nullptr); }
MpiRuntime::MpiRuntime(int* argc, char*** argv) { init(argc, argv); }

void MpiRuntime::init(int* argc, char*** argv) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (finalised) throw RuntimeError("MPI was already finalised: it cannot be started again");
  launcher_ = detect_launcher();  // before MPI_Init, which adds variables of its own
  if (!initialised) {
    // Open MPI's non-blocking all-reduce (libnbc) picks a binomial tree for
    // fewer than 4 ranks or an in-place buffer (dtrain's case), which took
    // 7x longer than the ring for 1 MiB on 2 ranks (apps/bench/comm_bench);
    // ask for the ring unless the user chose. Read by MPI_Init only.
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
    int provided = 0;
    // MPI_Init_thread's failure is fatal under MPI's default handler: nothing to catch.
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    owns_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      owns_ = false;
      throw RuntimeError(
          "the MPI library does not support MPI_THREAD_FUNNELED (OpenMP threads beside MPI)");
    }
  }
  mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &exit_comm_), "MPI_Comm_dup");
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(version, &len) == MPI_SUCCESS) {
    library_.assign(version, len);
    auto cut = library_.find_first_of(",\n");
    if (cut != std::string::npos) library_.resize(cut);
  }
}

MpiRuntime::~MpiRuntime() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  if (!owns_) {
    MPI_Comm_free(&exit_comm_);
    return;
  }
  bool all_came = true;
  if (size_ > 1) {
    // Poll a barrier rather than enter MPI_Finalize, which waits without end.
    MPI_Request barrier = MPI_REQUEST_NULL;
    all_came = MPI_Ibarrier(exit_comm_, &barrier) == MPI_SUCCESS;
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(std::min(finalize_timeout_, 1e9)));
    for (int done = 0; all_came && !done;) {
      all_came = MPI_Test(&barrier, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS &&
                 (done || std::chrono::steady_clock::now() < deadline);
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (!all_came) {
    // A destructor cannot throw, and this is the job's end: say why we leave
    // without MPI_Finalize (the launcher then ends the other ranks).
    std::fprintf(stderr,
                 "dtrain: rank %d: not every rank came to finalise MPI within %g s; leaving "
                 "without MPI_Finalize\n",
                 rank_, finalize_timeout_);
    return;
  }
  MPI_Comm_free(&exit_comm_);
  MPI_Finalize();
}

void MpiRuntime::set_finalize_timeout(double seconds) {
  DTRAIN_CHECK(seconds > 0, "finalize timeout {} s", seconds);
  finalize_timeout_ = seconds;
}

int MpiRuntime::ranks_on_node() const {
  MPI_Comm local = MPI_COMM_NULL;
  mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  int n = 1;
  mpi_check(MPI_Comm_size(local, &n), "MPI_Comm_size");
  MPI_Comm_free(&local);
  return n;
}

int MpiRuntime::local_rank() const {
  MPI_Comm local = MPI_COMM_NULL;
  mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  int r = 0;
  mpi_check(MPI_Comm_rank(local, &r), "MPI_Comm_rank");
  MPI_Comm_free(&local);
  return r;
}

// Every rank of this rank's node gives `count` values of T; all of them, in
// node-rank order. Collective over the world (its split by node).
template <class T>
std::vector<T> MpiRuntime::gather_on_node(const T* mine, size_t count) const {
  MPI_Comm local = MPI_COMM_NULL;
  mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  int n = 1;
  const int size_rc = MPI_Comm_size(local, &n);
  std::vector<T> all(count * static_cast<size_t>(std::max(n, 1)));
  const int bytes = static_cast<int>(count * sizeof(T));
  const int gather_rc = size_rc == MPI_SUCCESS
                            ? MPI_Allgather(mine, bytes, MPI_BYTE, all.data(), bytes, MPI_BYTE, local)
                            : size_rc;
  MPI_Comm_free(&local);  // freed before a failure throws
  mpi_check(gather_rc, "MPI_Allgather");
  return all;
}

int MpiRuntime::cores_for_rank() const {
  // Every rank takes part in the collective, whatever its own affinity reads
  // (a mask past cpu_set_t's 1024 CPUs fails: its rank shares none and falls
  // back to the caller's default).
  cpu_set_t mine;
  CPU_ZERO(&mine);
  const bool known = sched_getaffinity(0, sizeof mine, &mine) == 0;
  if (!known) CPU_ZERO(&mine);
  const std::vector<cpu_set_t> all = gather_on_node(&mine, 1);
  if (!known) return 0;
  double share = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &mine)) continue;
    int users = 0;
    for (const cpu_set_t& s : all) users += CPU_ISSET(cpu, &s) ? 1 : 0;
    share += 1.0 / std::max(users, 1);
  }
  // Rounded down: three ranks on 8 cores take 2 each, not 3 (9 threads on 8).
  return std::max(1, static_cast<int>(std::floor(share + 1e-9)));
}

int MpiRuntime::ranks_on_node_with(const std::string& key) const {
  std::array<char, 64> mine{};
  std::copy_n(key.begin(), std::min(key.size(), mine.size() - 1), mine.begin());
  const std::vector<std::array<char, 64>> all = gather_on_node(&mine, 1);
  return static_cast<int>(std::count(all.begin(), all.end(), mine));
}

std::string MpiRuntime::describe() const {
  return fmt::format("{}, rank {} of {} ({})", library_.empty() ? "MPI" : library_, rank_, size_,
                     launched() ? launcher_ : "singleton");
}

}  // namespace dtrain
