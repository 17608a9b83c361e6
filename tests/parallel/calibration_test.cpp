// Calibration's fits (parallel/calibration.h) against hand-computed cases:
// each one inverts the cost model's formula for made-up hardware, and a
// calibrated hardware file reads back as written.
#include <doctest/doctest.h>

#include <cmath>

#include "core/error.h"
#include "parallel/calibration.h"
#include "parallel/cost_model.h"
#include "parallel/hardware.h"

using namespace dtrain;

namespace {

// Made-up hardware: peak 100 GFLOP/s, optionally a curve with half point h.
Hardware flat_or_curved(double h) {
  Hardware hw;
  hw.peak_fp32 = 100e9;
  hw.gemm_half_dim = h;
  return hw;
}

}  // namespace

TEST_CASE("fit_compute: efficiency and per-layer overhead from two micro-batch sizes") {
  // 7 layers, 2 GFLOP per sample in one large product, a flat curve at 100
  // GFLOP/s peak, efficiency 0.8, 50 us per layer pass:
  // t(b) = 2 x 7 x 50 us + b x 2e9 / 80e9.
  const std::vector<Gemm> one{Gemm{1e9, 1e9, 0, 1e12}};
  const Hardware hw = flat_or_curved(0);
  auto t = [](double b) { return 14 * 50e-6 + b * 0.025; };
  const ComputeFit fit = fit_compute(one, hw, "fp32", 7, 1, t(1), 16, t(16));
  CHECK(fit.efficiency == doctest::Approx(0.8));
  CHECK(fit.overhead == doctest::Approx(50e-6));
  CHECK(fit.rate == doctest::Approx(2e9 * 16 / t(16)));
  // No fixed time: overhead 0, never negative.
  CHECK(fit_compute(one, hw, "fp32", 7, 1, 0.025, 16, 0.4).overhead == doctest::Approx(0).epsilon(1e-9));
  CHECK(fit_compute(one, hw, "fp32", 7, 1, 0.024, 16, 0.4).overhead == 0);
  // The larger micro-batch not slower: cannot be fitted, said so.
  CHECK_THROWS_AS(fit_compute(one, hw, "fp32", 7, 1, 0.3, 16, 0.2), RuntimeError);
  // Memory-bound passes said to take longer than the passes themselves: the
  // products keep time in both, so the efficiency stays positive and finite.
  const ComputeFit odd = fit_compute(one, hw, "fp32", 7, 2, 0.1, 3, 1.0, 10.0);
  CHECK(odd.efficiency > 0);
  CHECK(std::isfinite(odd.efficiency));
}

TEST_CASE("fit_compute: a small micro-batch's slower products are the curve's, not a fixed time per pass") {
  // Products of 128 rows per sample against a dimension of 256 (half point
  // 64): at micro-batch 1 they run at 128 / 192 of the curve's top, from 2
  // on at 256 / 320. Times made by the model at efficiency 0.9, no fixed
  // time, and 5 ms per sample of memory-bound passes.
  const std::vector<Gemm> gemms{Gemm{1e9, 2e9, 128, 256}};
  const Hardware hw = flat_or_curved(64);
  Hardware truth = hw;
  truth.efficiency = 0.9;
  auto t = [&](double b) {
    const double x = std::min(128 * b, 256.0);
    return b * 3e9 / (100e9 * truth.gemm_efficiency(x)) + b * 0.005;
  };
  const ComputeFit fit = fit_compute(gemms, hw, "fp32", 7, 1, t(1), 16, t(16), 0.005);
  CHECK(fit.efficiency == doctest::Approx(0.9));
  CHECK(fit.overhead == doctest::Approx(0).epsilon(1e-12));
  // The line through the two (the fit before the curve) would have charged
  // every pass a fixed time: what a micro-batch of 4 would have been overcharged.
  const double line = (t(1) - (t(16) - t(1)) / 15) / 14;
  CHECK(line > 1e-4);
  // With a fixed time as well, both come back.
  auto t2 = [&](double b) { return t(b) + 14 * 30e-6; };
  const ComputeFit both = fit_compute(gemms, hw, "fp32", 7, 1, t2(1), 16, t2(16), 0.005);
  CHECK(both.efficiency == doctest::Approx(0.9));
  CHECK(both.overhead == doctest::Approx(30e-6));
  // The curve's products at efficiency 1: P(b) of the formula.
  CHECK(curve_gemm_seconds(gemms, 1, hw, "fp32") == doctest::Approx(3e9 / (100e9 * 128 / 192)));
}

TEST_CASE("fit_gemm_half_dim: the efficiency curve through two sgemm sizes") {
  // r(x) = 100 x / (x + 64): 128 -> 66.7, 1024 -> 94.1; the fit finds 64 again.
  auto r = [](double x) { return 100 * x / (x + 64); };
  CHECK(fit_gemm_half_dim(128, r(128), 1024, r(1024)) == doctest::Approx(64));
  CHECK(fit_gemm_half_dim(128, 90, 1024, 80) == 0);  // the small one not slower: flat
}

