// Timing helpers shared by the kernel benchmarks (sgemm_peak, bgemm_peak,
// conv_peak): the process's CPU time (steadier than wall time on a shared
// machine) and the median of a set of samples.
#pragma once

#include <time.h>

#include <algorithm>
#include <vector>

namespace dtrain::bench {

inline double process_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace dtrain::bench
