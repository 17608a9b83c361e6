#include "parallel/planner.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>

#include "config/footprint.h"
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
    return std::tuple(c.tp, c.pp, c.zero, static_cast<int>(c.recompute), c.schedule != "1f1b", c.virtual_stages,
                      c.sequence_parallel, -c.micro_batch, -c.devices());
  };
  return key(x.c) < key(y.c);
}

// Device counts to plan for: n, and where n factors badly the largest counts
// below it that are multiples of a node times a power of two (or three times
// one), no more than `max_idle` of n left idle.
std::vector<int> device_counts(int n, int per_node, double max_idle) {
  std::set<int, std::greater<>> counts{n};
  if (n > per_node && max_idle > 0) {
    const int floor_n = static_cast<int>(std::ceil(n * (1 - max_idle)));
    for (int64_t g0 : {int64_t{1}, int64_t{3}})
      for (int64_t g = g0 * per_node; g <= n; g *= 2) {
        const int c = static_cast<int>((n / g) * g);
        if (c >= floor_n && c > 0) counts.insert(c);
      }
  }
  return {counts.begin(), counts.end()};
}

// The choices a request fixes, in words: "dp=3, zero=2, recompute full".
std::string fixed_choices(const PlanRequest& q) {
  std::vector<std::string> s;
  if (q.dp > 0) s.push_back(fmt::format("dp={}", q.dp));
  if (q.tp > 0) s.push_back(fmt::format("tp={}", q.tp));
  if (q.pp > 0) s.push_back(fmt::format("pp={}", q.pp));
  if (q.micro_batch > 0) s.push_back(fmt::format("micro-batch {}", q.micro_batch));
  if (q.micro_batches > 0) s.push_back(fmt::format("{} micro-batches", q.micro_batches));
  if (q.zero >= 0) s.push_back(fmt::format("zero={}", q.zero));
  if (q.recompute >= 0) s.push_back(fmt::format("recompute {}", recompute_name(static_cast<Recompute>(q.recompute))));
  if (!q.schedule.empty()) s.push_back(fmt::format("schedule {}", q.schedule));
  if (q.virtual_stages > 0) s.push_back(fmt::format("virtual_stages={}", q.virtual_stages));
  if (q.sequence_parallel >= 0) s.push_back(fmt::format("sequence_parallel={}", q.sequence_parallel ? "true" : "false"));
  return fmt::format("{}", fmt::join(s, ", "));
}

}  // namespace

std::string describe(const Candidate& c) {
  std::string s = fmt::format("dp={} tp={} pp={}, micro-batch {} x {}, ZeRO-{}, recompute {}", c.dp, c.tp, c.pp,
                              c.micro_batch, c.micro_batches, c.zero, recompute_name(c.recompute));
  if (c.pp > 1) s += c.schedule == "interleaved" ? fmt::format(", interleaved v={}", c.virtual_stages) : ", " + c.schedule;
  if (c.sequence_parallel) s += ", sequence parallel";
  return s;
}

std::string Rejection::layout() const {
  auto part = [](const char* name, int64_t v) { return v > 0 ? fmt::format("{}={}", name, v) : fmt::format("{}=*", name); };
  std::string s = fmt::format("{} {} {}", part("dp", dp), part("tp", tp), part("pp", pp));
  if (micro_batch > 0) s += fmt::format(" mb>={}", micro_batch);
  if (zero >= 0) s += fmt::format(" zero={}", zero);
  if (recompute >= 0) s += fmt::format(" recompute={}", recompute_name(static_cast<Recompute>(recompute)));
  if (!schedule.empty()) s += " " + schedule;
  if (virtual_stages > 1) s += fmt::format(" v={}", virtual_stages);
  if (sequence_parallel == 1) s += " sp";
  return s;
}

int Rejection::relevance() const {
  if (kind == "memory") return 0;
  if (kind == "divisibility") return 1;
  if (kind == "feature") return 2;
  return 3;
}

const PlannedLayout* Plan::best_runnable() const {
  for (const PlannedLayout& l : feasible)
    if (l.runnable()) return &l;
  return nullptr;
}

