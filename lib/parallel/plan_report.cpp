#include "parallel/plan_report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/format_bytes.h"

namespace dtrain {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0, kMiB = 1024.0 * 1024.0;

std::string si(double x) {
  if (x >= 1e9) return fmt::format("{:.2f}G", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e4) return fmt::format("{:.1f}k", x / 1e3);
  return fmt::format("{:.0f}", x);
}

std::string bytes_si(double b) {
  if (b == 0) return "0";
  if (b >= 1e9) return fmt::format("{:.1f}G", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f}M", b / 1e6);
  return fmt::format("{:.0f}k", b / 1e3);
}


std::string schedule_of(const Candidate& c) {
  if (c.pp == 1) return "-";
  return c.schedule == "interleaved" ? fmt::format("il{}", c.virtual_stages) : c.schedule;
}

// "1 device", "8 devices".
std::string plural(int64_t n, const char* noun) { return fmt::format("{}{}", noun, n == 1 ? "" : "s"); }

}  // namespace

std::string format_plan_text(const Plan& plan, int top) {
  const Hardware& hw = plan.hardware;
  std::string out = fmt::format(
      "plan for {} {} of {} ({}, {} per node): {} parameters, batch {}{}, {}\n",
      plan.devices, plural(plan.devices, "device"), hw.name, format_bytes(hw.memory_bytes), hw.devices_per_node,
      plan.model_params >= 1e9 ? fmt::format("{:.4g}B", plan.model_params / 1e9)
                               : fmt::format("{:.4g}M", plan.model_params / 1e6),
      plan.global_batch, plan.seq_len > 0 ? fmt::format(" x {} tokens", plan.seq_len) : std::string(" images"),
      plan.precision);
  if (!plan.choices.empty()) out += fmt::format("fixed: {}\n", plan.choices);
  for (const std::string& n : plan.notes) out += "note: " + n + "\n";
  if (!plan.vocab_blocked_tp.empty())
    out += fmt::format("vocabulary {} is not divisible by tp={}: those degrees are rejected; pad model.vocab_size "
                       "to {} (a multiple of 128 they divide) to allow them\n",
                       plan.vocab_size, fmt::join(plan.vocab_blocked_tp, ","), plan.padded_vocab);
  if (const std::string idle = idle_note(plan); !idle.empty()) out += idle + "\n";
  const LayoutCounts lc = layout_counts(plan);
  const bool several_counts = plan.device_counts.size() > 1;
  out += fmt::format("{} {} predicted in {:.0f} ms: {} fit; {} {} (dp x tp x pp{}), {} with a candidate that fits, "
                     "{} without{}\n\n",
                     plan.evaluated, plural(plan.evaluated, "candidate"), plan.seconds * 1e3, plan.feasible.size(),
                     lc.layouts, plural(lc.layouts, "layout"),
                     several_counts ? fmt::format(" over {} device counts: {}", plan.device_counts.size(),
                                                  fmt::join(plan.device_counts, ", "))
                                    : std::string(),
                     lc.fitting, lc.layouts - lc.fitting,
                     lc.span_tp > 0 ? fmt::format("; {} tp {} not planned (a group would span nodes)", lc.span_tp,
                                                  lc.span_tp == 1 ? "degree" : "degrees")
                                    : std::string());
  const size_t shown = std::min<size_t>(plan.feasible.size(), top > 0 ? static_cast<size_t>(top) : plan.feasible.size());
  if (shown > 0) {
    double most = 0;  // GiB unless every listed layout needs less than one
    for (size_t i = 0; i < shown; ++i) most = std::max(most, plan.feasible[i].p.memory.total());
    const bool in_gib = most >= kGiB;
    const double unit = in_gib ? kGiB : kMiB;
    auto mem = [&](double b) { return fmt::format("{:.1f}", b / unit); };
    // Plans over several device counts say each row's.
    auto devices_col = [&](const std::string& x) { return several_counts ? fmt::format(" {:>7}", x) : std::string(); };
    out += fmt::format("{:>4}{} {:>5} {:>3} {:>4} {:>5} {:>5} {:>4} {:>6} {:>5} {:>2} {:>10} {:>9} {:>6} {:>6}  {:<34} {:>7} {:>7} {:>7}\n",
                       "rank", devices_col("devices"), "dp", "tp", "pp", "mb", "x m", "zero", "recomp", "sched", "sp", "step s", "items/s",
                       "MFU", "bubble", fmt::format("memory {} (p+g+o+a = total / cap)", in_gib ? "GiB" : "MiB"),
                       "tp B", "pp B", "dp B");
    bool what_if = false;
    for (size_t i = 0; i < shown; ++i) {
      const PlannedLayout& l = plan.feasible[i];
      const Prediction& p = l.p;
      const Candidate& c = p.c;
      what_if |= !l.runnable();
      const std::string m = fmt::format("{}+{}+{}+{} = {} / {}", mem(p.memory.params), mem(p.memory.grads),
                                        mem(p.memory.optimizer + p.memory.local_sync),  // local sync's copies: state too
                                        mem(std::max(p.memory.activations, p.memory.update_copy)), mem(p.memory.total()),
                                        mem(p.capacity));
      out += fmt::format("{:>3}{}{} {:>5} {:>3} {:>4} {:>5} {:>5} {:>4} {:>6} {:>5} {:>2} {:>10.4g} {:>9} {:>5.1f}% {:>5.1f}%  {:<34} {:>7} {:>7} {:>7}\n",
                         i + 1, l.runnable() ? " " : "*", devices_col(std::to_string(c.devices())), c.dp, c.tp, c.pp, c.micro_batch, c.micro_batches, c.zero,
                         c.recompute == Recompute::none ? "none" : c.recompute == Recompute::full ? "full" : "sel",
                         schedule_of(c), c.sequence_parallel ? "on" : "-", p.step_seconds, si(p.tokens_per_second),
                         100 * p.mfu, 100 * p.bubble_fraction, m, bytes_si(p.tp_bytes), bytes_si(p.pp_bytes),
                         bytes_si(p.dp_bytes));
    }
    if (what_if) {
      std::vector<std::string> needs;
      for (size_t i = 0; i < shown; ++i)
        for (const std::string& n : plan.feasible[i].needs)
          if (std::find(needs.begin(), needs.end(), n) == needs.end()) needs.push_back(n);
      out += fmt::format("* what-if: needs what this trainer lacks ({}); `dtrain run` does not pick it\n",
                         fmt::join(needs, "; "));
    }
    out += "step s: predicted seconds per optimizer step; mb x m: micro-batch size x micro-batches per step; "
           "recomp: activation recomputation (sel = selective); sched: il<v> = interleaved, v chunks per stage; "
           "sp: sequence parallel; bubble: of the pipeline's schedule, the slowest stage's idle share; "
           "memory: of a device of the stage that needs the most; "
           "tp/pp/dp B: bytes each device sends per step in that group\n";
    bool sharing = false;
    for (size_t i = 0; i < shown; ++i) sharing |= plan.feasible[i].p.sharing_seconds > 0;
    if (sharing)
      out += fmt::format("ranks share compute units here ({} per node on {} units): their waiting for each other is in "
                         "step s, not in bubble\n",
                         plan.hardware.devices_per_node, plan.hardware.units());
  } else {
    out += "no layout fits\n";
  }

  // Layouts with nothing that fits, each with its most relevant rejection
  // (plan.rejected is ranked: memory nearest to fitting first), as many as
  // the header counts; then the tp degrees not planned, one line per distinct
  // reason.
  std::set<std::tuple<int, int, int>> fits, listed;
  for (const PlannedLayout& l : plan.feasible) fits.insert({l.p.c.dp, l.p.c.tp, l.p.c.pp});
  std::vector<std::string> lines;
  int64_t rejected_count = 0;  // layouts: a family row ("dp=* tp=2 pp=*") counts each it stands for
  const int primary = plan.device_counts.empty() ? 0 : plan.device_counts.front();
  std::map<std::string, std::vector<int>> spans;  // reason pattern -> tp degrees
  for (const Rejection& r : plan.rejected) {
    if (r.kind == "span") {
      spans[r.reason.substr(r.reason.find(' '))].push_back(r.tp);
      continue;
    }
    int64_t n = 0;
    for (const auto& key : rejected_layouts(r, primary))
      if (!fits.count(key) && listed.insert(key).second) ++n;
    if (n == 0) continue;
    rejected_count += n;
    const bool family = r.dp <= 0 || r.pp <= 0;
    lines.push_back(fmt::format("  {}{}: {}", r.layout(), family ? fmt::format(" ({} {})", n, plural(n, "layout")) : "",
                                r.reason));
  }
  std::vector<std::string> span_lines;  // tp degrees not planned at all: no layouts, so not counted as one
  for (const auto& [reason, tps] : spans) {
    std::vector<std::string> degrees;
    for (int tp : tps) degrees.push_back(std::to_string(tp));
    span_lines.push_back(fmt::format("  tp={}{}", fmt::join(degrees, ","), reason));
  }
  if (!lines.empty()) {
    out += fmt::format("\nrejected layouts ({}, most relevant first; --json lists every rejected candidate):\n",
                       rejected_count);
    const size_t limit = top > 0 ? std::max<size_t>(12, static_cast<size_t>(top)) : lines.size();
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i == limit) {
        out += fmt::format("  ... and {} more {} (--top 0 lists all)\n", lines.size() - limit,
                           lines.size() - limit == 1 ? "line" : "lines");
        break;
      }
      out += lines[i] + "\n";
    }
  }
  if (!span_lines.empty()) {
    out += "\ntp degrees not planned:\n";
    for (const std::string& l : span_lines) out += l + "\n";
  }
  return out;  // nothing fits: `dtrain plan` says so in one line on the error stream (nothing_fits)
}

