#include "parallel/plan_report.h"

#include <algorithm>
#include <cmath>
#include <map>
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


std::string schedule_of(const Candidate& c) { return c.pp > 1 ? c.schedule : "-"; }

}  // namespace

std::string format_plan_text(const Plan& plan, int top) {
  const Hardware& hw = plan.hardware;
  std::string out = fmt::format(
      "plan for {} devices of {} ({}, {} per node): {:.4g}M parameters, batch {}{}, {}\n",
      plan.devices, hw.name, format_bytes(hw.memory_bytes), hw.devices_per_node, plan.model_params / 1e6,
      plan.global_batch, plan.seq_len > 0 ? fmt::format(" x {} tokens", plan.seq_len) : std::string(" images"),
      plan.precision);
  out += fmt::format("{} candidates predicted in {:.0f} ms: {} fit, {} rejected\n\n", plan.evaluated,
                     plan.seconds * 1e3, plan.feasible.size(), plan.rejected.size());
  const size_t shown = std::min<size_t>(plan.feasible.size(), top > 0 ? static_cast<size_t>(top) : plan.feasible.size());
  if (shown > 0) {
    double most = 0;  // GiB unless every listed layout needs less than one
    for (size_t i = 0; i < shown; ++i) most = std::max(most, plan.feasible[i].p.memory.total());
    const bool in_gib = most >= kGiB;
    const double unit = in_gib ? kGiB : kMiB;
    auto mem = [&](double b) { return fmt::format("{:.1f}", b / unit); };
    out += fmt::format("{:>4} {:>5} {:>3} {:>4} {:>5} {:>5} {:>4} {:>6} {:>5} {:>10} {:>9} {:>6} {:>6}  {:<34} {:>7} {:>7} {:>7}\n",
                       "rank", "dp", "tp", "pp", "mb", "x m", "zero", "recomp", "sched", "step s", "items/s",
                       "MFU", "bubble", fmt::format("memory {} (p+g+o+a = total / cap)", in_gib ? "GiB" : "MiB"),
                       "tp B", "pp B", "dp B");
    bool what_if = false;
    for (size_t i = 0; i < shown; ++i) {
      const PlannedLayout& l = plan.feasible[i];
      const Prediction& p = l.p;
      const Candidate& c = p.c;
      what_if |= !l.runnable();
      const std::string m = fmt::format("{}+{}+{}+{} = {} / {}", mem(p.memory.params), mem(p.memory.grads),
                                        mem(p.memory.optimizer), mem(p.memory.activations), mem(p.memory.total()),
                                        mem(p.capacity));
      out += fmt::format("{:>3}{} {:>5} {:>3} {:>4} {:>5} {:>5} {:>4} {:>6} {:>5} {:>10.4g} {:>9} {:>5.1f}% {:>5.1f}%  {:<34} {:>7} {:>7} {:>7}\n",
                         i + 1, l.runnable() ? " " : "*", c.dp, c.tp, c.pp, c.micro_batch, c.micro_batches, c.zero,
                         c.recompute ? "on" : "off", schedule_of(c), p.step_seconds, si(p.tokens_per_second),
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
           "tp/pp/dp B: bytes each device sends per step in that group\n";
  } else {
    out += "no layout fits\n";
  }

  // Layouts with nothing that fits, each with its nearest miss.
  std::map<std::tuple<int, int, int>, const Rejection*> worst;
  std::map<std::tuple<int, int, int>, bool> fits;
  for (const PlannedLayout& l : plan.feasible) fits[{l.p.c.dp, l.p.c.tp, l.p.c.pp}] = true;
  for (const Rejection& r : plan.rejected) {
    const auto key = std::tuple(r.dp, r.tp, r.pp);
    if (fits.count(key)) continue;
    auto [it, fresh] = worst.emplace(key, &r);
    if (!fresh && r.kind == "memory" && it->second->kind == "memory" &&
        r.needed_bytes < it->second->needed_bytes)
      it->second = &r;
  }
  if (!worst.empty()) {
    out += fmt::format("\nrejected layouts ({}; --json lists every rejected candidate):\n", worst.size());
    size_t n = 0;
    const size_t limit = std::max<size_t>(12, static_cast<size_t>(std::max(top, 0)));
    for (const auto& [key, r] : worst) {
      if (n++ == limit) {
        out += fmt::format("  ... and {} more\n", worst.size() - limit);
        break;
      }
      out += fmt::format("  {}: {}\n", r->layout(), r->reason);
    }
  }
  return out;
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
                     {"memory_bandwidth", hw.memory_bandwidth},
                     {"layer_overhead", hw.layer_overhead},
                     {"devices_per_node", hw.devices_per_node},
                     {"compute_units", hw.units()},
                     {"intra", {{"bandwidth", hw.intra.bandwidth}, {"latency", hw.intra.latency}}},
                     {"inter", {{"bandwidth", hw.inter.bandwidth}, {"latency", hw.inter.latency}}},
                     {"overlap", hw.overlap},
                     {"handoff_latency", hw.handoff_latency}};
  out["evaluated"] = plan.evaluated;
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
                        {"recompute", c.recompute},
                        {"schedule", c.schedule},
                        {"step_seconds", p.step_seconds},
                        {"items_per_second", p.tokens_per_second},
                        {"mfu", p.mfu},
                        {"bubble", p.bubble_fraction},
                        {"ideal_bubble", p.ideal_bubble},
                        {"memory",
                         {{"stage", p.memory.stage},
                          {"params", p.memory.params},
                          {"grads", p.memory.grads},
                          {"optimizer", p.memory.optimizer},
                          {"activations", p.memory.activations},
                          {"total", p.memory.total()},
                          {"capacity", p.capacity},
                          {"device", hw.memory_bytes}}},
                        {"time",
                         {{"pipeline", p.pipeline_seconds},
                          {"compute", p.compute_seconds},
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
  for (const Rejection& r : plan.rejected)
    rejected.push_back({{"dp", r.dp},
                        {"tp", r.tp},
                        {"pp", r.pp},
                        {"micro_batch", r.micro_batch},
                        {"zero", r.zero},
                        {"recompute", r.recompute},
                        {"schedule", r.schedule},
                        {"kind", r.kind},
                        {"reason", r.reason},
                        {"needed_bytes", r.needed_bytes},
                        {"capacity_bytes", r.capacity_bytes}});
  return out.dump(2) + "\n";
}

}  // namespace dtrain