std::vector<std::tuple<int, int, int>> rejected_layouts(const Rejection& r, int devices) {
  if (r.kind == "span") return {};
  if ((r.dp > 0 && r.pp > 0) || r.tp <= 0 || devices <= 0 || devices % r.tp != 0) return {{r.dp, r.tp, r.pp}};
  std::vector<std::tuple<int, int, int>> out;
  for (int64_t pp64 : divisors(devices / r.tp)) {
    const int pp = static_cast<int>(pp64), dp = devices / (r.tp * pp);
    if ((r.pp <= 0 || r.pp == pp) && (r.dp <= 0 || r.dp == dp)) out.push_back({dp, r.tp, pp});
  }
  if (out.empty()) out.push_back({r.dp, r.tp, r.pp});
  return out;
}

LayoutCounts layout_counts(const Plan& plan) {
  std::set<std::tuple<int, int, int>> all, fit;
  std::set<int> spans;
  for (const PlannedLayout& l : plan.feasible) {
    all.insert({l.p.c.dp, l.p.c.tp, l.p.c.pp});
    fit.insert({l.p.c.dp, l.p.c.tp, l.p.c.pp});
  }
  // Rejections are of the largest count planned for (make_plan).
  const int primary = plan.device_counts.empty() ? 0 : plan.device_counts.front();
  for (const Rejection& r : plan.rejected) {
    if (r.kind == "span") spans.insert(r.tp);
    for (const auto& l : rejected_layouts(r, primary)) all.insert(l);
  }
  return {static_cast<int64_t>(all.size()), static_cast<int64_t>(fit.size()), static_cast<int64_t>(spans.size())};
}

std::string idle_note(const Plan& plan) {
  if (plan.feasible.empty() || plan.feasible.front().p.c.devices() >= plan.devices) return {};
  const Prediction& best = plan.feasible.front().p;
  const int used = best.c.devices();
  std::string why;
  const auto full = std::find_if(plan.feasible.begin(), plan.feasible.end(),
                                 [&](const PlannedLayout& l) { return l.p.c.devices() == plan.devices; });
  Plan all;  // what was rejected of all the devices (families: of those only)
  all.devices = plan.devices;
  for (const Rejection& x : plan.rejected)
    if (x.dp == 0 || x.tp == 0 || x.pp == 0 || int64_t{x.dp} * x.tp * x.pp == plan.devices) all.rejected.push_back(x);
  if (full != plan.feasible.end()) {
    const double shorter = 100 * (1 - best.step_seconds / full->p.step_seconds);
    why = fmt::format("its step is {}% shorter than that of the best layout of all {} ({}: {:.4g} s)",
                      shorter >= 0.1 ? fmt::format("{:.1f}", shorter) : fmt::format("{:.2g}", shorter), plan.devices,
                      describe(full->p.c), full->p.step_seconds);
  } else if (plan.device_counts.empty() || plan.device_counts.front() != plan.devices) {
    why = fmt::format("the degrees fixed ({}) use {}", plan.choices, used);
  } else if (!all.rejected.empty()) {
    why = fmt::format("no layout of all {} fits: {}", plan.devices, why_nothing_fits(all, 2));
  } else {
    why = fmt::format("no layout of all {} satisfies the choices given", plan.devices);
  }
  return fmt::format("the best plan uses {} of the {} devices and leaves {} idle: {}; --no-idle plans for all of them",
                     used, plan.devices, plan.devices - used, why);
}

std::string nothing_fits(const Plan& plan, size_t closest) {
  return fmt::format("no layout of {} devices fits: {}", plan.devices, why_nothing_fits(plan, closest));
}

