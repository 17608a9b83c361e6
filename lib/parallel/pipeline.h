// Pipeline parallelism's plan: which top-level layers each stage holds, and
// the order in which a stage runs the forward and backward passes of a step's
// micro-batches (GPipe: all forwards, then all backwards; 1F1B: after a
// warm-up of (stages - stage - 1) forwards, one forward and one backward
// alternate, so at most (stages - stage) micro-batches are in flight).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain {

// Cuts `costs` (one per top-level layer, e.g. forward + backward FLOPs) into
// `stages` contiguous non-empty runs minimising the most expensive one.
// Returns stages + 1 boundaries: stage s holds layers [b[s], b[s+1]).
// Throws ConfigError when there are fewer layers than stages.
std::vector<int64_t> partition_layers(const std::vector<double>& costs, int stages);

struct PipeOp {
  enum class Kind { forward, backward } kind;
  int micro;  // micro-batch index in [0, micro_batches)
};

// The operations stage `stage` of `stages` runs for one step of
// `micro_batches` micro-batches under `schedule` ("gpipe" or "1f1b").
std::vector<PipeOp> pipeline_schedule(const std::string& schedule, int stage, int stages,
                                      int micro_batches);

// The most micro-batches whose activations a stage holds at once under that
// schedule (how many copies of its activation buffers it needs).
int in_flight(const std::vector<PipeOp>& ops);

}  // namespace dtrain
