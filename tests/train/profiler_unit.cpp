// The profiler's pieces that need no MPI: scope accumulation, the dp
// reduction window, layer kinds, the trace writer's lanes and JSON, and the
// metrics records' JSON.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/metrics.h"
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

namespace {

// A device whose marks complete at times the test sets: mark i at times[i]
// seconds after mark 0. Counts the waits the profiler asks for.
struct FakeDevice {
  std::vector<double> times;  // per mark id
  std::vector<size_t> marked;
  int waits = 0, clears = 0;
};

class FakeTimer : public DeviceTimer {
 public:
  explicit FakeTimer(FakeDevice& d) : d_(d) {}
  void mark(size_t id) override { d_.marked.push_back(id); }
  double seconds(size_t id) override {
    ++d_.waits;
    return id < d_.times.size() ? d_.times[id] : -1.0;
  }
  void clear() override {
    ++d_.clears;
    d_.marked.clear();
  }

 private:
  FakeDevice& d_;
};

}  // namespace

TEST_CASE("device-timed scopes: marks on the stream, no wait until flush, then the device's times") {
  FakeDevice dev;
  Profiler p(true);
  p.set_layers({"wte", "blocks.0"});
  p.set_device_timer(std::make_unique<FakeTimer>(dev));
  p.reset();
  CHECK(p.device_timed());
  CHECK(dev.marked == std::vector<size_t>{0});  // the origin
  {
    Profiler::Scope f(&p, Profiler::Kind::forward, 1, 0);  // marks 1, 2
  }
  {
    Profiler::Scope o(&p, Profiler::Kind::optimizer);  // marks 3, 4
  }
  CHECK(dev.marked == std::vector<size_t>{0, 1, 2, 3, 4});
  CHECK(dev.waits == 0);                     // the host never waited inside a step
  CHECK(p.layer_seconds(1, false) == 0.0);  // nothing resolved before flush
  dev.times = {0.0, 0.010, 0.035, 0.040, 0.041};  // the device ran blocks.0 for 25 ms, the optimizer 1 ms
  p.flush();
  CHECK(dev.waits == 4);
  CHECK(p.layer_seconds(1, false) == doctest::Approx(0.025));
  CHECK(p.seconds(Profiler::Kind::forward) == doctest::Approx(0.025));
  CHECK(p.seconds(Profiler::Kind::optimizer) == doctest::Approx(0.001));
  // Trace events on the device's timeline (from the host origin), in order.
  REQUIRE(p.events().size() == 2);
  CHECK(p.events()[0].name == "blocks.0 fwd");
  CHECK(p.events()[0].end - p.events()[0].begin == doctest::Approx(0.025));
  CHECK(p.events()[1].begin - p.events()[0].begin == doctest::Approx(0.030));
  // The next step's marks start again from 0, and a second flush adds to the totals.
  CHECK(dev.marked == std::vector<size_t>{0});
  {
    Profiler::Scope f(&p, Profiler::Kind::forward, 1, 1);
  }
  dev.times = {0.0, 0.0, 0.005};
  p.flush();
  CHECK(p.layer_seconds(1, false) == doctest::Approx(0.030));
  // Without a timer (the CPU), flush does nothing and scopes use the host clock.
  Profiler cpu;
  cpu.flush();
  CHECK_FALSE(cpu.device_timed());
}

TEST_CASE("the dp reduction window spans the buckets issued after the mark") {
  Profiler p(false);
  const auto t = Profiler::Clock::now();
  p.add_comm("dp", CommOp::all_reduce, 8, t, t + 1ms);  // before the mark: not a bucket
  p.mark_reduction_begin();
  p.add_comm("dp", CommOp::all_reduce, 8, t + 2ms, t + 5ms);
  p.add_comm("tp", CommOp::all_reduce, 8, t + 2ms, t + 9ms);  // another group
  p.add_comm("dp", CommOp::all_reduce, 8, t + 3ms, t + 7ms);
  p.add(Profiler::Kind::dp_wait, -1, -1, t + 6ms, t + 7ms);
  CHECK(p.reduction_span_seconds() == doctest::Approx(0.005));
  CHECK(p.comm("dp").ops == 3);
  CHECK(p.comm("dp").bytes == 24);
  CHECK(p.comm("tp").busy_seconds == doctest::Approx(0.007));
  CHECK(p.comm("pp").ops == 0);
}

