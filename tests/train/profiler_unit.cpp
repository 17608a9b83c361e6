// The profiler's pieces that need no MPI: scope accumulation, the dp
// reduction window, layer kinds, and the trace writer's lanes and JSON.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "train/profiler.h"
#include "train/trace_writer.h"

using namespace dtrain;
using namespace std::chrono_literals;

namespace {
int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("layer kinds drop the numeric parts of a name") {
  CHECK(layer_kind("blocks.3") == "blocks");
  CHECK(layer_kind("stages.1.blocks.0") == "stages.blocks");
  CHECK(layer_kind("embed") == "embed");
  CHECK(layer_kind("lm_head") == "lm_head");
}

TEST_CASE("scopes accumulate per layer and per kind and reset clears them") {
  Profiler p(true);
  p.set_layers({"embed", "blocks.0"});
  const auto t = Profiler::Clock::now();
  p.add(Profiler::Kind::forward, 1, 0, t, t + 2ms);
  p.add(Profiler::Kind::forward, 1, 1, t + 2ms, t + 5ms);
  p.add(Profiler::Kind::backward, 2, 1, t + 5ms, t + 6ms);  // the loss
  p.add(Profiler::Kind::optimizer, -1, -1, t + 6ms, t + 10ms);
  CHECK(p.layer_seconds(1, false) == doctest::Approx(0.005));
  CHECK(p.layer_seconds(2, true) == doctest::Approx(0.001));
  CHECK(p.seconds(Profiler::Kind::forward) == doctest::Approx(0.005));
  CHECK(p.seconds(Profiler::Kind::optimizer) == doctest::Approx(0.004));
  REQUIRE(p.events().size() == 4);
  CHECK(p.events()[0].name == "blocks.0 fwd");
  CHECK(p.events()[2].name == "loss bwd");
  CHECK(p.events()[2].cat == "loss");
  const std::string line = breakdown_line(p, 0.010, 0.0);
  CHECK(line.find("fwd 50%") != std::string::npos);
  CHECK(line.find("opt 40%") != std::string::npos);
  p.reset();
  CHECK(p.seconds(Profiler::Kind::forward) == 0);
  CHECK(p.layer_seconds(1, false) == 0);
  CHECK(p.events().empty());
}

TEST_CASE("the dp reduction window spans the buckets issued after the mark") {
  Profiler p(false);
  const auto t = Profiler::Clock::now();
  p.add_comm("dp", "all_reduce", 8, t, t + 1ms);  // before the mark: not a bucket
  p.mark_reduction_begin();
  p.add_comm("dp", "all_reduce", 8, t + 2ms, t + 5ms);
  p.add_comm("tp", "all_reduce", 8, t + 2ms, t + 9ms);  // another group
  p.add_comm("dp", "all_reduce", 8, t + 3ms, t + 7ms);
  p.add(Profiler::Kind::dp_wait, -1, -1, t + 6ms, t + 7ms);
  CHECK(p.reduction_span_seconds() == doctest::Approx(0.005));
  CHECK(p.comm("dp").ops == 3);
  CHECK(p.comm("dp").bytes == 24);
  CHECK(p.comm("tp").busy_seconds == doctest::Approx(0.007));
  CHECK(p.comm("pp").ops == 0);
}

TEST_CASE("overlapping comm events go to separate lanes while compute stays on tid 0") {
  std::vector<TraceEvent> ev(3);
  ev[0] = {TraceEvent::Stream::comm, "dp all_reduce", "dp", 0.001, 0.004, -1, 64};
  ev[1] = {TraceEvent::Stream::comm, "dp all_reduce", "dp", 0.002, 0.003, -1, 64};
  ev[2] = {TraceEvent::Stream::compute, "blocks.0 \"bwd\"", "backward", 0.0, 0.005, 1, -1};
  const std::string f = trace_fragment(ev, 3, "rank 3");
  CHECK(count(f, "\"ph\":\"X\"") == 3);
  CHECK(count(f, "\"tid\":2") >= 2);  // the second lane and its name
  CHECK(f.find("\"name\":\"comm 2\"") != std::string::npos);
  CHECK(f.find("\"name\":\"compute\"") != std::string::npos);
  CHECK(f.find("blocks.0 \\\"bwd\\\"") != std::string::npos);
  CHECK(f.find("\"ts\":1000.000") != std::string::npos);
  CHECK(f.find("\"micro_batch\":1") != std::string::npos);
  const std::string j = join_trace({f, "", f});
  CHECK(j.rfind("{\"traceEvents\": [", 0) == 0);
  CHECK(count(j, "\"ph\":\"X\"") == 6);
  CHECK(j.find(",\n,") == std::string::npos);
}