std::string format_plan_json(const Plan& plan, int top) {
  using json = nlohmann::ordered_json;  // NaN and infinities become null
  const Hardware& hw = plan.hardware;
  json out = {{"devices", plan.devices},
              {"precision", plan.precision},
              {"global_batch", plan.global_batch},
              {"seq_len", plan.seq_len},
              {"model_params", plan.model_params},
              {"model_flops_per_step", plan.model_flops_per_step}};
  out["hardware"] = {{"name", hw.name},
                     {"memory_bytes", hw.memory_bytes},
                     {"usable_memory_fraction", hw.usable_memory_fraction},
                     {"peak_fp32", hw.peak_fp32},
                     {"peak_bf16", hw.peak_bf16},
                     {"efficiency", hw.efficiency},
                     {"gemm_half_dim", hw.gemm_half_dim},
                     {"fused_attention", hw.fused_attention},
                     {"kernels", kernels_name(hw.kernels)},
                     {"tp_overlap", hw.tp_overlap},
                     {"comm_compute_share", hw.comm_compute_share},
                     {"tp_comm_compute_share", hw.tp_share()},
                     {"memory_bandwidth", hw.memory_bandwidth},
                     {"layer_overhead", hw.layer_overhead},
                     {"devices_per_node", hw.devices_per_node},
                     {"compute_units", hw.units()},
                     {"intra", {{"bandwidth", hw.intra.bandwidth}, {"latency", hw.intra.latency}}},
                     {"inter", {{"bandwidth", hw.inter.bandwidth}, {"latency", hw.inter.latency}}},
                     {"overlap", hw.overlap},
                     {"handoff_latency", hw.handoff_latency},
                     {"tp_bandwidth", hw.tp_bandwidth},
                     {"sp_bandwidth", hw.sp_bandwidth},
                     {"host_bandwidth", hw.host_bandwidth}};
  out["choices"] = plan.choices;
  std::vector<std::string> notes = plan.notes;
  if (const std::string idle = idle_note(plan); !idle.empty()) notes.push_back(idle);
  out["notes"] = notes;
  out["evaluated"] = plan.evaluated;
  const LayoutCounts lc = layout_counts(plan);
  out["layouts"] = {{"planned", lc.layouts}, {"fitting", lc.fitting}, {"without", lc.layouts - lc.fitting},
                    {"tp_not_planned", lc.span_tp}};
  out["device_counts"] = plan.device_counts;
  if (!plan.vocab_blocked_tp.empty())
    out["vocabulary"] = {{"size", plan.vocab_size}, {"blocked_tp", plan.vocab_blocked_tp}, {"padded", plan.padded_vocab}};
  if (plan.feasible.empty()) out["nothing_fits"] = nothing_fits(plan);
  out["planning_seconds"] = plan.seconds;
  out["feasible_count"] = plan.feasible.size();
  json& feasible = out["feasible"] = json::array();
  const size_t shown = std::min<size_t>(plan.feasible.size(), top > 0 ? static_cast<size_t>(top) : plan.feasible.size());
  for (size_t i = 0; i < shown; ++i) {
    const PlannedLayout& l = plan.feasible[i];
    const Prediction& p = l.p;
    const Candidate& c = p.c;
    feasible.push_back({{"rank", i + 1},
                        {"dp", c.dp},
                        {"tp", c.tp},
                        {"pp", c.pp},
                        {"micro_batch", c.micro_batch},
                        {"micro_batches", c.micro_batches},
                        {"zero", c.zero},
                        {"recompute", recompute_name(c.recompute)},
                        {"schedule", c.schedule},
                        {"virtual_stages", c.virtual_stages},
                        {"sequence_parallel", c.sequence_parallel},
                        {"devices", c.devices()},
                        {"step_seconds", p.step_seconds},
                        {"items_per_second", p.tokens_per_second},
                        {"mfu", p.mfu},
                        {"bubble", p.bubble_fraction},
                        {"sharing_seconds", p.sharing_seconds},
                        {"ideal_bubble", p.ideal_bubble},
                        {"memory",
                         {{"stage", p.memory.stage},
                          {"params", p.memory.params},
                          {"grads", p.memory.grads},
                          {"optimizer", p.memory.optimizer},
                          {"activations", p.memory.activations},
                          {"update_copy", p.memory.update_copy},
                          {"local_sync", p.memory.local_sync},
                          {"total", p.memory.total()},
                          {"capacity", p.capacity},
                          {"device", hw.memory_bytes}}},
                        {"time",
                         {{"pipeline", p.pipeline_seconds},
                          {"compute", p.compute_seconds},
                          {"memory_bound", p.memory_bound_seconds},
                          {"zero3", p.zero3_seconds},
                          {"host", p.host_seconds},
                          {"tp", p.tp_seconds},
                          {"pp", p.pp_seconds},
                          {"dp_exposed", p.dp_exposed_seconds},
                          {"embed", p.embed_seconds},
                          {"optimizer", p.optimizer_seconds}}},
                        {"comm_bytes", {{"tp", p.tp_bytes}, {"pp", p.pp_bytes}, {"dp", p.dp_bytes}}},
                        {"runnable", l.runnable()},
                        {"needs", l.needs}});
  }
  json& rejected = out["rejected"] = json::array();
  // A field the rejection holds for every value of is null ("any").
  auto any_or = [](int64_t v, int64_t unset) { return v == unset ? json(nullptr) : json(v); };
  const int primary = plan.device_counts.empty() ? 0 : plan.device_counts.front();
  auto layouts_json = [&](const Rejection& r) {
    json a = json::array();
    for (const auto& [dp, tp, pp] : rejected_layouts(r, primary)) a.push_back({dp, tp, pp});
    return a;
  };
  for (const Rejection& r : plan.rejected)
    rejected.push_back({{"dp", any_or(r.dp, 0)},
                        {"tp", any_or(r.tp, 0)},
                        {"pp", any_or(r.pp, 0)},
                        // the device count planned for (several where some may idle): dp x tp x pp
                        {"devices", r.dp > 0 && r.tp > 0 && r.pp > 0 ? json(int64_t{r.dp} * r.tp * r.pp) : json(nullptr)},
                        {"micro_batch", any_or(r.micro_batch, 0)},  // the smallest that fails
                        {"zero", any_or(r.zero, -1)},
                        {"recompute", r.recompute >= 0 ? json(recompute_name(static_cast<Recompute>(r.recompute)))
                                                       : json(nullptr)},
                        {"schedule", r.schedule.empty() ? json(nullptr) : json(r.schedule)},
                        {"virtual_stages", any_or(r.virtual_stages, 0)},
                        {"sequence_parallel", r.sequence_parallel < 0 ? json(nullptr) : json(r.sequence_parallel == 1)},
                        {"kind", r.kind},
                        {"reason", r.reason},
                        // the (dp, tp, pp) layouts it stands for (a family row's every one; a span: none)
                        {"layouts", layouts_json(r)},
                        {"needed_bytes", r.needed_bytes},
                        {"capacity_bytes", r.capacity_bytes}});
  return out.dump(2) + "\n";
}

}  // namespace dtrain