TEST_CASE("collectives are totalled per group and kind, with the time blocked in wait() clamped to their span") {
  Profiler p(true);
  const auto t = Profiler::Clock::now();
  p.add_comm("dp", CommOp::reduce_scatter, 100, t, t + 4ms, 0.001);
  p.add_comm("dp", CommOp::all_gather, 50, t + 4ms, t + 6ms, 0.002);
  p.add_comm("dp", CommOp::all_gather, 50, t + 6ms, t + 7ms, 0.5);  // blocked longer than its span: clamped
  p.add_comm("pp", CommOp::p2p, 10, t, t + 1ms);
  CHECK(p.comm("dp", CommOp::reduce_scatter).ops == 1);
  CHECK(p.comm("dp", CommOp::reduce_scatter).blocked_seconds == doctest::Approx(0.001));
  CHECK(p.comm("dp", CommOp::all_gather).ops == 2);
  CHECK(p.comm("dp", CommOp::all_gather).bytes == 100);
  CHECK(p.comm("dp", CommOp::all_gather).busy_seconds == doctest::Approx(0.003));
  CHECK(p.comm("dp", CommOp::all_gather).blocked_seconds == doctest::Approx(0.003));
  CHECK(p.comm("dp", CommOp::all_reduce).ops == 0);
  CHECK(p.comm("dp").bytes == 200);
  CHECK(p.comm("dp").blocked_seconds == doctest::Approx(0.004));
  CHECK(p.comm("pp", CommOp::p2p).bytes == 10);
  REQUIRE(p.events().size() == 4);
  CHECK(p.events()[0].name == "dp reduce_scatter");
  CHECK(p.events()[3].name == "pp send/recv");
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
  CHECK(f.find("\"micro_batch\":1") != std::string::npos);
  const std::string j = join_trace({f, "", f});
  const nlohmann::json t = nlohmann::json::parse(j);  // the whole file is JSON
  CHECK(t["displayTimeUnit"] == "ms");
  const nlohmann::json& events = t["traceEvents"];
  int complete = 0;
  for (const auto& e : events)
    if (e["ph"] == "X") {
      ++complete;
      if (e["cat"] == "backward") {
        CHECK(e["name"] == "blocks.0 \"bwd\"");  // escaped and read back
        CHECK(e["ts"].get<double>() == 0.0);
        CHECK(e["dur"].get<double>() == 5000.0);
        CHECK(e["args"]["micro_batch"] == 1);
      } else {
        CHECK(e["args"]["bytes"] == 64.0);
      }
    }
  CHECK(complete == 6);
  CHECK(events[1]["name"] == "process_sort_index");
  CHECK(events[1]["args"]["sort_index"] == 3);
}

TEST_CASE("metrics records are JSON whose doubles read back to the same bits, NaN and infinities as null") {
  const double third = 1.0 / 3, tiny = 4.9406564584124654e-324, big = 1.7976931348623157e308;
  const std::string line = MetricsWriter::format({{"step", int64_t{7}},
                                                  {"loss", third},
                                                  {"lr", 0.1 + 0.2},
                                                  {"tiny", tiny},
                                                  {"big", big},
                                                  {"nan", std::nan("")},
                                                  {"inf", -HUGE_VAL},
                                                  {"note", std::string("a \"quoted\"\tline\n\x01 \u00e9")}});
  REQUIRE(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);  // one record, one line
  const nlohmann::json r = nlohmann::json::parse(line);
  CHECK(r.size() == 8);
  CHECK(line.rfind("{\"step\":7,\"loss\":", 0) == 0);  // in the order given
  CHECK(r["step"].get<int64_t>() == 7);
  CHECK(r["loss"].get<double>() == third);
  CHECK(r["lr"].get<double>() == 0.1 + 0.2);
  CHECK(r["tiny"].get<double>() == tiny);
  CHECK(r["big"].get<double>() == big);
  CHECK(r["nan"].is_null());
  CHECK(r["inf"].is_null());
  CHECK(r["note"] == "a \"quoted\"\tline\n\x01 \u00e9");
}

TEST_CASE("the calibration's device measurements run through the ops layer: products and copies on the CPU") {
  // The GPU calibration (dtrain profile --write-hardware on train.device =
  // "cuda") measures with these on the device; here the same code on the CPU
  // runtime: the plan, the filled inputs, the timing loop and the rate.
  const auto rt = ops::Runtime::open("cpu", 0, false);
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(std::string(dtype_name(dt)));
    const auto t0 = std::chrono::steady_clock::now();
    const double rate = measure_gemm_rate(*rt, dt, 96, 0.01, 0.02);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(std::isfinite(rate));
    CHECK(rate > 1e6);    // FLOP/s: a 2-core CPU does some 1e10
    CHECK(rate < 1e14);   // and not a GPU's
    CHECK(took >= 0.03);  // it settled, then measured
  }
  const double bw = measure_copy_bandwidth(*rt, 8.0 * 1024 * 1024);
  CHECK(std::isfinite(bw));
  CHECK(bw > 1e8);   // B/s
  CHECK(bw < 1e13);
}

TEST_CASE("metrics deleted under the writer: made again whole where nothing is, a new run's file left alone") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("dtrain_metrics_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto read = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  const fs::path path = dir / "run" / "metrics.jsonl";
  std::vector<std::pair<bool, std::string>> said;
  auto note = [&](bool made, const std::string& what) { said.emplace_back(made, what); };
  {
    fs::create_directories(path.parent_path());
    MetricsWriter w(path.string(), false, note);
    w.write({{"step", int64_t{1}}});
    w.write({{"step", int64_t{2}}});
    fs::remove_all(dir / "run");  // the run's directory removed
    w.write({{"step", int64_t{3}}});
    w.write({{"step", int64_t{4}}});
    CHECK(read(path) == "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"step\":4}\n");
    REQUIRE(said.size() == 1);
    CHECK(said[0].first);
    CHECK(said[0].second.find("made again with the 22 bytes of records written so far") != std::string::npos);
  }
  said.clear();
  {
    MetricsWriter w(path.string(), false, note);
    w.write({{"step", int64_t{1}}});
    fs::remove_all(dir / "run");
    fs::create_directories(path.parent_path());
    std::ofstream(path) << "another run's\n";  // a new run took the directory
    w.write({{"step", int64_t{2}}});
    w.write({{"step", int64_t{3}}});  // asked once
    CHECK(read(path) == "another run's\n");
    REQUIRE(said.size() == 1);
    CHECK(!said[0].first);
    CHECK(said[0].second.find("is not made again (another file is there now)") != std::string::npos);
  }
  fs::remove_all(dir);
}