TEST_CASE("fit_link: latency and bandwidth from a small and a large all-reduce") {
  for (int n : {2, 4, 8}) {
    CAPTURE(n);
    const Link truth{2e9, 5e-6};
    // The cost model's own times (tree wins the small one, ring the large).
    const double small = all_reduce_seconds(8, n, truth), big = all_reduce_seconds(4 << 20, n, truth);
    const Link l = fit_link(n, 8, small, 4 << 20, big);
    CHECK(l.latency == doctest::Approx(truth.latency).epsilon(0.01));
    CHECK(l.bandwidth == doctest::Approx(truth.bandwidth).epsilon(0.01));
  }
  // 4 ranks: 4 tree steps of 5 us = 20 us; 4 MiB by ring: 6 x 5 us + 1.5 x 4 MiB / 2 GB/s.
  const Link l = fit_link(4, 8, 20e-6, 4 << 20, 30e-6 + 1.5 * (4 << 20) / 2e9);
  CHECK(l.latency == doctest::Approx(5e-6));
  CHECK(l.bandwidth == doctest::Approx(2e9));
}

TEST_CASE("fit_compute_units and fit_memory_bandwidth") {
  CHECK(fit_compute_units(4, 1.0, 2.0) == 2);   // 4 ranks, twice as slow together: 2 cores
  CHECK(fit_compute_units(4, 1.0, 1.1) == 4);   // barely slower: one each
  CHECK(fit_compute_units(4, 1.0, 1.5) == 3);   // 4 / 1.5 = 2.67 -> 3
  CHECK(fit_compute_units(4, 1.0, 9.0) == 1);   // never fewer than one
  CHECK(fit_compute_units(2, 1.0, 0.5) == 2);   // never more than the ranks
  Workload w;  // fp32 AdamW: 28 bytes of update + 2 x 4 (zeroing, norm) per parameter
  CHECK(fit_memory_bandwidth(1e6, 1e-3, w) == doctest::Approx(36e9));
  w.optimizer = "sgd";
  w.momentum = false;  // 12 + 8 = 20 bytes
  CHECK(fit_memory_bandwidth(1e6, 1e-3, w) == doctest::Approx(20e9));
}

TEST_CASE("a calibrated hardware file reads back as written, its [calibration] table ignored") {
  Hardware h = load_hardware("cpu-local");
  h.name = "measured";
  h.description = "a \"quoted\" test";
  h.peak_fp32 = 123.456e9;
  h.efficiency = 0.8765;
  h.layer_overhead = 123.5e-6;
  h.compute_units = 2;
  h.handoff_latency = 7.25e-6;
  h.tp_bandwidth = 1.25e9;
  h.sp_bandwidth = 0.75e9;
  h.intra = {3.5e9, 4.25e-6};
  const std::string text = write_calibrated_toml(h, {{"ranks", "4"}, {"pass_seconds_alone", "[0.02, 0.3]"},
                                                     {"command", "\"dtrain profile x.toml\""}});
  CHECK(text.find("[calibration]") != std::string::npos);
  const Hardware r = parse_hardware_toml(text, "file.toml");
  CHECK(r.name == "measured");
  CHECK(r.description == h.description);
  CHECK(r.peak_fp32 == doctest::Approx(h.peak_fp32));
  CHECK(r.efficiency == doctest::Approx(h.efficiency));
  CHECK(r.layer_overhead == doctest::Approx(h.layer_overhead));
  CHECK(r.memory_bandwidth == doctest::Approx(h.memory_bandwidth));
  CHECK(r.compute_units == 2);
  CHECK(r.devices_per_node == h.devices_per_node);
  CHECK(r.handoff_latency == doctest::Approx(h.handoff_latency));
  CHECK(r.tp_bandwidth == doctest::Approx(1.25e9));
  CHECK(r.sp_bandwidth == doctest::Approx(0.75e9));
  CHECK(r.intra.bandwidth == doctest::Approx(3.5e9));
  CHECK(r.intra.latency == doctest::Approx(4.25e-6));
  CHECK(r.overlap == doctest::Approx(h.overlap));
  // A negative handoff is refused like any other negative latency.
  std::string bad = text;
  bad.replace(bad.find("handoff_us = 7.25"), 17, "handoff_us = -1  ");
  CHECK_THROWS_AS(parse_hardware_toml(bad, "bad.toml"), ConfigError);
  std::string bad_tp = text;  // and a negative tp bandwidth
  bad_tp.replace(bad_tp.find("tp_bandwidth_gbs = 1.25"), 23, "tp_bandwidth_gbs = -1  ");
  CHECK_THROWS_AS(parse_hardware_toml(bad_tp, "bad.toml"), ConfigError);
  std::string bad_sp = text;  // and sequence parallel's
  bad_sp.replace(bad_sp.find("sp_bandwidth_gbs = 0.75"), 23, "sp_bandwidth_gbs = -1  ");
  CHECK_THROWS_AS(parse_hardware_toml(bad_sp, "bad.toml"), ConfigError);
}
