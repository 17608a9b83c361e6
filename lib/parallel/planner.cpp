#include "parallel/planner.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "core/format_bytes.h"

namespace dtrain {

namespace {

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> small, large;
  for (int64_t i = 1; i * i <= n; ++i)
    if (n % i == 0) {
      small.push_back(i);
      if (i != n / i) large.push_back(n / i);
    }
  small.insert(small.end(), large.rbegin(), large.rend());
  return small;
}


// Orders equally fast candidates: less memory, then simpler layouts.
bool ranks_before(const PlannedLayout& a, const PlannedLayout& b) {
  const Prediction &x = a.p, &y = b.p;
  if (x.step_seconds != y.step_seconds) return x.step_seconds < y.step_seconds;
  if (x.memory.total() != y.memory.total()) return x.memory.total() < y.memory.total();
  auto key = [](const Candidate& c) {
    return std::tuple(c.tp, c.pp, c.zero, c.recompute, c.schedule != "1f1b", -c.micro_batch);
  };
  return key(x.c) < key(y.c);
}

}  // namespace

std::string Rejection::layout() const {
  auto part = [](const char* name, int64_t v) { return v > 0 ? fmt::format("{}={}", name, v) : fmt::format("{}=*", name); };
  std::string s = fmt::format("{} {} {}", part("dp", dp), part("tp", tp), part("pp", pp));
  if (micro_batch > 0) s += fmt::format(" mb>={}", micro_batch);
  if (zero >= 0) s += fmt::format(" zero={}", zero);
  if (recompute >= 0) s += recompute ? " recompute" : " no-recompute";
  if (!schedule.empty()) s += " " + schedule;
  return s;
}

const PlannedLayout* Plan::best_runnable() const {
  for (const PlannedLayout& l : feasible)
    if (l.runnable()) return &l;
  return nullptr;
}

