// MpiCommunicator on the world: known answers for every operation, and what
// it reports when a member does not arrive or an argument is wrong.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "collectives.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_runtime.h"
#include "dist_test.h"

namespace dtrain::test {

TEST_CASE("world: every operation gives the known answer") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  CHECK(world.size() == world_size());
  CHECK(world.rank() == world_rank());
  for (int m = 0; m < world.size(); ++m) CHECK(world.world_rank(m) == m);
  check_collectives(world);
  CHECK(world.stats().bytes > 0);
  CHECK(world.stats().wait_seconds >= 0);
}

TEST_CASE("world: a huge timeout does not time out at once (its deadline would overflow nanoseconds)") {
  MpiCommOptions o = test_options();
  o.timeout_seconds = 1e10;  // issue 14: 1e10 s in nanoseconds passes int64; the deadline is clamped
  MpiCommunicator world(MPI_COMM_WORLD, "world", o);
  if (world.size() > 1 && world.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Tensor t = Tensor::zeros({4}, DType::f32);
  t.data<float>()[0] = 1.0f;
  world.all_reduce(t, ReduceOp::sum)->wait();  // waits for the late member instead of failing
  CHECK(t.data<float>()[0] == static_cast<float>(world.size()));
  CHECK(!world.failed());
}

TEST_CASE("world: large all_reduce and overlapping operations") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  const int p = world.size();
  // Several collectives in flight at once, waited in reverse order.
  std::vector<Tensor> ts;
  std::vector<WorkHandle> ws;
  for (int k = 0; k < 4; ++k) {
    ts.push_back(filled<float>(1 << 18, [&](int64_t i) { return world.rank() + k + (i % 3); }));
    ws.push_back(world.all_reduce(ts.back(), ReduceOp::sum));
  }
  for (int k = 3; k >= 0; --k) ws[k]->wait();
  for (int k = 0; k < 4; ++k) {
    int wrong = 0;
    for (int64_t i = 0; i < (1 << 18); ++i)
      wrong += ts[k].data<float>()[i] != static_cast<float>(p * (p - 1) / 2 + p * (k + i % 3));
    CHECK(wrong == 0);
  }
  CHECK(world.next_sequence() == 5);
}

TEST_CASE("world: unsupported dtypes and bad arguments are refused") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  Tensor b = Tensor::zeros({4}, DType::f16);
  CHECK_THROWS_WITH_AS(world.all_reduce(b, ReduceOp::sum),
                       doctest::Contains("fp16 tensors are not supported"), RuntimeError);
  Tensor t = Tensor::zeros({5}, DType::f32);
  CHECK_THROWS_AS(world.broadcast(t, world.size()), InternalError);
  // Refused before numbering: the group is still usable and in step.
  CHECK(world.next_sequence() == 1);
  CHECK_FALSE(world.failed());
  world.barrier()->wait();
}

TEST_CASE("world: bf16 all_reduce sums, maxes and mins in fp32, rounded once") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  const int p = world.size(), r = world.rank();
  Tensor s = Tensor::empty({3}, DType::bf16), mx = Tensor::empty({3}, DType::bf16),
         mn = Tensor::empty({3}, DType::bf16);
  for (int i = 0; i < 3; ++i) {
    s.data<bf16>()[i] = bf16(static_cast<float>(r + i));      // integers: exact in bf16
    mx.data<bf16>()[i] = bf16(static_cast<float>(r * (i + 1)));
    mn.data<bf16>()[i] = bf16(static_cast<float>(-r - i));
  }
  world.all_reduce(s, ReduceOp::sum)->wait();
  world.all_reduce(mx, ReduceOp::max)->wait();
  world.all_reduce(mn, ReduceOp::min)->wait();
  for (int i = 0; i < 3; ++i) {
    CHECK(float(s.data<bf16>()[i]) == static_cast<float>(p * (p - 1) / 2 + p * i));
    CHECK(float(mx.data<bf16>()[i]) == static_cast<float>((p - 1) * (i + 1)));
    CHECK(float(mn.data<bf16>()[i]) == static_cast<float>(-(p - 1) - i));
  }
  // 1 + 2^-8 is not a bf16: each rank's 1 + 2^-7 sums to p + p 2^-7, rounded once.
  Tensor q = Tensor::empty({1}, DType::bf16);
  q.data<bf16>()[0] = bf16(1.0f + 1.0f / 128);
  world.all_reduce(q, ReduceOp::sum)->wait();
  if (p <= 2) CHECK(float(q.data<bf16>()[0]) == static_cast<float>(p) * (1.0f + 1.0f / 128));
}

