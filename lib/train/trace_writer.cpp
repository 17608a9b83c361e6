#include "train/trace_writer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace dtrain {

namespace {

using json = nlohmann::ordered_json;

// Microseconds, to the nanosecond: what the viewers read.
double micros(double seconds) { return std::round(seconds * 1e9) / 1e3; }

}  // namespace

std::string trace_fragment(const std::vector<TraceEvent>& events, int pid, const std::string& process_name) {
  // Lanes for the comm stream: an event goes to the first lane whose last
  // event has ended by its start (events sorted by start).
  std::vector<size_t> order(events.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return events[a].begin < events[b].begin; });
  std::vector<int> tid(events.size(), 0);
  std::vector<double> lane_end;
  for (size_t i : order) {
    const TraceEvent& e = events[i];
    if (e.stream == TraceEvent::Stream::compute) continue;
    size_t lane = 0;
    while (lane < lane_end.size() && lane_end[lane] > e.begin) ++lane;
    if (lane == lane_end.size()) lane_end.push_back(0);
    lane_end[lane] = e.end;
    tid[i] = 1 + static_cast<int>(lane);
  }
  std::string out;
  auto add = [&](const json& e) {
    if (!out.empty()) out += ",\n";
    out += e.dump();
  };
  auto meta = [&](const char* what, int t, const std::string& name) {
    add({{"ph", "M"}, {"name", what}, {"pid", pid}, {"tid", t}, {"args", {{"name", name}}}});
  };
  meta("process_name", 0, process_name);
  add({{"ph", "M"}, {"name", "process_sort_index"}, {"pid", pid}, {"tid", 0}, {"args", {{"sort_index", pid}}}});
  meta("thread_name", 0, "compute");
  meta("thread_name", 1, "comm");
  for (size_t l = 1; l < lane_end.size(); ++l) meta("thread_name", static_cast<int>(l + 1), fmt::format("comm {}", l + 1));
  for (size_t i : order) {
    const TraceEvent& e = events[i];
    json args = json::object();
    if (e.micro >= 0) args["micro_batch"] = e.micro;
    if (e.bytes >= 0) args["bytes"] = std::round(e.bytes);
    add({{"ph", "X"}, {"name", e.name}, {"cat", e.cat}, {"pid", pid}, {"tid", tid[i]}, {"ts", micros(e.begin)},
         {"dur", micros(std::max(0.0, e.end - e.begin))}, {"args", std::move(args)}});
  }
  return out;
}

std::string join_trace(const std::vector<std::string>& fragments) {
  json events = json::array();
  for (const auto& f : fragments) {
    if (f.empty()) continue;
    for (json& e : json::parse("[" + f + "]")) events.push_back(std::move(e));
  }
  json trace = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
  return trace.dump() + "\n";
}

}  // namespace dtrain
