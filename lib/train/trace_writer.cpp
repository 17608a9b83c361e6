#include "train/trace_writer.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

namespace dtrain {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        else
          out += c;
    }
  }
  return out + "\"";
}

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
  auto meta = [&](const char* what, int t, const std::string& name) {
    if (!out.empty()) out += ",\n";
    out += fmt::format(R"({{"ph":"M","name":"{}","pid":{},"tid":{},"args":{{"name":{}}}}})", what, pid, t,
                       json_string(name));
  };
  meta("process_name", 0, process_name);
  out += fmt::format(R"(,
{{"ph":"M","name":"process_sort_index","pid":{},"tid":0,"args":{{"sort_index":{}}}}})", pid, pid);
  meta("thread_name", 0, "compute");
  meta("thread_name", 1, "comm");
  for (size_t l = 1; l < lane_end.size(); ++l) meta("thread_name", static_cast<int>(l + 1), fmt::format("comm {}", l + 1));
  for (size_t i : order) {
    const TraceEvent& e = events[i];
    std::string args;
    if (e.micro >= 0) args += fmt::format(R"("micro_batch":{})", e.micro);
    if (e.bytes >= 0) args += fmt::format(R"({}"bytes":{:.0f})", args.empty() ? "" : ",", e.bytes);
    out += fmt::format(R"(,
{{"ph":"X","name":{},"cat":{},"pid":{},"tid":{},"ts":{:.3f},"dur":{:.3f},"args":{{{}}}}})",
                       json_string(e.name), json_string(e.cat), pid, tid[i], e.begin * 1e6,
                       std::max(0.0, e.end - e.begin) * 1e6, args);
  }
  return out;
}

std::string join_trace(const std::vector<std::string>& fragments) {
  std::string out = "{\"traceEvents\": [\n";
  bool first = true;
  for (const auto& f : fragments) {
    if (f.empty()) continue;
    if (!first) out += ",\n";
    out += f;
    first = false;
  }
  return out + "\n],\n\"displayTimeUnit\": \"ms\"}\n";
}

}  // namespace dtrain