TEST_CASE("world: the reduce_scatter ring in every reduced type and op, in its fixed order, several in flight") {
  MpiCommOptions ring = test_options();
  ring.ring_reduce_scatter_bytes = 0;  // every reduce-scatter by the ring (large ones are by default)
  MpiCommunicator world(MPI_COMM_WORLD, "world", ring);
  const int p = world.size(), r = world.rank();
  // Equal and uneven parts (one empty), out of place and in place.
  std::vector<int64_t> uneven(p);
  for (int m = 0; m < p; ++m) uneven[m] = m == 1 ? 0 : m + 2;
  for (bool in_place : {false, true}) {
    check_reduce_scatter(world, {}, 5, in_place);
    check_reduce_scatter(world, uneven, 0, in_place);
  }
  // Integers (exact in every type): sum, max and min of (m + 1) (i % 5 + 1) over members m.
  auto check_type = [&](auto zero) {
    using T = decltype(zero);
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
      const int64_t each = 7;
      Tensor in = filled<T>(each * p, [&](int64_t i) { return static_cast<float>((r + 1) * (i % 5 + 1)); });
      Tensor out = Tensor::zeros({each}, dtype_of<T>());
      world.reduce_scatter(in, out, op)->wait();
      const double factor = op == ReduceOp::sum ? p * (p + 1) / 2.0 : op == ReduceOp::max ? p : 1;
      int wrong = 0;
      for (int64_t j = 0; j < each; ++j)
        wrong += static_cast<double>(out.data<T>()[j]) != factor * ((r * each + j) % 5 + 1);
      CHECK_MESSAGE(wrong == 0, "reduce_scatter ", reduce_op_name(op), " ", dtype_name(dtype_of<T>()));
    }
  };
  check_type(float{});
  check_type(double{});
  check_type(int32_t{});
  check_type(bf16{});

  // Rounding shows the order: member r's part c sums ((x_{c+1} + x_{c+2}) + ...) + x_c,
  // bit for bit, and three reduce-scatters in flight at once (waited in reverse) keep
  // their messages apart.
  const int64_t each = 1000;
  auto value = [](int m, int64_t i) { return 0.1f * static_cast<float>(m + 1) + 1e-3f * static_cast<float>(i % 13); };
  std::vector<Tensor> outs;
  std::vector<WorkHandle> ws;
  for (int k = 0; k < 3; ++k) {
    const int64_t n = each * (k + 1);
    outs.push_back(Tensor::zeros({n}, DType::f32));
    ws.push_back(world.reduce_scatter(filled<float>(n * p, [&](int64_t i) { return value(r, i) * (1 << k); }),
                                      outs.back(), ReduceOp::sum));
  }
  for (int k = 2; k >= 0; --k) ws[k]->wait();
  for (int k = 0; k < 3; ++k) {
    const int64_t n = each * (k + 1);
    int wrong = 0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = r * n + j;
      // Scaled by powers of two: exact, so a fused multiply-add cannot round differently.
      float sum = value((r + 1) % p, i) * (1 << k);
      for (int s = 2; s <= p; ++s) sum += value((r + s) % p, i) * (1 << k);
      wrong += outs[k].data<float>()[j] != sum;
    }
    CHECK_MESSAGE(wrong == 0, "reduce_scatter ", k, " in the ring's order");
  }
  CHECK_FALSE(world.failed());
}

