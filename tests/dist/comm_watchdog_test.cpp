// The device communication watchdog's state machine (comm_watchdog.h) with a
// fake clock and a fake event source: success, timeout, async error, abort
// exactly once, and the message; and the MPI twin's naming of the ranks that
// did not arrive at a device collective.
#include <doctest/doctest.h>

#include <map>

#include "dist/comm_watchdog.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_group.h"
#include "dist_test.h"

namespace dtrain::test {

namespace {

struct Fake {
  double t = 0;
  std::map<uint64_t, bool> done;
  std::map<std::string, std::string> errors;
  int aborts = 0;
  CommWatchdogHooks hooks() {
    return {.now = [this] { return t; },
            .done = [this](uint64_t id) { return done[id]; },
            .async_error = [this](const std::string& g) { return errors[g]; },
            .abort = [this] { ++aborts; }};
  }
};

}  // namespace

TEST_CASE("comm watchdog: completed operations leave and nothing fails") {
  Fake f;
  CommWatchdog w(f.hooks());
  uint64_t a = w.begin("all_reduce of 1024 bf16 (sum)", "dp", 1, 30);
  uint64_t b = w.begin("all_gather of 64 fp32", "tp", 1, 30);
  CHECK(a != b);
  CHECK(w.in_flight() == 2);
  f.t = 10;
  f.done[a] = true;
  CHECK_FALSE(w.poll());
  CHECK(w.in_flight() == 1);
  w.end(b);  // the main thread saw it complete
  CHECK(w.in_flight() == 0);
  f.t = 1000;  // long after: nothing in flight, nothing overdue
  CHECK_FALSE(w.poll());
  CHECK_FALSE(w.failed());
  CHECK(f.aborts == 0);
  CHECK_NOTHROW(w.check());
}

TEST_CASE("comm watchdog: a timeout aborts once and names the collective and the group") {
  Fake f;
  CommWatchdog w(f.hooks());
  w.begin("all_reduce of 1024 bf16 (sum)", "dp", 7, 30);
  uint64_t late = w.begin("broadcast of 8 fp32 from member 0", "tp", 3, 30);
  f.t = 29.9;
  CHECK_FALSE(w.poll());
  f.done[1] = true;  // the first completes; the second hangs
  f.t = 30.5;
  CHECK(w.poll());
  CHECK(w.failed());
  CHECK(w.aborted());
  CHECK(f.aborts == 1);
  CHECK(w.failure().id == late);
  CHECK(w.failure().group == "tp");
  CHECK(w.failure().seq == 3);
  // Later polls and a late completion change nothing: abort exactly once.
  f.t = 100;
  f.done[late] = true;
  CHECK(w.poll());
  CHECK(w.poll());
  CHECK(f.aborts == 1);
  CHECK_THROWS_WITH_AS(
      w.check([](const CommWatchdog::Failure& x) {
        return fmt::format("world rank 1 (last here at #{}) did not arrive", x.seq - 1);
      }),
      "broadcast of 8 fp32 from member 0 on group 'tp' (collective #3) did not complete within "
      "30 s; world rank 1 (last here at #2) did not arrive; every NCCL communicator was aborted",
      RuntimeError);
  CHECK_THROWS_WITH_AS(w.check(), doctest::Contains("did not complete within 30 s; every NCCL"),
                       RuntimeError);
}

TEST_CASE("comm watchdog: an asynchronous error fails before the timeout") {
  Fake f;
  CommWatchdog w(f.hooks());
  w.begin("all_reduce of 4 fp32 (sum)", "dp", 2, 300);
  w.begin("send of 4 fp32 to member 1", "pp", 0, 300);
  f.t = 1;
  CHECK_FALSE(w.poll());
  f.errors["pp"] = "remote process exited or there was a network error";
  CHECK(w.poll());
  CHECK(f.aborts == 1);
  CHECK(w.failure().group == "pp");
  CHECK_THROWS_WITH_AS(w.check(), doctest::Contains("send of 4 fp32 to member 1 on group 'pp' "
                                                    "(collective #0) failed: remote process exited"),
                       RuntimeError);
  CHECK(w.poll());
  CHECK(f.aborts == 1);
}

TEST_CASE("comm watchdog: each operation has its own timeout and the oldest overdue one is named") {
  Fake f;
  CommWatchdog w(f.hooks());
  w.begin("all_reduce of 1 fp32 (sum)", "dp", 1, 100);
  f.t = 5;
  w.begin("all_reduce of 2 fp32 (sum)", "tp", 1, 10);
  f.t = 14.9;
  CHECK_FALSE(w.poll());
  f.t = 15;
  CHECK(w.poll());
  CHECK(w.failure().group == "tp");
  CHECK(w.failure().reason == "did not complete within 10 s");
  CHECK_THROWS_AS(w.begin("x", "dp", 1, 0), InternalError);
}

TEST_CASE("comm watchdog: the MPI twin names the ranks that did not reach a device collective") {
  MpiCommunicator twin(MPI_COMM_WORLD, "dp", test_options());
  detail::OpInfo a{.kind = detail::OpKind::all_reduce, .dtype = DType::bf16, .count = 1024};
  twin.announce_device(a);
  CHECK(a.seq == 1);
  twin.barrier()->wait();  // #2, on the host
  detail::OpInfo b{.kind = detail::OpKind::all_gather, .dtype = DType::f32, .count = 64};
  if (twin.rank() == 0) {
    twin.announce_device(b);
    CHECK(b.seq == 3);
    std::string why = twin.explain_device(b);
    CHECK(twin.describe(b) == "all_gather of 64 fp32");
    if (twin.size() > 1) {
      CHECK(why.find(" 1 (last here at #2)") != std::string::npos);
      CHECK(why.find("did not arrive") != std::string::npos);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (twin.rank() != 0) twin.announce_device(b);  // everyone in step again
  twin.barrier()->wait();
}

}  // namespace dtrain::test
