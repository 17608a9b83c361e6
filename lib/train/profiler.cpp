#include "train/profiler.h"

#include <malloc.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/rng.h"
#include "kernels/cpu/gemm.h"
#include "ops/ops.h"

namespace dtrain {

Profiler::Profiler(bool record_events) : record_(record_events), origin_(Clock::now()) {}

void Profiler::set_layers(std::vector<std::string> names) {
  names_ = std::move(names);
  fwd_.assign(names_.size() + 1, 0.0);
  bwd_.assign(names_.size() + 1, 0.0);
}

void Profiler::reset() {
  std::fill(fwd_.begin(), fwd_.end(), 0.0);
  std::fill(bwd_.begin(), bwd_.end(), 0.0);
  std::fill(std::begin(totals_), std::end(totals_), 0.0);
  events_.clear();
  comm_.clear();
  in_reduction_ = false;
  reduce_first_issue_ = reduce_last_done_ = -1;
  reduce_span_ = 0;
  origin_ = Clock::now();
  if (timer_) restart_marks();
}

void Profiler::set_device_timer(std::unique_ptr<DeviceTimer> timer) {
  timer_ = std::move(timer);
  if (timer_) restart_marks();
}

void Profiler::restart_marks() {
  marked_.clear();
  timer_->clear();
  next_mark_ = 0;
  device_origin_ = now();
  device_mark();  // mark 0: the device's "now" (idle: it completes at once)
}

size_t Profiler::device_mark() {
  const size_t id = next_mark_++;
  timer_->mark(id);
  return id;
}

void Profiler::add_marked(Kind kind, int index, int micro, size_t mark0, size_t mark1) {
  marked_.push_back({kind, index, micro, mark0, mark1});
}

void Profiler::flush() {
  if (!timer_) return;
  // In marking order: the order their scopes closed, as add() sees them on the CPU.
  for (const Marked& m : marked_)
    add_seconds(m.kind, m.index, m.micro, device_origin_ + timer_->seconds(m.mark0),
                device_origin_ + timer_->seconds(m.mark1));
  restart_marks();
}

double Profiler::layer_seconds(size_t index, bool backward) const {
  const auto& v = backward ? bwd_ : fwd_;
  return index < v.size() ? v[index] : 0.0;
}

void Profiler::add(Kind kind, int index, int micro, Clock::time_point t0, Clock::time_point t1) {
  add_seconds(kind, index, micro, since(t0), since(t1));
}

void Profiler::add_seconds(Kind kind, int index, int micro, double b, double e) {
  const double d = e - b;
  totals_[static_cast<size_t>(kind)] += d;
  const bool layer = kind == Kind::forward || kind == Kind::backward;
  if (layer && index >= 0) {
    auto& v = kind == Kind::backward ? bwd_ : fwd_;
    if (static_cast<size_t>(index) >= v.size()) v.resize(index + 1, 0.0);
    v[index] += d;
  }
  if (kind == Kind::dp_wait) close_reduction(e);
  if (!record_) return;
  TraceEvent ev;
  ev.begin = b;
  ev.end = e;
  ev.micro = micro;
  switch (kind) {
    case Kind::forward:
    case Kind::backward: {
      const bool bwd = kind == Kind::backward;
      const std::string& n = static_cast<size_t>(index) < names_.size() ? names_[index] : std::string("loss");
      ev.name = n + (bwd ? " bwd" : " fwd");
      ev.cat = n == "loss" ? "loss" : (bwd ? "backward" : "forward");
      break;
    }
    case Kind::data: ev.name = ev.cat = "data"; break;
    case Kind::optimizer: ev.name = ev.cat = "optimizer"; break;
    case Kind::pp_wait:
      ev.name = "pipeline wait";
      ev.cat = "bubble";
      ev.stream = TraceEvent::Stream::comm;
      break;
    case Kind::dp_wait:
      ev.name = "gradient reduction wait";
      ev.cat = "dp_wait";
      ev.stream = TraceEvent::Stream::comm;
      break;
    case Kind::count: break;
  }
  // Waits are shown through the collectives themselves on the comm stream.
  if (ev.stream == TraceEvent::Stream::compute) events_.push_back(std::move(ev));
}

void Profiler::mark_reduction_begin() {
  in_reduction_ = true;
  reduce_first_issue_ = reduce_last_done_ = -1;
}

void Profiler::close_reduction(double end) {
  if (!in_reduction_) return;
  in_reduction_ = false;
  if (reduce_first_issue_ >= 0) reduce_span_ += std::max(0.0, reduce_last_done_ - reduce_first_issue_);
}

const char* comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::all_reduce: return "all_reduce";
    case CommOp::reduce_scatter: return "reduce_scatter";
    case CommOp::all_gather: return "all_gather";
    case CommOp::broadcast: return "broadcast";
    case CommOp::p2p: return "send/recv";
    case CommOp::barrier: return "barrier";
    case CommOp::count: break;
  }
  return "?";
}