TEST_CASE("world: a timeout names the collective, the group and the missing rank") {
  const int p = world_size();
  if (p < 2) return;
  MpiCommOptions o = test_options();
  o.timeout_seconds = 0.5;
  MpiCommunicator world(MPI_COMM_WORLD, "world", o);
  Tensor t = Tensor::zeros({1024}, DType::f32), u = Tensor::zeros({8}, DType::f32);
  world.all_reduce(t, ReduceOp::sum)->wait();  // #1: everyone
  const int late = p - 1;
  if (world.rank() == late) {
    // Arrives after the others gave up: its part completes against theirs.
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    world.all_reduce(t, ReduceOp::sum)->wait();
    world.all_reduce(u, ReduceOp::sum)->wait();
  } else {
    auto start = std::chrono::steady_clock::now();
    auto first = world.all_reduce(t, ReduceOp::sum);
    auto second = world.all_reduce(u, ReduceOp::sum);
    std::string message = runtime_error_of([&] { first->wait(); });
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The other operation in flight gives up at once.
    std::string then = runtime_error_of([&] { second->wait(); });
    CHECK(contains(then, "all_reduce of 8 fp32 (sum) on group 'world' (collective #3;"));
    CHECK(contains(then, "cannot complete: the group failed earlier: all_reduce of 1024"));
    double both = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(both - waited < 1.0);
    MESSAGE(message);
    CHECK(waited >= 0.5);
    CHECK(waited < 2.5);  // bounded, with room for a loaded machine
    CHECK(message.find("all_reduce of 1024 fp32 (sum)") != std::string::npos);
    CHECK(message.find("group 'world'") != std::string::npos);
    CHECK(message.find("collective #2") != std::string::npos);
    CHECK(message.find(fmt::format("world rank {} (last here at #1) did not arrive", late)) !=
          std::string::npos);
    CHECK(world.failed());
    CHECK_THROWS_WITH_AS(world.barrier(), doctest::Contains("earlier failure"), RuntimeError);
  }
  // Back in step on a fresh group.
  MpiCommunicator again(MPI_COMM_WORLD, "again", test_options());
  again.barrier()->wait();
}

TEST_CASE("world: a member that arrived and then went silent is named, and a blocked wait says what it waits on") {
  // Every member issues the all-reduce; the last then sleeps without calling
  // MPI (as a stopped process would), so the transfer cannot finish. The
  // others, waiting, hear each other's heartbeats and not its. At 3 ranks
  // (8 s): two waiters, so a waiter must not be named.
  if (world_size() != 3) return;
  std::vector<std::string> told;
  MpiCommOptions o = test_options();
  o.timeout_seconds = 3.5;
  o.on_blocked = [&](const std::string& what) { told.push_back(what); };
  MpiCommunicator world(MPI_COMM_WORLD, "dp", o);
  Tensor t = Tensor::zeros({1 << 22}, DType::f32);  // 16 MiB: needs every member's progress
  world.all_reduce(t, ReduceOp::sum)->wait();         // #1: everyone
  CHECK(told.empty());                                // a wait that does not block says nothing
  const int silent = 2;
  if (world.rank() == silent) {
    WorkHandle w = world.all_reduce(t, ReduceOp::sum);
    std::this_thread::sleep_for(std::chrono::milliseconds(4500));
    w->wait();  // completes against the others' abandoned parts
  } else {
    const std::string message = runtime_error_of([&] { world.all_reduce(t, ReduceOp::sum)->wait(); });
    MESSAGE(message);
    CHECK(contains(message, "all_reduce of 4194304 fp32 (sum) on group 'dp' (collective #2;"));
    CHECK(contains(message, "every member arrived, but world rank 2 (silent "));
    CHECK(contains(message, "did not wait for it since (stopped, dead, or blocked elsewhere)"));
    CHECK_FALSE(contains(message, "world ranks 0 (silent"));
    CHECK_FALSE(contains(message, "world rank 1 (silent"));
    REQUIRE(told.size() >= 2);  // from 1 s on, each second; then "" when the wait ends
    CHECK(contains(told.front(), "all_reduce of 4194304 fp32 (sum) on group 'dp' (collective #2;"));
    CHECK(told.back().empty());
  }
  MpiCommunicator again(MPI_COMM_WORLD, "again", test_options());
  again.barrier()->wait();
}

TEST_CASE("world: the trace shows every operation") {
  MpiCommunicator world(MPI_COMM_WORLD, "tp", test_options());
  std::vector<std::string> lines;
  world.set_trace([&](const std::string& l) { lines.push_back(l); });
  Tensor t = Tensor::zeros({4096}, DType::f32);
  world.all_reduce(t, ReduceOp::sum)->wait();
  world.barrier()->wait();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == fmt::format("rank {} tp#1 all_reduce 4096 fp32 sum", world_rank()));
  CHECK(lines[1] == fmt::format("rank {} tp#2 barrier", world_rank()));
}

}  // namespace dtrain::test

