// Chrome trace-event JSON (what Perfetto and chrome://tracing load) from the
// profiler's events. Every rank is a process (pid = world rank) with one
// "compute" thread and "comm" threads: collectives in flight at the same time
// (the dp buckets, a pipeline send beside a receive) would overlap on one
// track, which the viewers draw wrongly, so they are spread over lanes
// "comm", "comm 2", ... Each rank renders its own fragment; rank 0 joins them.
#pragma once

#include <string>
#include <vector>

#include "train/profiler.h"

namespace dtrain {

// One rank's events as JSON objects (nlohmann-json), one a line, separated by
// commas (no brackets): thread and process names first, then complete ("X")
// events in microseconds (to the nanosecond).
std::string trace_fragment(const std::vector<TraceEvent>& events, int pid, const std::string& process_name);

// {"traceEvents": [fragments...], "displayTimeUnit": "ms"}; empty fragments
// skipped. Throws nlohmann::json::parse_error for a fragment that is not
// trace_fragment's output.
std::string join_trace(const std::vector<std::string>& fragments);

}  // namespace dtrain
