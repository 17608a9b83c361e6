// Turning measurements into a hardware description (hardware.h): the
// inverses of the cost model's formulas, kept apart from the measuring (which
// needs ranks and a trainer: apps/dtrain/calibrate.h) so that each can be checked
// against hand-computed cases. `dtrain profile --write-hardware` measures;
// docs/planner.md ("Calibrating a hardware file") gives the formulas.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "parallel/cost_model.h"
#include "parallel/hardware.h"
#include "parallel/model_profile.h"

namespace dtrain {

// One process's forward + backward of one micro-batch: the cost model's
// 2 L o + b F / R (cost_model.h) through two micro-batch sizes b1 < b2 timed
// t1, t2, with F FLOPs per sample and L top-level layers:
//   R = (b2 - b1) F / (t2 - t1),  o = (t1 - b1 F / R) / (2 L)  (o >= 0).
struct ComputeFit {
  double rate = 0;      // FLOP/s the layers achieve
  double overhead = 0;  // s per layer per forward or backward
};
// `memory_seconds_per_sample`: the memory-bound passes' time per sample
// (bytes / memory bandwidth, which the model adds to the products' time),
// taken off both times first.
ComputeFit fit_compute(double flops_per_sample, int64_t layers, double b1, double t1, double b2, double t2,
                       double memory_seconds_per_sample = 0);

// The efficiency curve's half point from one matrix product's rate at two
// sizes (smallest dimension x_small < x_large): the h of r(x) = R x / (x + h)
// through both, h = x_l x_s (r_l - r_s) / (r_s x_l - r_l x_s); 0 when the
// smaller is not slower.
double fit_gemm_half_dim(double x_small, double rate_small, double x_large, double rate_large);

// The large-product efficiency that makes a model's products, at their
// shapes (Gemm rows, dim) and micro-batch b, run at `rate` on hardware `hw`
// (its peak for `precision` and gemm_half_dim): rate / (peak x the
// FLOP-weighted harmonic mean of x / (x + h)), at most 1.
double fit_efficiency(const std::vector<Gemm>& gemms, double b, double rate, const Hardware& hw,
                      const std::string& precision);

// A link from all-reduces among n ranks of `small` bytes (latency-bound) and
// `big` bytes taking the given times: the inverse of all_reduce_seconds (the
// faster of ring and tree, cost_model.h). Latency = t_small / the algorithm's
// steps; bandwidth = 2 (n - 1)/n x big / (t_big - 2 (n - 1) latency).
Link fit_link(int n, double small_bytes, double small_seconds, double big_bytes, double big_seconds);

// Compute units shared by `ranks` ranks of a node: the same work timed on one
// rank alone and on all of them at once, ranks x alone / together, rounded,
// within [1, ranks] (4 ranks on 2 cores: each takes twice as long -> 2).
int fit_compute_units(int ranks, double alone_seconds, double together_seconds);

// Memory bandwidth from the optimizer step of `params` parameters taking
// `seconds`: the cost model's (traffic + 2 x gradient bytes) per parameter
// (state_bytes(w)) over the time.
double fit_memory_bandwidth(double params, double seconds, const Workload& w);

// What `dtrain profile --write-hardware` measured, for the hardware file's
// [calibration] table: (key, value) pairs written as numbers or strings.
using CalibrationTable = std::vector<std::pair<std::string, std::string>>;

// The hardware file with a [calibration] table (write_hardware_toml + table).
std::string write_calibrated_toml(const Hardware& hw, const CalibrationTable& table);

}  // namespace dtrain
