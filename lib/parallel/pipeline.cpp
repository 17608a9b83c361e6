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
  // One stage: layers [0, i) whole (the loop below would try every cut, n^2).
  for (int64_t i = 1; i <= n; ++i) best[1][i] = prefix[i];
  for (int k = 2; k <= stages; ++k)
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

namespace {

// Megatron-LM's interleaved 1F1B (schedules.py,
// forward_backward_pipelining_with_interleaving): the step's micro-batches *
// chunks forward passes are numbered k = 0, 1, ...; they go in groups of
// `stages` micro-batches through chunk 0, then the same group through chunk
// 1, ..., so k's chunk is (k mod (stages * chunks)) / stages and its
// micro-batch (k / (stages * chunks)) * stages + k mod stages. Backward pass k
// is the same with the chunks reversed. A stage runs a warm-up of
// (stages - stage - 1) * 2 + (chunks - 1) * stages forwards, then alternates
// forward warm-up + i with backward i, then the remaining backwards.
std::vector<PipeOp> interleaved(int stage, int stages, int micro_batches, int chunks) {
  DTRAIN_CHECK(chunks >= 2 && stages >= 2 && micro_batches % stages == 0,
               "interleaved schedule: {} chunks, {} stages, {} micro-batches", chunks, stages, micro_batches);
  using K = PipeOp::Kind;
  const int total = micro_batches * chunks, group = stages * chunks;
  auto op = [&](K kind, int k) {
    const int in_group = k % group;
    const int c = in_group / stages;
    return PipeOp{kind, (k / group) * stages + in_group % stages, kind == K::forward ? c : chunks - 1 - c};
  };
  // With as many micro-batches as stages Megatron runs every forward first.
  const int warmup = micro_batches == stages ? total
                                             : std::min(total, (stages - stage - 1) * 2 + (chunks - 1) * stages);
  std::vector<PipeOp> ops;
  int f = 0, b = 0;
  for (; f < warmup; ++f) ops.push_back(op(K::forward, f));
  while (f < total) {  // steady state: one forward, one backward, one block
    ops.push_back(op(K::forward, f++));
    ops.back().joined = true;
    ops.push_back(op(K::backward, b++));
  }
  while (b < total) ops.push_back(op(K::backward, b++));
  return ops;
}

}  // namespace

std::vector<PipeOp> pipeline_schedule(const std::string& schedule, int stage, int stages,
                                      int micro_batches, int chunks) {
  DTRAIN_CHECK(0 <= stage && stage < stages && micro_batches >= 1, "pipeline stage {} of {}, {} micro-batches",
               stage, stages, micro_batches);
  if (schedule == "interleaved") return interleaved(stage, stages, micro_batches, chunks);
  DTRAIN_CHECK(chunks == 1, "pipeline schedule '{}' with {} model chunks per stage", schedule, chunks);
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

int pipeline_tag(int micro, int vstage, int vstages, bool gradient) {
  return (2 * (micro * vstages + vstage) + (gradient ? 1 : 0)) % 32000;
}

std::vector<PipeBatch> pipeline_transfers(const std::vector<PipeOp>& ops, int stage, int stages, int chunks) {
  DTRAIN_CHECK(0 <= stage && stage < stages && chunks >= 1, "pipeline stage {} of {}, {} chunks", stage, stages, chunks);
  using K = PipeTransfer::Kind;
  const int vstages = stages * chunks, prev = (stage + stages - 1) % stages, next = (stage + 1) % stages;
  const int n = static_cast<int>(ops.size());
  // Op i's receive and send, if it has them (the first virtual stage
  // receives no activations, the last no gradient).
  auto recv_of = [&](int i, std::vector<PipeTransfer>& out) {
    const PipeOp& op = ops[i];
    const int v = op.chunk * stages + stage;
    if (op.kind == PipeOp::Kind::forward && v > 0)
      out.push_back({K::recv, i, prev, pipeline_tag(op.micro, v - 1, vstages, false)});
    if (op.kind == PipeOp::Kind::backward && v + 1 < vstages)
      out.push_back({K::recv, i, next, pipeline_tag(op.micro, v + 1, vstages, true)});
  };
  auto send_of = [&](int i, std::vector<PipeTransfer>& out) {
    const PipeOp& op = ops[i];
    const int v = op.chunk * stages + stage;
    if (op.kind == PipeOp::Kind::forward && v + 1 < vstages)
      out.push_back({K::send, i, next, pipeline_tag(op.micro, v, vstages, false)});
    if (op.kind == PipeOp::Kind::backward && v > 0)
      out.push_back({K::send, i, prev, pipeline_tag(op.micro, v, vstages, true)});
  };
  // Blocks [start[k], start[k + 1]).
  std::vector<int> start;
  for (int i = 0; i < n; ++i) {
    start.push_back(i);
    if (ops[i].joined) {
      DTRAIN_CHECK(i + 1 < n && ops[i].kind == PipeOp::Kind::forward && ops[i + 1].kind == PipeOp::Kind::backward,
                   "pipeline op {} joined to no backward", i);
      ++i;
    }
  }
  start.push_back(n);
  const size_t blocks = start.size() - 1;
  std::vector<PipeBatch> batches;
  for (size_t k = 0; k <= blocks; ++k) {  // before block k (k = blocks: after the last)
    PipeBatch b{start[k], {}};
    if (k > 0)
      for (int i = start[k - 1]; i < start[k]; ++i) send_of(i, b.transfers);
    if (k < blocks)
      for (int i = start[k]; i < start[k + 1]; ++i) recv_of(i, b.transfers);
    if (!b.transfers.empty()) batches.push_back(std::move(b));
  }
  return batches;
}

int in_flight(const std::vector<PipeOp>& ops, int chunk) {
  int now = 0, most = 0;
  for (const PipeOp& op : ops) {
    if (chunk >= 0 && op.chunk != chunk) continue;
    now += op.kind == PipeOp::Kind::forward ? 1 : -1;
    most = std::max(most, now);
  }
  return most;
}

double ideal_bubble(const std::string& schedule, int stages, int micro_batches, int chunks) {
  const double b = static_cast<double>(stages - 1) / static_cast<double>(micro_batches);
  return schedule == "interleaved" ? b / chunks : b;
}

}  // namespace dtrain
