// Measures all-reduce latency and bandwidth through MpiCommunicator against
// plain MPI, its reduce-scatter (a ring of its own) against Open MPI's, and
// what the arrival notices (the timeout diagnosis of
// lib/dist/arrival_board.h) cost: the same all-reduce with notices on and off.
// Run it under mpirun (2 ranks for the committed table):
//   mpirun --allow-run-as-root -np 2 build/comm_bench [--quick]
// Each case runs in several rounds interleaved with the others, and the table
// shows the best round (the slowest rank's time in it): on a shared 2-core
// machine other jobs take a core now and then, which only ever adds time.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "core/format_bytes.h"
#include "dist/arrival_board.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_runtime.h"

using namespace dtrain;

namespace {

// Seconds per call of f over iters calls, the slowest rank's.
double time_per_call(MPI_Comm comm, int iters, const std::function<void()>& f) {
  MPI_Barrier(comm);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
  MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, comm);
  return s;
}

double best(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

double load_average() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}


}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int p = mpi.world_size();
  const bool root = mpi.world_rank() == 0;
  const int rounds = quick ? 5 : 15;

  MpiCommOptions on, off;
  off.arrival_notices = false;
  MpiCommunicator with(MPI_COMM_WORLD, "with", on), without(MPI_COMM_WORLD, "without", off);
  MPI_Comm raw;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);

  if (root) {
    std::printf("%s; %d ranks; best of %d rounds; load average %.2f at the start\n",
                mpi.describe().c_str(), p, rounds, load_average());
    std::printf("times are per all-reduce (fp32 sum, in place), waited at once\n");
    std::printf("bus bandwidth = 2(p-1)/p x bytes / time (the ring all-reduce's traffic per rank)\n\n");
    std::printf("| %-9s | %11s | %11s | %11s | %11s | %12s | %10s |\n", "size", "MPI_Allreduce",
                "Iallreduce", "dtrain off", "dtrain on", "notice cost", "bus GB/s");
    std::printf("|-----------|--------------:|------------:|------------:|------------:|-------------:|-----------:|\n");
  }
  const double bus = 2.0 * (p - 1) / p;
  for (int64_t n : {int64_t{1}, int64_t{256}, int64_t{16} << 10, int64_t{256} << 10,
                    int64_t{4} << 20, int64_t{16} << 20}) {
    const double bytes = static_cast<double>(n) * 4;
    // About 64 MiB of traffic per round, between 10 and 4000 calls.
    int iters = static_cast<int>(std::clamp((quick ? 16.0 : 64.0) * (1 << 20) / bytes, 10.0, 4000.0));
    Tensor t = Tensor::zeros({n}, DType::f32);
    float* data = t.data<float>();
    std::vector<double> t_raw, t_nb, t_off, t_on;
    for (int round = 0; round < rounds; ++round) {
      t_raw.push_back(time_per_call(raw, iters, [&] {
        MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, raw);
      }));
      t_nb.push_back(time_per_call(raw, iters, [&] {
        MPI_Request r;
        MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, raw, &r);
        MPI_Wait(&r, MPI_STATUS_IGNORE);
      }));
      t_off.push_back(time_per_call(raw, iters, [&] { without.all_reduce(t, ReduceOp::sum)->wait(); }));
      t_on.push_back(time_per_call(raw, iters, [&] { with.all_reduce(t, ReduceOp::sum)->wait(); }));
    }
    double a = best(t_raw), b = best(t_nb), c = best(t_off), d = best(t_on);
    if (root)
      std::printf("| %-9s | %10.1f us | %8.1f us | %8.1f us | %8.1f us | %+9.1f us | %10.2f |\n",
                  format_bytes(bytes).c_str(), a * 1e6, b * 1e6, c * 1e6, d * 1e6, (d - c) * 1e6,
                  bus * bytes / d / 1e9);
  }
  // Reduce-scatter: Open MPI's non-blocking call against dtrain's ring
  // (lib/dist/mpi_ring.h), with the all-reduce of the same tensor (twice
  // the traffic) beside them.
  if (root) {
    std::printf("\nreduce-scatter of the whole tensor (fp32 sum), waited at once; bus bandwidth = (p-1)/p x bytes / time;\n"
                "dtrain's reduce_scatter is its ring from 1 MiB (MpiCommOptions::ring_reduce_scatter_bytes), MPI's below\n\n");
    std::printf("| %-9s | %21s | %13s | %13s | %11s | %10s |\n", "size", "MPI_Ireduce_scatter_block",
                "dtrain", "Iallreduce", "dtrain GB/s", "speed-up");
    std::printf("|-----------|--------------------------:|--------------:|--------------:|------------:|-----------:|\n");
  }
  for (int64_t n : {int64_t{16} << 10, int64_t{256} << 10, int64_t{1} << 20, int64_t{4} << 20, int64_t{16} << 20}) {
    const int64_t part = n / p;
    const int64_t total = part * p;
    const double bytes = static_cast<double>(total) * 4;
    int iters = static_cast<int>(std::clamp((quick ? 16.0 : 64.0) * (1 << 20) / bytes, 5.0, 4000.0));
    Tensor in = Tensor::zeros({total}, DType::f32), out = Tensor::zeros({part}, DType::f32);
    Tensor all = Tensor::zeros({total}, DType::f32);
    std::vector<double> t_mpi, t_ring, t_all;
    for (int round = 0; round < rounds; ++round) {
      t_mpi.push_back(time_per_call(raw, iters, [&] {
        MPI_Request r;
        MPI_Ireduce_scatter_block(in.raw(), out.raw(), static_cast<int>(part), MPI_FLOAT, MPI_SUM, raw, &r);
        MPI_Wait(&r, MPI_STATUS_IGNORE);
      }));
      t_ring.push_back(time_per_call(raw, iters, [&] { without.reduce_scatter(in, out, ReduceOp::sum)->wait(); }));
      t_all.push_back(time_per_call(raw, iters, [&] {
        MPI_Request r;
        MPI_Iallreduce(MPI_IN_PLACE, all.raw(), static_cast<int>(total), MPI_FLOAT, MPI_SUM, raw, &r);
        MPI_Wait(&r, MPI_STATUS_IGNORE);
      }));
    }
    const double a = best(t_mpi), b = best(t_ring), c = best(t_all);
    if (root)
      std::printf("| %-9s | %22.1f us | %10.1f us | %10.1f us | %11.2f | %9.2fx |\n", format_bytes(bytes).c_str(),
                  a * 1e6, b * 1e6, c * 1e6, (p - 1.0) / p * bytes / b / 1e9, a / b);
  }
  // The notices alone: a barrier, the smallest collective, with and without.
  std::vector<double> b_off, b_on;
  for (int round = 0; round < rounds; ++round) {
    b_off.push_back(time_per_call(raw, 2000, [&] { without.barrier()->wait(); }));
    b_on.push_back(time_per_call(raw, 2000, [&] { with.barrier()->wait(); }));
  }
  if (root)
    std::printf("\nbarrier: %.1f us without notices, %.1f us with (%+.1f us)\n", best(b_off) * 1e6,
                best(b_on) * 1e6, (best(b_on) - best(b_off)) * 1e6);
  // The notices alone, without a collective: announce (send size-1 notices
  // and take in those that came) per call, everyone at the same pace.
  {
    MPI_Comm c;
    MPI_Comm_dup(MPI_COMM_WORLD, &c);
    detail::ArrivalBoard board(c, mpi.world_rank(), p);
    int64_t seq = 0;
    std::vector<double> t;
    for (int round = 0; round < rounds; ++round)
      t.push_back(time_per_call(raw, 10000, [&] {
        ++seq;
        board.announce({seq, 1, 1024, 0});
      }));
    // Let every notice arrive before the board goes.
    MPI_Barrier(raw);
    board.drain();
    if (root)
      std::printf("arrival notices alone: %.2f us per collective (%d notices sent, %d taken in)\n",
                  best(t) * 1e6, p - 1, p - 1);
  }
  MPI_Comm_free(&raw);
  return 0;
}
