#include "parallel/calibration.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace dtrain {

double curve_gemm_seconds(const std::vector<Gemm>& gemms, double b, const Hardware& hw, const std::string& precision) {
  Hardware whole = hw;
  whole.efficiency = 1;
  const double peak = hw.peak(precision);
  double sec = 0;
  for (const Gemm& g : gemms) {
    const double x = g.rows > 0 ? std::min(b * g.rows, g.dim) : g.dim;
    sec += b * (g.fwd_flops + g.bwd_flops) / (peak * whole.gemm_efficiency(x));
  }
  return sec;
}

ComputeFit fit_compute(const std::vector<Gemm>& gemms, const Hardware& hw, const std::string& precision,
                       int64_t layers, double b1, double t1, double b2, double t2, double memory_seconds_per_sample) {
  double flops = 0;
  for (const Gemm& g : gemms) flops += g.fwd_flops + g.bwd_flops;
  if (!(b2 > b1 && b1 > 0 && flops > 0 && layers > 0 && hw.peak(precision) > 0))
    throw InternalError(fmt::format("fit_compute: micro-batches {} and {}, {} FLOPs, {} layers, peak {}", b1, b2,
                                    flops, layers, hw.peak(precision)));
  if (!(t2 > t1 && t1 > 0))
    throw RuntimeError(fmt::format("calibration: a micro-batch of {} took {:.6f} s, one of {} {:.6f} s: the larger "
                                   "must take longer (the machine too busy to measure?)",
                                   b1, t1, b2, t2));
  // The memory-bound passes off, as long as the products keep some time in
  // both passes and in their difference.
  const double mem = std::clamp(memory_seconds_per_sample, 0.0, 0.5 * std::min(t1 / b1, (t2 - t1) / (b2 - b1)));
  const double y1 = t1 - b1 * mem, y2 = t2 - b2 * mem;
  const double p1 = curve_gemm_seconds(gemms, b1, hw, precision), p2 = curve_gemm_seconds(gemms, b2, hw, precision);
  ComputeFit f;
  f.rate = b2 * flops / y2;
  f.efficiency = (p2 - p1) / (y2 - y1);
  const double fixed = y1 - p1 / f.efficiency;
  if (fixed < 0) f.efficiency = p2 / y2;  // the curve alone is slower than b1 ran: no fixed time; fit b2
  f.overhead = std::max(0.0, fixed) / (2.0 * static_cast<double>(layers));
  return f;
}

double fit_gemm_half_dim(double x_small, double rate_small, double x_large, double rate_large) {
  if (!(x_small > 0 && x_large > x_small && rate_small > 0 && rate_large > 0))
    throw RuntimeError(fmt::format("calibration: matrix products of {} and {} ran at {} and {} FLOP/s: not a usable "
                                   "measurement; run it again", x_small, x_large, rate_small, rate_large));
  if (rate_small >= rate_large) return 0;
  const double den = rate_small * x_large - rate_large * x_small;
  if (den <= 0) return 0;  // the small one more than x_small / x_large slower: beyond the curve's reach
  return x_large * x_small * (rate_large - rate_small) / den;
}

Link fit_link(int n, double small_bytes, double small_seconds, double big_bytes, double big_seconds) {
  if (n < 2 || !(big_bytes > small_bytes))
    throw InternalError(fmt::format("fit_link: {} ranks, {} B and {} B", n, small_bytes, big_bytes));
  if (!(small_seconds > 0) || !(big_seconds > 0))
    throw RuntimeError(fmt::format("calibration: all-reduces of {} B and {} B took {} s and {} s: not a usable "
                                   "measurement (a clock problem?); run it again",
                                   small_bytes, big_bytes, small_seconds, big_seconds));
  // all_reduce_seconds' latency term: the fewer steps of ring 2(n-1) and tree 2 ceil(log2 n).
  const double ring_steps = 2.0 * (n - 1);
  const double tree_steps = 2.0 * std::ceil(std::log2(static_cast<double>(n)));
  Link l;
  l.latency = small_seconds / std::min(ring_steps, tree_steps);
  // A large message goes by ring (bandwidth 2(n-1)/n S/B against the tree's 2 S/B).
  const double moving = std::max(big_seconds - ring_steps * l.latency, 0.1 * big_seconds);
  l.bandwidth = 2.0 * (n - 1) / n * big_bytes / moving;
  return l;
}

int fit_compute_units(int ranks, double alone_seconds, double together_seconds) {
  if (ranks < 1 || !(alone_seconds > 0) || !(together_seconds > 0))
    throw RuntimeError(fmt::format("calibration: {} ranks took {} s alone and {} s together: not a usable "
                                   "measurement (a machine too busy, or a clock problem?); run it again",
                                   ranks, alone_seconds, together_seconds));
  const double units = ranks * alone_seconds / together_seconds;
  return std::clamp(static_cast<int>(std::lround(units)), 1, ranks);
}

double fit_memory_bandwidth(double params, double seconds, const Workload& w) {
  if (!(params > 0) || !(seconds > 0))
    throw RuntimeError(fmt::format("calibration: the optimizer updated {} parameters in {} s: not a usable "
                                   "measurement (a machine too busy, or a clock problem?); run it again",
                                   params, seconds));
  const StateBytes b = state_bytes(w);
  return params * (b.update_traffic + 2 * b.grads) / seconds;
}

std::string write_calibrated_toml(const Hardware& hw, const CalibrationTable& table) {
  std::string out = write_hardware_toml(hw);
  if (table.empty()) return out;
  out += "\n[calibration]  # what was measured (dtrain profile --write-hardware); not read back\n";
  for (const auto& [key, value] : table) out += fmt::format("{} = {}\n", key, value);
  return out;
}

}  // namespace dtrain