std::string why_nothing_fits(const Plan& plan, size_t closest) {
  if (plan.rejected.empty())
    return fmt::format("no candidate satisfies the choices given{}",
                       plan.choices.empty() ? std::string() : " (" + plan.choices + ")");
  // Rejections are ranked: the first is the binding constraint's nearest miss.
  const Rejection& first = plan.rejected.front();
  std::string s;
  if (first.kind == "memory") {
    s = "memory binds first; closest:";
    size_t n = 0;
    std::set<std::tuple<int, int, int>> shown;  // one line per dp x tp x pp: its nearest mode
    for (const Rejection& r : plan.rejected) {
      if (r.kind != "memory" || n == closest) break;
      if (!shown.insert({r.dp, r.tp, r.pp}).second) continue;
      ++n;
      s += fmt::format(" [{}: needs {} of {} usable; fits with {:.3g}x the memory per device]", r.layout(),
                       format_bytes(r.needed_bytes), format_bytes(r.capacity_bytes),
                       r.needed_bytes / r.capacity_bytes);
    }
    if (plan.fits_on > 0)
      s += fmt::format("; on {} devices one fits ({})", plan.fits_on, plan.fits_on_layout);
    else if (plan.fits_tried_up_to > 0)
      s += fmt::format("; none fits on up to {} devices either", plan.fits_tried_up_to);
  } else {
    s = fmt::format("{} binds first: {}: {}", first.kind, first.layout(), first.reason);
    // One example of each cause: reasons that differ only in their numbers
    // (the batch against dp=5000, dp=2500, ...) say the same.
    auto cause = [](const std::string& reason) {
      std::string c;
      for (char ch : reason)
        if (!std::isdigit(static_cast<unsigned char>(ch))) c += ch;
        else if (c.empty() || c.back() != '#') c += '#';
      return c;
    };
    std::set<std::string> said{cause(first.reason)};
    for (size_t i = 1; i < plan.rejected.size() && said.size() < closest; ++i)
      if (said.insert(cause(plan.rejected[i].reason)).second)
        s += fmt::format("; {}: {}", plan.rejected[i].layout(), plan.rejected[i].reason);
    if (plan.fits_on > 0 && plan.fits_on < plan.devices)
      s += fmt::format("; on {} of the {} devices one fits ({}), {} idle", plan.fits_on, plan.devices,
                       plan.fits_on_layout, plan.devices - plan.fits_on);
  }
  return s;
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
  const bool gpt = req.model.family() == ModelFamily::gpt;
  if (!gpt && req.recompute > 0)
    throw ConfigError(fmt::format("train.recompute = {}: recomputation remakes the GPT's transformer blocks; the {} "
                                  "has none", recompute_name(static_cast<Recompute>(req.recompute)), req.model.type));
  if (!gpt && req.sequence_parallel == 1)
    throw ConfigError(fmt::format("parallel.sequence_parallel = true: it splits the GPT's sequence over the tp ranks; "
                                  "the {} has no sequence", req.model.type));
  // Choices that contradict each other whatever the layout: one line naming
  // both, not a rejection of every candidate.
  if (req.virtual_stages >= 2 && !req.schedule.empty() && req.schedule != "interleaved")
    throw ConfigError(fmt::format("parallel.virtual_stages = {} runs the interleaved schedule, and parallel.schedule "
                                  "= \"{}\" was chosen: drop one of them",
                                  req.virtual_stages, req.schedule));
  if (req.pp == 1 && (req.schedule == "interleaved" || req.virtual_stages >= 2))
    throw ConfigError(fmt::format("{} needs pipeline stages to interleave, and parallel.pp = 1 was chosen: drop one "
                                  "of them",
                                  req.virtual_stages >= 2
                                      ? fmt::format("parallel.virtual_stages = {}", req.virtual_stages)
                                      : std::string("parallel.schedule = \"interleaved\"")));
  if (req.tp == 1 && req.sequence_parallel == 1)
    throw ConfigError("parallel.sequence_parallel = true splits the sequence over the tp ranks, and parallel.tp = 1 "
                      "was chosen: drop one of them");
  const Features& f = req.features;
  const Features& run = req.runnable;

  Plan plan;
  plan.devices = req.devices;
  plan.hardware = hw;
  plan.precision = w.precision;
  plan.global_batch = w.global_batch;
  plan.seq_len = gpt ? req.seq_len : 0;
  plan.choices = fixed_choices(req);

  auto reject = [&](Rejection r) { plan.rejected.push_back(std::move(r)); };
  auto fixed_ok = [](int64_t fixed, int64_t v) { return fixed <= 0 || fixed == v; };

  // Degrees fixed by the caller: only the device counts they divide (all
  // three fixed: their product, which may leave a few devices idle like the
  // counts below). None: say so, rather than skip every layout in silence.
  {
    const int64_t fixed = int64_t{std::max(req.dp, 1)} * std::max(req.tp, 1) * std::max(req.pp, 1);
    std::vector<std::string> degrees;
    for (const auto& [name, v] : {std::pair{"dp", req.dp}, {"tp", req.tp}, {"pp", req.pp}})
      if (v > 0) degrees.push_back(fmt::format("{}={}", name, v));
    const std::string product = degrees.size() > 1 ? fmt::format("{} = {}", fmt::join(degrees, " x "), fixed)
                                                   : fmt::format("{}", fmt::join(degrees, ""));
    std::vector<int> counts;
    const bool fixed_all = req.dp > 0 && req.tp > 0 && req.pp > 0;
    for (int n : device_counts(req.devices, hw.devices_per_node, req.max_idle_fraction))
      if (fixed_all ? n == req.devices && fixed == n : n % fixed == 0) counts.push_back(n);
    const int floor_n = static_cast<int>(std::ceil(req.devices * (1 - req.max_idle_fraction)));
    if (fixed_all && counts.empty() && fixed < req.devices && fixed >= floor_n)
      counts.push_back(static_cast<int>(fixed));
    plan.device_counts = counts;
    if (counts.empty()) {
      Rejection r;
      r.dp = req.dp, r.tp = req.tp, r.pp = req.pp, r.kind = "divisibility", r.from_choice = true;
      r.reason = fixed_all && fixed < req.devices
                     ? fmt::format("{} device{}, not the {} given ({} idle is more than the {:.0f}% allowed)", product,
                                   fixed == 1 ? "" : "s", req.devices, req.devices - fixed, 100 * req.max_idle_fraction)
                 : fixed > req.devices ? fmt::format("{} needs more than the {} devices", product, req.devices)
                                       : fmt::format("{} does not divide the {} devices", product, req.devices);
      reject(std::move(r));
    }
  }
  // Rejections are reported for the largest count planned for (the devices
  // asked for, unless fixed degrees need a few idle); the smaller counts are
  // alternatives, not the user's layouts.
  const int primary = plan.device_counts.empty() ? 0 : plan.device_counts.front();
  // Whether a tp degree leaves room on n devices for the fixed dp and pp.
  auto tp_admits_fixed = [&](int n, int tp) {
    const int rest = n / tp;
    if (req.dp > 0 && req.pp > 0) return req.dp * req.pp == rest;
    return rest % std::max(req.dp, 1) == 0 && rest % std::max(req.pp, 1) == 0;
  };

  // The model described once per (tp, sequence parallel), its stages once per count.
  std::map<std::pair<int, bool>, std::optional<ModelProfile>> profiles;
  std::map<std::tuple<int, bool, int>, std::vector<StageProfile>> stage_cache;
  std::set<std::tuple<int, int, int>> seen_layout;

  // The vocabulary blocks tp degrees that nothing else rules out (within a
  // node, dividing a device count planned for beside the fixed dp and pp,
  // the heads, the width and the MLP's; the one fixed): say so, with a padded size.
  if (gpt) {
    plan.vocab_size = req.model.vocab_size;
    int64_t lcm = 128;
    for (int64_t tp : divisors(hw.devices_per_node))
      if (tp > 1 && fixed_ok(req.tp, tp) && req.model.n_head % tp == 0 && req.model.kv_heads() % tp == 0 &&
          req.model.n_embd % tp == 0 &&
          req.model.ffn_width() % tp == 0 && req.model.vocab_size % tp != 0 &&
          std::any_of(plan.device_counts.begin(), plan.device_counts.end(),
                      [&](int n) { return n % tp == 0 && tp_admits_fixed(n, static_cast<int>(tp)); })) {
        plan.vocab_blocked_tp.push_back(static_cast<int>(tp));
        lcm = std::lcm(lcm, tp);
      }
    if (!plan.vocab_blocked_tp.empty()) plan.padded_vocab = (req.model.vocab_size + lcm - 1) / lcm * lcm;
  }

  for (int n : plan.device_counts) {
    for (int64_t tp64 : divisors(n)) {
      const int tp = static_cast<int>(tp64);
      if (!fixed_ok(req.tp, tp) || !tp_admits_fixed(n, tp)) continue;
      Rejection at_tp;  // the tp degree whole: dp and pp "*" unless fixed
      at_tp.dp = std::max(req.dp, 0), at_tp.tp = tp, at_tp.pp = std::max(req.pp, 0);
      at_tp.kind = "span";
      if (tp > hw.devices_per_node || hw.devices_per_node % tp != 0) {
        if (n != primary) continue;
        at_tp.reason = tp > hw.devices_per_node
                           ? fmt::format("tp={} would span nodes ({} devices per node): tensor parallelism "
                                         "communicates in every layer and needs the intra-node links",
                                         tp, hw.devices_per_node)
                           : fmt::format("tp={} does not divide the {} devices per node, so some tp groups would "
                                         "span two nodes", tp, hw.devices_per_node);
        reject(at_tp);
        continue;
      }
      if (tp > 1 && !gpt && !f.tp_for_cnn) {
        if (n != primary) continue;
        at_tp.kind = "feature";
        at_tp.reason = fmt::format("tp={}: tensor parallelism is not available for the CNN", tp);
        reject(at_tp);
        continue;
      }
      // Sequence parallelism asked for: only the tp degrees that can split
      // the sequence (dtrain run's validation refuses the others).
      if (req.sequence_parallel == 1) {
        at_tp.kind = "divisibility";
        at_tp.from_choice = true;
        if (tp == 1)
          at_tp.reason = "sequence parallelism needs tp > 1 (it splits the sequence over the tp ranks)";
        else if (req.seq_len % tp != 0)
          at_tp.reason = fmt::format("sequence parallelism: the sequence of {} tokens does not split over tp={}",
                                     req.seq_len, tp);
        else if (!f.sequence_parallel || (req.runnable_only && !run.sequence_parallel))
          at_tp.kind = "feature", at_tp.reason = "the runtime described has no sequence parallelism";
        if (!at_tp.reason.empty()) {
          if (n == primary) reject(at_tp);
          continue;
        }
      }
      for (int sp : {0, 1}) {
        if (sp && (tp == 1 || !gpt || !f.sequence_parallel || req.seq_len % tp != 0)) continue;
        if (req.sequence_parallel >= 0 && req.sequence_parallel != sp && tp > 1) continue;
        if (req.runnable_only && sp && !run.sequence_parallel) continue;
        auto& profile = profiles[{tp, sp == 1}];
        if (!profile) {
          try {
            profile = profile_model(req.model, req.seq_len, tp, sp == 1, req.hardware.kernels);
          } catch (const ConfigError& e) {
            if (n == primary && sp == 0) {
              at_tp.kind = "divisibility";
              at_tp.reason = fmt::format("tp={}: {}", tp, fmt::join(e.problems(), "; "));
              reject(at_tp);
            }
            profiles.erase({tp, sp == 1});
            continue;
          }
        }
        if (plan.model_params == 0) {
          plan.model_params = profile->total_params;
          plan.model_flops_per_step = profile->model_flops_per_sample * static_cast<double>(w.global_batch);
        }
        const int64_t layers = static_cast<int64_t>(profile->layers.size());
        const int64_t blocks = block_count(*profile);
        const bool uniform = f.uniform_blocks && blocks > 0;
        const bool embedding_units = uniform && f.embeddings_as_blocks;
        const int64_t units = uniform_units(*profile, embedding_units);  // what a uniform cut divides

        for (int64_t pp64 : divisors(n / tp)) {
          const int pp = static_cast<int>(pp64);
          const int dp = n / (tp * pp);
          if (!fixed_ok(req.pp, pp) || !fixed_ok(req.dp, dp)) continue;
          Rejection at;
          at.dp = dp, at.tp = tp, at.pp = pp, at.kind = "divisibility";
          const bool report = sp == 0 && n == primary && seen_layout.insert({dp, tp, pp}).second;
          if (pp > layers) {
            at.reason = fmt::format("pp={} exceeds the model's {} top-level layers ({}each stage needs one)", pp,
                                    layers,
                                    blocks > 0 ? fmt::format("{} transformer blocks and {} around them; ", blocks,
                                                             layers - blocks)
                                               : std::string());
            if (report) reject(at);
            continue;
          }
          if (uniform && units % pp != 0) {
            at.reason = fmt::format("pp={} does not divide the model's {} transformer blocks{} (the runtime gives "
                                    "every stage as many)", pp, blocks,
                                    units > blocks ? fmt::format(" and {} embedding units", units - blocks) : "");
            if (report) reject(at);
            continue;
          }
          if (w.global_batch % dp != 0) {
            at.reason = fmt::format("the global batch of {} samples is not divisible by dp={}", w.global_batch, dp);
            if (report) reject(at);
            continue;
          }
          const int64_t per_rank = w.global_batch / dp;
          if (req.micro_batch > 0 && per_rank % req.micro_batch != 0) {
            at.from_choice = true;
            at.reason = fmt::format("micro-batch {} does not divide the {} samples of each of dp={} ranks",
                                    req.micro_batch, per_rank, dp);
            if (report) reject(at);
            continue;
          }
          if (req.micro_batches > 0 && per_rank % req.micro_batches != 0) {
            at.from_choice = true;
            at.reason = fmt::format("{} micro-batches do not divide the {} samples of each of dp={} ranks",
                                    req.micro_batches, per_rank, dp);
            if (report) reject(at);
            continue;
          }
          // Schedules: one stage runs 1F1B (= GPipe); more: 1F1B, GPipe when
          // asked (never faster, more memory), interleaved with v chunks.
          std::vector<std::pair<std::string, int>> schedules;
          const bool wants_interleaved = req.schedule == "interleaved" || req.virtual_stages >= 2;
          const std::string conflict =
              req.virtual_stages >= 2 && !req.schedule.empty() && req.schedule != "interleaved"
                  ? fmt::format("virtual_stages={} needs the interleaved schedule, not {}", req.virtual_stages,
                                req.schedule)
                  : std::string();
          if (pp == 1) {
            if (wants_interleaved) {
              at.from_choice = true;
              at.reason = !conflict.empty()
                              ? conflict
                              : "the interleaved schedule needs pp >= 2 (it runs several chunks on each stage)";
              if (report) reject(at);
              continue;
            }
            schedules.push_back({"1f1b", 1});
          } else {
            if (!wants_interleaved && (req.schedule.empty() || req.schedule == "1f1b")) schedules.push_back({"1f1b", 1});
            if (req.schedule == "gpipe" && !wants_interleaved) schedules.push_back({"gpipe", 1});
            // Chunks per stage: the one asked for, else a few up to 8, or
            // with blocks cut uniformly every divisor of a stage's blocks
            // (Megatron-LM's rule).
            std::vector<int64_t> chunk_counts{2, 3, 4, 6, 8};
            if (uniform) chunk_counts = divisors(units / pp);
            if (req.virtual_stages == 1) chunk_counts.clear();  // one chunk a stage: not interleaved
            if (req.virtual_stages >= 2)
              chunk_counts = !uniform || (units / pp) % req.virtual_stages == 0
                                 ? std::vector<int64_t>{req.virtual_stages}
                                 : std::vector<int64_t>{};
            const bool interleaves = f.interleaved && !(req.runnable_only && !run.interleaved);
            // Interleaving runs the micro-batches in groups of pp.
            bool grouped = false;
            for (int64_t mb : divisors(per_rank))
              grouped |= fixed_ok(req.micro_batch, mb) && fixed_ok(req.micro_batches, per_rank / mb) &&
                         (per_rank / mb) % pp == 0;
            if ((req.schedule.empty() || req.schedule == "interleaved") && interleaves && grouped &&
                pp >= f.min_interleaved_stages)
              for (int64_t v64 : chunk_counts) {
                const int v = static_cast<int>(v64);
                if (v >= 2 && static_cast<int64_t>(pp) * v <= layers) schedules.push_back({"interleaved", v});
              }
            if (schedules.empty()) {  // interleaving asked for, and none possible at this depth
              at.from_choice = true;
              if (!conflict.empty()) {
                at.reason = conflict;
              } else if (!interleaves) {
                at.kind = "feature";
                at.reason = "the runtime described has no interleaved schedule";
              } else if (pp < f.min_interleaved_stages) {
                at.kind = "feature";
                at.reason = fmt::format("the runtime interleaves only from {} stages", f.min_interleaved_stages);
              } else if (!grouped) {
                at.reason = fmt::format("the interleaved schedule runs a multiple of pp={} micro-batches; the {} "
                                        "samples of each dp rank{} give none", pp, per_rank,
                                        req.micro_batch > 0 ? fmt::format(" in micro-batches of {}", req.micro_batch)
                                                            : std::string());
              } else if (req.virtual_stages == 1) {
                at.reason = "the interleaved schedule needs virtual_stages >= 2";
              } else if (req.virtual_stages >= 2 && uniform && (units / pp) % req.virtual_stages != 0) {
                at.reason = fmt::format("virtual_stages={} does not divide the {} blocks of each of pp={} stages",
                                        req.virtual_stages, units / pp, pp);
              } else {
                at.reason = fmt::format("pp={} with {} chunks each exceeds the model's {} top-level layers", pp,
                                        req.virtual_stages >= 2 ? req.virtual_stages : 2, layers);
              }
              if (report) reject(at);
              continue;
            }
          }
          for (const auto& [schedule, v] : schedules) {
            auto& stages = stage_cache[{tp, sp == 1, pp * v}];
            if (stages.empty()) stages = profile_stages(*profile, pp * v, uniform, embedding_units);
            for (int zero = 0; zero <= 3; ++zero) {
              if (zero > f.max_zero || (req.runnable_only && zero > run.max_zero)) continue;
              if ((zero >= 1 && dp == 1) || (req.zero >= 0 && req.zero != zero && dp > 1)) continue;
              // ZeRO-3 only when asked for (parallel.zero = 3): its gathers per
              // layer and micro-batch are modelled as hidden behind compute like
              // the buckets, which no ZeRO-3 run has measured yet, so it would
              // win on paper wherever a pipeline has a bubble.
              if (zero == 3 && req.zero != 3) continue;
              for (int rc = 0; rc <= 2; ++rc) {
                const auto recompute = static_cast<Recompute>(rc);
                if (req.recompute >= 0 && req.recompute != rc) continue;
                if ((rc == 2 && !f.recompute) || (rc == 1 && !f.selective) || (rc > 0 && !gpt)) continue;
                if (req.runnable_only && ((rc == 2 && !run.recompute) || (rc == 1 && !run.selective))) continue;
                for (int64_t mb : divisors(per_rank)) {
                  const int64_t micro_batches = per_rank / mb;
                  if (!fixed_ok(req.micro_batch, mb) || !fixed_ok(req.micro_batches, micro_batches)) continue;
                  // More micro-batches than a step may have (train.grad_accum's bound): not runnable.
                  if (micro_batches > config::kMaxGradAccum) continue;
                  if (schedule == "interleaved" && micro_batches % pp != 0) continue;
                  Candidate c{.dp = dp, .tp = tp, .pp = pp, .micro_batch = mb, .micro_batches = micro_batches,
                              .zero = zero, .recompute = recompute, .schedule = schedule,
                              .virtual_stages = v, .sequence_parallel = sp == 1};
                  PlannedLayout l{predict(*profile, stages, hw, w, f, c), {}};
                  ++plan.evaluated;
                  if (l.p.memory.total() > l.p.capacity) {
                    // Memory only grows with the micro-batch: the larger ones fail too.
                    const Memory& mem = l.p.memory;
                    reject(Rejection{
                        .dp = dp, .tp = tp, .pp = pp, .micro_batch = mb, .zero = zero, .recompute = rc,
                        .schedule = pp > 1 ? schedule : "", .virtual_stages = v, .sequence_parallel = sp,
                        .kind = "memory",
                        .reason = fmt::format(
                            "does not fit: stage {} needs {} (params {}, grads {}, optimizer {}, activations {}{}), "
                            "{} over the {} usable of {}",
                            mem.stage, format_bytes(mem.total()), format_bytes(mem.params), format_bytes(mem.grads),
                            format_bytes(mem.optimizer), format_bytes(mem.activations),
                            mem.update_copy > mem.activations
                                ? fmt::format(", or the update's gradient copy {}", format_bytes(mem.update_copy))
                                : std::string(),
                            format_bytes(mem.total() - l.p.capacity), format_bytes(l.p.capacity),
                            format_bytes(hw.memory_bytes)),
                        .needed_bytes = mem.total(), .capacity_bytes = l.p.capacity});
                    break;
                  }
                  if (recompute == Recompute::full && !run.recompute) l.needs.push_back("full activation recomputation");
                  if (recompute == Recompute::selective && !run.selective) l.needs.push_back("selective recomputation");
                  if (zero > run.max_zero) l.needs.push_back(fmt::format("ZeRO-{}", zero));
                  if (zero >= 1 && f.zero1_reduce_scatter && !run.zero1_reduce_scatter)
                    l.needs.push_back("ZeRO by reduce-scatter (this trainer all-reduces, then all-gathers)");
                  if (schedule == "interleaved" && !run.interleaved) l.needs.push_back("the interleaved schedule");
                  if (sp && !run.sequence_parallel) l.needs.push_back("sequence parallelism");
                  if (w.precision == "bf16" && !run.bf16) l.needs.push_back("bf16 mixed precision");
                  if (req.runnable_only && !l.runnable()) continue;
                  plan.feasible.push_back(std::move(l));
                }
              }
            }
          }
        }
      }
    }
  }
  if (plan.model_params == 0) {  // no layout reached the model: its size for the plan's header all the same
    try {
      const ModelProfile whole = profile_model(req.model, req.seq_len, 1, false, hw.kernels);
      plan.model_params = whole.total_params;
      plan.model_flops_per_step = whole.model_flops_per_sample * static_cast<double>(w.global_batch);
    } catch (const ConfigError&) {
      // the rejections say why
    }
  }
  std::sort(plan.feasible.begin(), plan.feasible.end(), ranks_before);
  // ZeRO shards over the data-parallel ranks: at dp = 1 there is nothing to
  // shard, and those layouts run ZeRO-0 whatever was asked.
  if (req.zero >= 1 && std::any_of(plan.feasible.begin(), plan.feasible.end(),
                                   [](const PlannedLayout& l) { return l.p.c.dp == 1; }))
    plan.notes.push_back(fmt::format("zero={} shards over the dp ranks: the layouts with dp=1 have nothing to shard "
                                     "and run as ZeRO-0",
                                     req.zero));
  // Rejections by relevance: memory nearest to fitting first, then what a
  // change of size would fix (the caller's fixed choices first), then missing
  // features, then spans.
  std::stable_sort(plan.rejected.begin(), plan.rejected.end(), [](const Rejection& a, const Rejection& b) {
    if (a.relevance() != b.relevance()) return a.relevance() < b.relevance();
    if (a.kind == "memory") return a.needed_bytes / a.capacity_bytes < b.needed_bytes / b.capacity_bytes;
    return a.from_choice && !b.from_choice;  // what the caller fixed, before what else a layout lacks
  });
  plan.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Nothing fits all the devices for what their count factors into (no idle
  // allowed): whether a few fewer would do, as a plan that may idle them finds.
  if (plan.feasible.empty() && !plan.rejected.empty() && plan.rejected.front().kind != "memory" &&
      req.find_devices_that_fit && req.max_idle_fraction < PlanRequest{}.max_idle_fraction &&
      !(req.dp > 0 && req.tp > 0 && req.pp > 0)) {
    PlanRequest fewer = req;
    fewer.max_idle_fraction = PlanRequest{}.max_idle_fraction;
    fewer.find_devices_that_fit = false;
    const Plan idle = make_plan(fewer);
    if (!idle.feasible.empty()) {
      plan.fits_on = idle.feasible.front().p.c.devices();
      plan.fits_on_layout = describe(idle.feasible.front().p.c);
    }
  }
  // Memory binds and nothing fits: how many devices would do (more devices
  // hold fewer layers or a smaller shard each, not in proportion: the
  // activations of a pipeline's first stage do not shrink with its depth).
  if (plan.feasible.empty() && !plan.rejected.empty() && plan.rejected.front().kind == "memory" &&
      req.find_devices_that_fit && !(req.dp > 0 && req.tp > 0 && req.pp > 0)) {
    const int64_t node = hw.devices_per_node;
    int64_t last = req.devices;
    for (double ratio : {1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0}) {
      int64_t n = static_cast<int64_t>(std::ceil(req.devices * ratio));
      if (n > node) n = (n + node - 1) / node * node;  // beyond a node: whole nodes
      if (n <= last) continue;
      if (n > kMaxPlanDevices) break;
      PlanRequest more = req;
      more.devices = static_cast<int>(n);
      more.find_devices_that_fit = false;
      const Plan bigger = make_plan(more);
      plan.fits_tried_up_to = static_cast<int>(n);
      last = n;
      if (!bigger.feasible.empty()) {
        plan.fits_on = bigger.feasible.front().p.c.devices();
        plan.fits_on_layout = describe(bigger.feasible.front().p.c);
        break;
      }
    }
  }
  return plan;
}

}  // namespace dtrain