void Profiler::add_comm(const std::string& group, CommOp op, double bytes, Clock::time_point issued,
                        Clock::time_point completed, double blocked) {
  const double b = since(issued), e = since(completed);
  auto it = std::find_if(comm_.begin(), comm_.end(), [&](const GroupTotals& g) { return g.group == group; });
  if (it == comm_.end()) it = comm_.insert(comm_.end(), GroupTotals{group, {}});
  CommTotals& t = it->op[static_cast<size_t>(op)];
  t.ops += 1;
  t.bytes += bytes;
  t.busy_seconds += e - b;
  t.blocked_seconds += std::clamp(blocked, 0.0, e - b);
  // The gradient reduction: all-reduce buckets, or ZeRO's reduce-scatters.
  if (in_reduction_ && group == "dp" && (op == CommOp::all_reduce || op == CommOp::reduce_scatter)) {
    if (reduce_first_issue_ < 0 || b < reduce_first_issue_) reduce_first_issue_ = b;
    reduce_last_done_ = std::max(reduce_last_done_, e);
  }
  if (!record_) return;
  TraceEvent ev;
  ev.stream = TraceEvent::Stream::comm;
  ev.name = fmt::format("{} {}", group, comm_op_name(op));
  ev.cat = group;
  ev.begin = b;
  ev.end = e;
  ev.bytes = bytes;
  events_.push_back(std::move(ev));
}

CommTotals Profiler::comm(const std::string& group, CommOp op) const {
  for (const auto& g : comm_)
    if (g.group == group) return g.op[static_cast<size_t>(op)];
  return {};
}

CommTotals Profiler::comm(const std::string& group) const {
  CommTotals sum;
  for (size_t o = 0; o < static_cast<size_t>(CommOp::count); ++o) {
    const CommTotals t = comm(group, static_cast<CommOp>(o));
    sum.ops += t.ops, sum.bytes += t.bytes, sum.busy_seconds += t.busy_seconds, sum.blocked_seconds += t.blocked_seconds;
  }
  return sum;
}

double heap_bytes() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<double>(mi.uordblks) + static_cast<double>(mi.hblkhd);
}

double peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream s(line.substr(6));
      double kb = 0;
      s >> kb;
      return kb * 1024.0;
    }
  }
  return 0;
}

double measure_sgemm_gflops(int n, int reps) {
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(static_cast<size_t>(n) * n, 0.25f),
      c(static_cast<size_t>(n) * n);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::gemm<float>(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s / 1e9);
  }
  return best;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A device tensor of `shape` in `dt` holding values in [-1, 1) (not zeros: a
// tensor core's power, and so its clock under the power limit, depends on the
// bits it multiplies).
Tensor filled_values(const ops::Runtime& rt, const Shape& shape, DType dt, uint64_t seed) {
  const Exec& ex = rt.exec();
  Tensor host = Tensor::empty(shape, DType::f32);
  float* v = host.data<float>();
  CounterRng rng(seed);
  for (int64_t i = 0; i < host.numel(); ++i) v[i] = 2.0f * rng.uniform_f32() - 1.0f;
  Tensor f32 = Tensor::empty(shape, DType::f32, ex.device);
  ops::copy(ex, host, f32);
  if (dt == DType::f32) {
    rt.sync();
    return f32;
  }
  Tensor out = Tensor::empty(shape, dt, ex.device);
  ops::convert(ex, f32, out);
  rt.sync();
  return out;
}

}  // namespace

