// A job in which the last rank misbehaves at the second all-reduce of the dp
// group, for tests/dist/fault.sh:
//   late      it arrives 5 s late (the timeout is 1 s)
//   skip      it never calls the all-reduce and goes on to finalise
//   mismatch  it calls a broadcast instead
//   kill      it dies by SIGKILL
//   exit      it leaves with _exit(0), without MPI_Finalize
// The other ranks print what they caught (with the time it took) and end the
// job with MPI_Abort, or with a second argument "return", return 1 from main
// (MpiRuntime then waits a bounded time for the others before finalising).
// A third argument sets the timeout in seconds (default 1; 60 for kill and
// exit, where mpirun is expected to end the job first).
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <thread>

#include "dist/mesh.h"
#include "dist/mpi_runtime.h"

int main(int argc, char** argv) {
  using namespace dtrain;
  MpiRuntime mpi(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool abort = !(argc > 2 && std::string(argv[2]) == "return");
  mpi.set_finalize_timeout(5);
  const int rank = mpi.world_rank(), size = mpi.world_size();
  const int bad = size - 1;
  const bool dies = mode == "kill" || mode == "exit";
  MpiCommOptions options;
  options.timeout_seconds = argc > 3 ? std::atof(argv[3]) : dies ? 60 : 1;
  auto start = std::chrono::steady_clock::now();
  try {
    Mesh mesh(MeshLayout{size, 1, 1}, options);
    Communicator& dp = mesh.dp_group();
    Tensor t = Tensor::zeros({1024}, DType::f32);
    dp.all_reduce(t, ReduceOp::sum)->wait();
    start = std::chrono::steady_clock::now();
    if (rank != bad) {
      dp.all_reduce(t, ReduceOp::sum)->wait();
    } else if (mode == "late") {
      std::this_thread::sleep_for(std::chrono::seconds(5));
      dp.all_reduce(t, ReduceOp::sum)->wait();
    } else if (mode == "skip") {
      return 0;
    } else if (mode == "mismatch") {
      dp.broadcast(t, 0)->wait();
    } else if (mode == "kill") {
      std::raise(SIGKILL);
    } else if (mode == "exit") {
      _exit(0);
    }
    dp.all_reduce(t, ReduceOp::sum)->wait();
    std::printf("rank %d: finished\n", rank);
  } catch (const Error& e) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("rank %d caught after %.2f s: %s\n", rank, s, e.what());
    std::fflush(stdout);
    if (abort) MPI_Abort(MPI_COMM_WORLD, 3);
    return 1;
  }
  return 0;
}