Plan make_plan(const PlanRequest& req) {
  const auto t0 = std::chrono::steady_clock::now();
  const Workload& w = req.workload;
  const Hardware& hw = req.hardware;
  if (req.devices < 1) throw ConfigError(fmt::format("devices: expected at least 1, got {}", req.devices));
  if (w.global_batch < 1)
    throw ConfigError(fmt::format("global batch: expected at least 1 sample, got {}", w.global_batch));
  hw.peak(w.precision);  // throws for a precision the hardware lacks
  if (req.runnable_only && w.precision == "bf16" && !req.runnable.bf16)
    throw ConfigError("precision bf16: this trainer computes in fp32 only (the CPU backend)");
  const int n = req.devices;
  const bool gpt = req.model.family() == ModelFamily::gpt;

  Plan plan;
  plan.devices = n;
  plan.hardware = hw;
  plan.precision = w.precision;
  plan.global_batch = w.global_batch;
  plan.seq_len = gpt ? req.seq_len : 0;

  auto reject = [&](Rejection r) { plan.rejected.push_back(std::move(r)); };
  auto fixed_ok = [](int64_t fixed, int64_t v) { return fixed <= 0 || fixed == v; };

  for (int64_t tp64 : divisors(n)) {
    const int tp = static_cast<int>(tp64);
    if (!fixed_ok(req.tp, tp)) continue;
    Rejection at_tp;
    at_tp.tp = tp;
    at_tp.kind = "span";
    if (tp > hw.devices_per_node) {
      at_tp.reason = fmt::format("tp={} would span nodes ({} devices per node): tensor parallelism "
                                 "all-reduces in every layer and needs the intra-node links", tp, hw.devices_per_node);
      reject(at_tp);
      continue;
    }
    if (hw.devices_per_node % tp != 0) {
      at_tp.reason = fmt::format("tp={} does not divide the {} devices per node, so some tp groups would "
                                 "span two nodes", tp, hw.devices_per_node);
      reject(at_tp);
      continue;
    }
    if (tp > 1 && !gpt && !req.features.tp_for_cnn) {
      at_tp.kind = "feature";
      at_tp.reason = fmt::format("tp={}: tensor parallelism is not available for the CNN", tp);
      reject(at_tp);
      continue;
    }
    std::optional<ModelProfile> profile;
    try {
      profile = profile_model(req.model, req.seq_len, tp);
    } catch (const ConfigError& e) {
      at_tp.kind = "divisibility";
      at_tp.reason = fmt::format("tp={}: {}", tp, fmt::join(e.problems(), "; "));
      reject(at_tp);
      continue;
    }
    if (plan.model_params == 0) {
      plan.model_params = profile->total_params;
      plan.model_flops_per_step = profile->model_flops_per_sample * static_cast<double>(w.global_batch);
    }
    const int64_t layers = static_cast<int64_t>(profile->layers.size());

    for (int64_t pp64 : divisors(n / tp)) {
      const int pp = static_cast<int>(pp64);
      const int dp = n / (tp * pp);
      if (!fixed_ok(req.pp, pp) || !fixed_ok(req.dp, dp)) continue;
      Rejection at;
      at.dp = dp, at.tp = tp, at.pp = pp, at.kind = "divisibility";
      if (pp > layers) {
        at.reason = fmt::format("pp={} exceeds the model's {} top-level layers (each stage needs one)", pp, layers);
        reject(at);
        continue;
      }
      if (w.global_batch % dp != 0) {
        at.reason = fmt::format("the global batch of {} samples is not divisible by dp={}", w.global_batch, dp);
        reject(at);
        continue;
      }
      const int64_t per_rank = w.global_batch / dp;
      if (req.micro_batch > 0 && per_rank % req.micro_batch != 0) {
        at.reason = fmt::format("micro-batch {} does not divide the {} samples of each of dp={} ranks",
                                req.micro_batch, per_rank, dp);
        reject(at);
        continue;
      }
      if (req.micro_batches > 0 && per_rank % req.micro_batches != 0) {
        at.reason = fmt::format("{} micro-batches do not divide the {} samples of each of dp={} ranks",
                                req.micro_batches, per_rank, dp);
        reject(at);
        continue;
      }
      const std::vector<StageProfile> stages = profile_stages(*profile, pp);

      for (int zero : {0, 1, 2, 3}) {
        // ZeRO-2 and 3 only when asked for (their every-micro-batch collectives cost traffic).
        if ((zero >= 1 && dp == 1) || (zero >= 2 && req.zero != zero) || (req.zero >= 0 && req.zero != zero && dp > 1))
          continue;
        for (int recompute : {0, 1}) {
          if ((recompute && !req.features.recompute) || (req.recompute >= 0 && req.recompute != recompute)) continue;
          for (const char* schedule : {"1f1b", "gpipe"}) {
            if (pp == 1 && std::string(schedule) == "gpipe") continue;  // one stage: the same schedule
            if (pp > 1 && !req.schedule.empty() && req.schedule != schedule) continue;
            for (int64_t mb : divisors(per_rank)) {
              if (!fixed_ok(req.micro_batch, mb) || !fixed_ok(req.micro_batches, per_rank / mb)) continue;
              Candidate c{.dp = dp, .tp = tp, .pp = pp, .micro_batch = mb, .micro_batches = per_rank / mb,
                          .zero = zero, .recompute = recompute == 1, .schedule = schedule};
              PlannedLayout l{predict(*profile, stages, hw, w, req.features, c), {}};
              ++plan.evaluated;
              if (l.p.memory.total() > l.p.capacity) {
                // Memory only grows with the micro-batch: the larger ones fail too.
                const Memory& mem = l.p.memory;
                reject(Rejection{
                    .dp = dp, .tp = tp, .pp = pp, .micro_batch = mb, .zero = zero, .recompute = recompute,
                    .schedule = pp > 1 ? schedule : "", .kind = "memory",
                    .reason = fmt::format(
                        "does not fit: stage {} needs {} (params {}, grads {}, optimizer {}, activations {}), "
                        "{} over the {} usable of {}",
                        mem.stage, format_bytes(mem.total()), format_bytes(mem.params), format_bytes(mem.grads),
                        format_bytes(mem.optimizer), format_bytes(mem.activations),
                        format_bytes(mem.total() - l.p.capacity), format_bytes(l.p.capacity),
                        format_bytes(hw.memory_bytes)),
                    .needed_bytes = mem.total(), .capacity_bytes = l.p.capacity});
                break;
              }
              if (c.recompute && !req.runnable.recompute) l.needs.push_back("activation recomputation");
              if (zero == 1 && req.features.zero1_reduce_scatter && !req.runnable.zero1_reduce_scatter)
                l.needs.push_back("ZeRO-1 by reduce-scatter (this trainer all-reduces, then all-gathers)");
              if (w.precision == "bf16" && !req.runnable.bf16) l.needs.push_back("bf16 mixed precision");
              if (req.runnable_only && !l.runnable()) continue;
              plan.feasible.push_back(std::move(l));
            }
          }
        }
      }
    }
  }
  std::sort(plan.feasible.begin(), plan.feasible.end(), ranks_before);
  plan.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return plan;
}

}  // namespace dtrain
