#include "parallel/pipeline.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace dtrain {

std::vector<int64_t> partition_layers(const std::vector<double>& costs, int stages) {
  const int64_t n = static_cast<int64_t>(costs.size());
  if (stages < 1 || n < stages)
    throw ConfigError(fmt::format("parallel.pp ({}) exceeds the model's {} top-level layers "
                                  "(each pipeline stage needs at least one)", stages, n));
  // best[k][i]: the smallest possible maximum stage cost cutting layers [0, i)
  // into k stages; O(stages * n^2), n is the number of top-level layers.
  std::vector<double> prefix(n + 1, 0.0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + costs[i];
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int64_t>> cut(stages + 1, std::vector<int64_t>(n + 1, 0));
  best[0][0] = 0;
  for (int k = 1; k <= stages; ++k)
    for (int64_t i = k; i <= n; ++i)
      for (int64_t j = k - 1; j < i; ++j) {
        const double c = std::max(best[k - 1][j], prefix[i] - prefix[j]);
        if (c < best[k][i]) {  // strict: ties keep the earliest cut, so the result is stable
          best[k][i] = c;
          cut[k][i] = j;
        }
      }
  std::vector<int64_t> b(stages + 1);
  b[stages] = n;
  for (int k = stages; k >= 1; --k) b[k - 1] = cut[k][b[k]];
  return b;
}

std::vector<PipeOp> pipeline_schedule(const std::string& schedule, int stage, int stages,
                                      int micro_batches) {
  DTRAIN_CHECK(0 <= stage && stage < stages && micro_batches >= 1, "pipeline stage {} of {}, {} micro-batches",
               stage, stages, micro_batches);
  using K = PipeOp::Kind;
  std::vector<PipeOp> ops;
  if (schedule == "gpipe") {
    for (int m = 0; m < micro_batches; ++m) ops.push_back({K::forward, m});
    for (int m = 0; m < micro_batches; ++m) ops.push_back({K::backward, m});
    return ops;
  }
  DTRAIN_CHECK(schedule == "1f1b", "unknown pipeline schedule '{}'", schedule);
  const int warmup = std::min(stages - stage - 1, micro_batches);
  int f = 0, b = 0;
  for (; f < warmup; ++f) ops.push_back({K::forward, f});
  while (f < micro_batches) {  // steady state: one forward, one backward
    ops.push_back({K::forward, f++});
    ops.push_back({K::backward, b++});
  }
  while (b < micro_batches) ops.push_back({K::backward, b++});
  return ops;
}

int in_flight(const std::vector<PipeOp>& ops) {
  int now = 0, most = 0;
  for (const PipeOp& op : ops) {
    now += op.kind == PipeOp::Kind::forward ? 1 : -1;
    most = std::max(most, now);
  }
  return most;
}

}  // namespace dtrain
