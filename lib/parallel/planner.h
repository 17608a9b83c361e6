// The planner: enumerates the layouts of a model on N devices (dp x tp x pp =
// N, micro-batch size and count, ZeRO-1 on or off, activation recomputation
// on or off, pipeline schedule), predicts each with the cost model, rejects
// the ones that cannot run (with the reason: a degree that does not divide
// the heads, layers, vocabulary or batch; a group that would span nodes;
// memory, by how much) and ranks the rest by predicted step time. It prunes
// by construction: tp only within a node, pp at most the model's top-level
// layers, micro-batch sizes only the divisors of each data-parallel rank's
// share of the batch, and larger micro-batches not tried once one does not
// fit (memory grows with the micro-batch). No MPI, no device: `dtrain plan`
// and `parallel.mode = "auto"` both call make_plan.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "parallel/cost_model.h"
#include "parallel/hardware.h"

namespace dtrain {

struct PlanRequest {
  ModelConfig model;
  int64_t seq_len = 0;  // gpt: tokens per sequence
  Workload workload;
  int devices = 1;
  Hardware hardware;
  // The features predictions may use; candidates needing one that `runnable`
  // lacks are kept and marked (a what-if), or dropped when runnable_only.
  Features features = Features::full();
  Features runnable = Features::this_trainer();
  bool runnable_only = false;
  // Choices fixed by the caller (0, -1 or "" = free).
  int dp = 0, tp = 0, pp = 0;
  int64_t micro_batch = 0, micro_batches = 0;
  int zero = -1, recompute = -1;
  std::string schedule;
};

struct PlannedLayout {
  Prediction p;
  // Features this candidate needs that the trainer lacks ("activation
  // recomputation", ...): empty when `dtrain run` can run it as predicted.
  std::vector<std::string> needs;
  bool runnable() const { return needs.empty(); }
};

// A candidate, or a family of them, that cannot run. Unset fields (0, -1,
// "") mean "any": a reason that holds for every micro-batch size, say.
struct Rejection {
  int dp = 0, tp = 0, pp = 0;
  int64_t micro_batch = 0, micro_batches = 0;  // micro_batch: the smallest that fails
  int zero = -1, recompute = -1;
  std::string schedule;
  std::string kind;    // "divisibility" | "span" | "memory" | "feature"
  std::string reason;  // a sentence naming the numbers
  double needed_bytes = 0, capacity_bytes = 0;  // memory rejections
  std::string layout() const;  // "dp=4 tp=8 pp=2 mb>=2 zero=1 recompute=off 1f1b"
};

struct Plan {
  int devices = 0;
  Hardware hardware;
  std::string precision;
  int64_t global_batch = 0, seq_len = 0;
  double model_params = 0;
  double model_flops_per_step = 0;
  std::vector<PlannedLayout> feasible;  // fastest first
  std::vector<Rejection> rejected;
  int64_t evaluated = 0;   // candidates predicted
  double seconds = 0;      // time the planning took
  // The best candidate `dtrain run` can run as predicted; nullptr if none.
  const PlannedLayout* best_runnable() const;
};

// Throws ConfigError for a request that cannot be planned at all (no
// devices, a batch of 0, a precision the hardware lacks).
Plan make_plan(const PlanRequest& req);

}  // namespace dtrain