// FLOP/s of an n x n x n product in `dt` on the runtime's device, sustained:
// the products run back to back for `settle` seconds first (a GPU's clocks
// fall under its power limit within about a second: 8192^3 in bf16 on the H200
// went from 0.78 to 0.69 of peak, tools/bench/results_gpu.md), then the rate
// over at least `seconds` more.
double measure_gemm_rate(const ops::Runtime& rt, DType dt, int64_t n, double settle, double seconds) {
  const Exec& ex = rt.exec();
  const ops::Gemm g{.trans_a = false, .trans_b = false, .m = n, .n = n, .k = n};
  const Tensor a = filled_values(rt, Shape{n, n}, dt, 1), b = filled_values(rt, Shape{n, n}, dt, 2);
  const Tensor c = Tensor::empty(Shape{n, n}, dt, ex.device);
  const ops::MatmulPlan plan(ex, g, dt, dt);
  // Products in batches, each queued whole before the host waits, until
  // `at_least` seconds have passed. A batch grows until it holds 10 ms of work,
  // so that the wait and the relaunch after it are a small share of it (4
  // products of 2048^3 at the H200's measured 0.7 of peak are about 100 us).
  int64_t per_batch = 1;
  auto run_for = [&](double at_least) {
    int64_t count = 0;
    const auto t0 = std::chrono::steady_clock::now();
    do {
      const auto b0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < per_batch; ++i) plan.run(ex, g, a, b, c, 1.0, 0.0);
      rt.sync();
      count += per_batch;
      if (seconds_since(b0) < 0.01) per_batch *= 2;
    } while (seconds_since(t0) < at_least);
    return 2.0 * static_cast<double>(n) * n * n * static_cast<double>(count) / seconds_since(t0);
  };
  run_for(settle);
  return run_for(seconds);
}

// B/s of copying `bytes` from one device buffer to another (each byte read and
// written: what the cost model's memory-bound passes count), the best of 10.
double measure_copy_bandwidth(const ops::Runtime& rt, double bytes) {
  const Exec& ex = rt.exec();
  const auto n = static_cast<int64_t>(bytes / 4);
  const Tensor src = Tensor::zeros(Shape{n}, DType::f32, ex.device), dst = Tensor::empty(Shape{n}, DType::f32, ex.device);
  ops::copy(ex, src, dst);
  rt.sync();
  // Copies in batches of 8 before each wait (a 1 GiB copy takes about 0.5 ms
  // on an H200: one wait per copy would cost it a few percent).
  constexpr int kPerBatch = 8;
  double best = 0;
  for (int r = 0; r < 10; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kPerBatch; ++i) ops::copy(ex, src, dst);
    rt.sync();
    best = std::max(best, 2.0 * 4.0 * static_cast<double>(n) * kPerBatch / seconds_since(t0));
  }
  return best;
}

std::string breakdown_line(const Profiler& p, double seconds, double comm_seconds) {
  if (seconds <= 0) return "";
  auto pct = [&](double x) { return 100.0 * x / seconds; };
  using K = Profiler::Kind;
  return fmt::format(" | fwd {:.0f}% bwd {:.0f}% comm {:.0f}% opt {:.0f}% data {:.0f}%", pct(p.seconds(K::forward)),
                     pct(p.seconds(K::backward)), pct(comm_seconds), pct(p.seconds(K::optimizer)),
                     pct(p.seconds(K::data)));
}

std::string layer_kind(const std::string& name) {
  std::string out;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('.', i);
    if (j == std::string::npos) j = name.size();
    const std::string part = name.substr(i, j - i);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](unsigned char ch) {
      return std::isdigit(ch) != 0;
    });
    if (!numeric && !part.empty()) out += (out.empty() ? "" : ".") + part;
    i = j + 1;
  }
  return out.empty() ? name : out;
}

}  // namespace dtrain