namespace dtrain::test {

TEST_CASE("runtime: rank, size and launcher") {
  MpiRuntime adopted;  // MPI is up already: adopts it, will not finalise it
  CHECK(adopted.world_rank() == world_rank());
  CHECK(adopted.world_size() == world_size());
  CHECK(adopted.describe().find(fmt::format("rank {} of {}", world_rank(), world_size())) !=
        std::string::npos);
  if (const char* expected = std::getenv("DTRAIN_EXPECT_LAUNCHER")) {
    CHECK(adopted.launcher() == std::string(expected));
    CHECK(adopted.launched() == !std::string(expected).empty());
  }
}

TEST_CASE("runtime: the ranks of a node that share a key (a GPU's bus id)") {
  MpiRuntime mpi;
  // Every test rank runs on this one machine: keys by rank parity.
  const int n = world_size(), r = world_rank();
  CHECK(mpi.ranks_on_node() == n);
  CHECK(mpi.ranks_on_node_with("0000:3b:00.0") == n);
  CHECK(mpi.ranks_on_node_with(r % 2 == 0 ? "even" : "odd") == (r % 2 == 0 ? (n + 1) / 2 : n / 2));
  CHECK(mpi.ranks_on_node_with(fmt::format("rank {}", r)) == 1);
  // Only the first 63 bytes count.
  CHECK(mpi.ranks_on_node_with(std::string(63, 'x') + std::to_string(r)) == n);
}

TEST_CASE("runtime: the launcher's rank and size from the environment agree with MPI's") {
  // What `dtrain validate` and the other MPI-free commands use under mpirun/srun.
  const LaunchInfo li = launch_info();
  CHECK(li.rank == world_rank());
  CHECK(li.size == world_size());
  CHECK(li.launcher == MpiRuntime().launcher());
}

TEST_CASE("world: a recv timeout names the peer") {
  if (world_size() < 2) return;
  MpiCommOptions o = test_options();
  o.timeout_seconds = 0.3;
  MpiCommunicator world(MPI_COMM_WORLD, "pp", o);
  if (world.rank() == 0) {
    Tensor t = Tensor::zeros({8}, DType::f32);
    std::string e = runtime_error_of([&] { world.recv(t, 1, 9)->wait(); });
    CHECK(contains(e, "recv of 8 fp32 from member 1 (world rank 1), tag 9, on group 'pp' (world "
                      "ranks 0, 1"));
    CHECK(contains(e, "did not complete within 0.3 s: world rank 1 did not send"));
  }
  // The abandoned receive is cancelled when the group goes.
  MpiCommunicator again(MPI_COMM_WORLD, "again", test_options());
  again.barrier()->wait();
}

TEST_CASE("world: without arrival notices a timeout says the missing ranks are unknown") {
  const int p = world_size();
  if (p < 2) return;
  MpiCommOptions o = test_options();
  o.timeout_seconds = 0.3;
  o.arrival_notices = false;
  MpiCommunicator world(MPI_COMM_WORLD, "dp", o);
  if (world.rank() == p - 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    world.barrier()->wait();
  } else {
    std::string e = runtime_error_of([&] { world.barrier()->wait(); });
    CHECK(contains(e, "barrier on group 'dp' (collective #1; world ranks 0, 1"));
    CHECK(contains(e, "arrival notices are off, so which ranks did not arrive is unknown"));
  }
  MpiCommunicator again(MPI_COMM_WORLD, "again", test_options());
  again.barrier()->wait();
}

TEST_CASE("world: a dropped Work does not disturb what follows") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  Tensor dropped = Tensor::zeros({1 << 16}, DType::f32);
  world.all_reduce(dropped, ReduceOp::sum);  // handle dropped at once
  check_all_reduce<float>(world, 100);
  CHECK(world.stats().ops == 4);
  CHECK_FALSE(world.failed());
}

}  // namespace dtrain::test

namespace dtrain::test {

TEST_CASE("world: equal counts spelt out by some members and not others still match") {
  MpiCommunicator world(MPI_COMM_WORLD, "world", test_options());
  const int p = world.size(), r = world.rank();
  std::vector<int64_t> spelt = r % 2 ? std::vector<int64_t>(p, 3) : std::vector<int64_t>{};
  check_reduce_scatter(world, spelt, 3, false);
  check_all_gather(world, spelt, 3, false);
  CHECK_FALSE(world.failed());
}

}  // namespace dtrain::test
