#include "parallel/plan_report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include <fmt/format.h>

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

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(ch));
        else
          out += ch;
    }
  }
  return out + "\"";
}

std::string json_number(double x) { return std::isfinite(x) ? fmt::format("{}", x) : "null"; }

std::string schedule_of(const Candidate& c) { return c.pp > 1 ? c.schedule : "-"; }

}  // namespace

std::string format_plan_text(const Plan& plan, int top) {
  const Hardware& hw = plan.hardware;
  std::string out = fmt::format(
      "plan for {} devices of {} ({:.1f} GiB, {} per node): {:.4g}M parameters, batch {}{}, {}\n",
      plan.devices, hw.name, hw.memory_bytes / kGiB, hw.devices_per_node, plan.model_params / 1e6,
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
  const Hardware& hw = plan.hardware;
  std::string out = "{\n";
  out += fmt::format("  \"devices\": {},\n  \"precision\": {},\n  \"global_batch\": {},\n  \"seq_len\": {},\n",
                     plan.devices, json_string(plan.precision), plan.global_batch, plan.seq_len);
  out += fmt::format("  \"model_params\": {},\n  \"model_flops_per_step\": {},\n", json_number(plan.model_params),
                     json_number(plan.model_flops_per_step));
  out += fmt::format(
      "  \"hardware\": {{\"name\": {}, \"memory_bytes\": {}, \"usable_memory_fraction\": {}, \"peak_fp32\": {}, "
      "\"peak_bf16\": {}, \"efficiency\": {}, \"memory_bandwidth\": {}, \"layer_overhead\": {}, "
      "\"devices_per_node\": {}, \"compute_units\": {}, \"intra\": {{\"bandwidth\": {}, \"latency\": {}}}, "
      "\"inter\": {{\"bandwidth\": {}, \"latency\": {}}}, \"overlap\": {}, \"handoff_latency\": {}}},\n",
      json_string(hw.name), json_number(hw.memory_bytes), json_number(hw.usable_memory_fraction),
      json_number(hw.peak_fp32), json_number(hw.peak_bf16), json_number(hw.efficiency),
      json_number(hw.memory_bandwidth), json_number(hw.layer_overhead), hw.devices_per_node, hw.units(),
      json_number(hw.intra.bandwidth), json_number(hw.intra.latency), json_number(hw.inter.bandwidth),
      json_number(hw.inter.latency), json_number(hw.overlap), json_number(hw.handoff_latency));
  out += fmt::format("  \"evaluated\": {},\n  \"planning_seconds\": {},\n  \"feasible_count\": {},\n",
                     plan.evaluated, json_number(plan.seconds), plan.feasible.size());
  out += "  \"feasible\": [";
  const size_t shown = std::min<size_t>(plan.feasible.size(), top > 0 ? static_cast<size_t>(top) : plan.feasible.size());
  for (size_t i = 0; i < shown; ++i) {
    const PlannedLayout& l = plan.feasible[i];
    const Prediction& p = l.p;
    const Candidate& c = p.c;
    std::vector<std::string> needs;
    for (const std::string& n : l.needs) needs.push_back(json_string(n));
    out += fmt::format(
        "{}\n    {{\"rank\": {}, \"dp\": {}, \"tp\": {}, \"pp\": {}, \"micro_batch\": {}, \"micro_batches\": {}, "
        "\"zero\": {}, \"recompute\": {}, \"schedule\": {}, \"step_seconds\": {}, \"items_per_second\": {}, "
        "\"mfu\": {}, \"bubble\": {}, \"ideal_bubble\": {}, "
        "\"memory\": {{\"stage\": {}, \"params\": {}, \"grads\": {}, \"optimizer\": {}, \"activations\": {}, "
        "\"total\": {}, \"capacity\": {}, \"device\": {}}}, "
        "\"time\": {{\"pipeline\": {}, \"compute\": {}, \"tp\": {}, \"pp\": {}, \"dp_exposed\": {}, \"embed\": {}, "
        "\"optimizer\": {}}}, \"comm_bytes\": {{\"tp\": {}, \"pp\": {}, \"dp\": {}}}, \"runnable\": {}, "
        "\"needs\": [{}]}}",
        i ? "," : "", i + 1, c.dp, c.tp, c.pp, c.micro_batch, c.micro_batches, c.zero, c.recompute ? "true" : "false",
        json_string(c.schedule), json_number(p.step_seconds), json_number(p.tokens_per_second), json_number(p.mfu),
        json_number(p.bubble_fraction), json_number(p.ideal_bubble), p.memory.stage, json_number(p.memory.params),
        json_number(p.memory.grads), json_number(p.memory.optimizer), json_number(p.memory.activations),
        json_number(p.memory.total()), json_number(p.capacity), json_number(hw.memory_bytes),
        json_number(p.pipeline_seconds), json_number(p.compute_seconds), json_number(p.tp_seconds),
        json_number(p.pp_seconds), json_number(p.dp_exposed_seconds), json_number(p.embed_seconds),
        json_number(p.optimizer_seconds), json_number(p.tp_bytes), json_number(p.pp_bytes), json_number(p.dp_bytes),
        l.runnable() ? "true" : "false", fmt::join(needs, ", "));
  }
  out += shown ? "\n  ],\n" : "],\n";
  out += "  \"rejected\": [";
  for (size_t i = 0; i < plan.rejected.size(); ++i) {
    const Rejection& r = plan.rejected[i];
    out += fmt::format(
        "{}\n    {{\"dp\": {}, \"tp\": {}, \"pp\": {}, \"micro_batch\": {}, \"zero\": {}, \"recompute\": {}, "
        "\"schedule\": {}, \"kind\": {}, \"reason\": {}, \"needed_bytes\": {}, \"capacity_bytes\": {}}}",
        i ? "," : "", r.dp, r.tp, r.pp, r.micro_batch, r.zero, r.recompute, json_string(r.schedule),
        json_string(r.kind), json_string(r.reason), json_number(r.needed_bytes), json_number(r.capacity_bytes));
  }
  out += plan.rejected.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

}  // namespace dtrain
