// The planner: enumerates the layouts of a model on N devices (dp x tp x pp =
// N, or a few devices fewer where N factors badly; micro-batch size and
// count; ZeRO 0..Features::max_zero; recomputation none, selective or full;
// 1F1B, GPipe when asked, interleaved with v chunks; sequence parallelism),
// predicts each with the cost model, rejects the ones that cannot run (with
// the reason: a degree that does not divide the heads, layers, vocabulary or
// batch; a group that would span nodes; memory, by how much), ranks the
// rejections by relevance and the rest by predicted step time. It prunes by
// construction: tp only within a node, pp at most the model's top-level
// layers, micro-batch sizes only the divisors of each data-parallel rank's
// share of the batch, and larger micro-batches not tried once one does not
// fit (memory grows with the micro-batch). No MPI, no device: `dtrain plan`
// and `parallel.mode = "auto"` both call make_plan.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "parallel/cost_model.h"
#include "parallel/hardware.h"

namespace dtrain {

// The most devices a plan is made for (`dtrain plan --devices`, and the
// counts tried when nothing fits).
inline constexpr int64_t kMaxPlanDevices = int64_t{1} << 24;

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
  // Choices fixed by the caller (0, -1 or "" = free). recompute: 0 none,
  // 1 selective, 2 full (the order of Recompute).
  int dp = 0, tp = 0, pp = 0;
  int64_t micro_batch = 0, micro_batches = 0;
  int zero = -1, recompute = -1;
  std::string schedule;
  int virtual_stages = 0;      // interleaved chunks per stage
  int sequence_parallel = -1;  // 0 off, 1 on
  // Devices that do not factor well (10,000 = 2^4 x 5^4): also plan for a few
  // fewer, down to this fraction left idle, and keep whatever is fastest.
  double max_idle_fraction = 0.02;
  // When memory binds and nothing fits: plan again for more devices (1.25x
  // to 64x, whole nodes) and keep the first count that fits (Plan::fits_on).
  // `dtrain plan` asks; parallel.mode = "auto" plans for the ranks launched.
  bool find_devices_that_fit = false;
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
  int virtual_stages = 0;
  int sequence_parallel = -1;
  std::string kind;    // "memory" | "divisibility" | "feature" | "span" (the order of relevance)
  // The reason is a choice the caller fixed (a degree, the micro-batch, the
  // schedule, sequence parallelism): ranked before other reasons of its kind.
  bool from_choice = false;
  std::string reason;  // a sentence naming the numbers
  double needed_bytes = 0, capacity_bytes = 0;  // memory rejections
  std::string layout() const;  // "dp=4 tp=8 pp=2 mb>=2 zero=1 recompute=full 1f1b"
  int relevance() const;       // 0 memory, 1 divisibility, 2 feature, 3 span: how much it says
};

struct Plan {
  int devices = 0;
  Hardware hardware;
  std::string precision;
  int64_t global_batch = 0, seq_len = 0;
  double model_params = 0;
  double model_flops_per_step = 0;
  std::vector<PlannedLayout> feasible;  // fastest first
  std::vector<Rejection> rejected;       // most relevant first (memory nearest to fitting first)
  int64_t evaluated = 0;   // candidates predicted
  std::string choices;     // the choices the caller fixed, in words ("dp=3, zero=2"); empty: none
  std::vector<std::string> notes;  // what the caller set aside, said under the header
  std::vector<int> device_counts;  // the counts planned for: `devices`, and fewer where some may idle
  // tp degrees the vocabulary does not divide, and the size padded to a
  // multiple of 128 that every one of them divides (0: none blocked).
  int64_t vocab_size = 0, padded_vocab = 0;
  std::vector<int> vocab_blocked_tp;
  // Nothing fits for memory: the fewest devices tried on which a layout fits
  // (PlanRequest::find_devices_that_fit), and its best layout; 0 = none up
  // to `fits_tried_up_to` devices (0: not searched). Nothing fits all of them
  // for another reason where no device was to idle: the count below `devices`
  // (within the default idle fraction) on which one does.
  int fits_on = 0, fits_tried_up_to = 0;
  std::string fits_on_layout;
  double seconds = 0;      // time the planning took
  // The best candidate `dtrain run` can run as predicted; nullptr if none.
  const PlannedLayout* best_runnable() const;
};

// Candidate counts over (dp, tp, pp) layouts: how many were considered, how
// many have at least one candidate that fits; and the tp degrees not planned
// at all (a tp group would span nodes), which are not layouts.
struct LayoutCounts {
  int64_t layouts = 0, fitting = 0, span_tp = 0;
};
LayoutCounts layout_counts(const Plan& plan);
// The (dp, tp, pp) layouts of `devices` a rejection stands for: its own, or
// for a family row (dp or pp "*": a tp degree ruled out whole, whatever the
// rest) every dp x pp beside that tp (and the fixed dp or pp); none for a tp
// degree not planned (kind "span").
std::vector<std::tuple<int, int, int>> rejected_layouts(const Rejection& r, int devices);

// Where the best plan leaves devices idle: a line saying how many and why
// (faster than the best layout of all of them, or none of those fits); ""
// where it uses them all.
std::string idle_note(const Plan& plan);

// When nothing fits: one line naming the constraint that binds first, the
// closest candidates and what would make them fit.
std::string nothing_fits(const Plan& plan, size_t closest = 3);
// The same line without its "no layout of N devices fits: ", for a caller
// that names what it planned its own way.
std::string why_nothing_fits(const Plan& plan, size_t closest = 3);

// A candidate in words: "dp=4 tp=8 pp=2, micro-batch 1 x 16, ZeRO-1, recompute full, interleaved v=2, sp".
std::string describe(const Candidate& c);

// Throws ConfigError for a request that cannot be planned at all (no
// devices, a batch of 0, a precision the hardware lacks).
Plan make_plan(const PlanRequest& req);

}  // namespace dtrain
