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

// One process's forward + backward of one micro-batch, as the cost model
// times it (cost_model.h): 2 L o + P(b) / e + b m, with L top-level layers,
// o the fixed time per layer pass, m the memory-bound passes' time per
// sample (bytes / memory bandwidth) and P(b) the products' time at micro-
// batch b at the full efficiency curve of `hw` (its peak for `precision`
// and gemm_half_dim: sum of b F / (peak x / (x + h)), x each product's
// smallest dimension at b). Through two micro-batch sizes b1 < b2 timed t1,
// t2 (y_i = t_i - b_i m):
//   e = (P(b2) - P(b1)) / (y2 - y1),  o = (y1 - P(b1) / e) / (2 L).
// So a small micro-batch's slower products are the curve's, not a fixed
// overhead that a pipeline's many small micro-batches would pay again
// (configs/gpt.toml at n_embd 256 on one Zen 3 core: 36.0, 33.3, 32.6, 33.0,
// 33.2 ms per sample at micro-batches 1, 2, 4, 8, 16; a line through 1 and
// 16 put 3 ms of "overhead" on every pass). Where the curve alone makes b1
// slower than measured, o = 0 and e fits b2.
struct ComputeFit {
  double rate = 0;        // FLOP/s of the b2 pass without its memory-bound passes (the fixed time still in)
  // The large-product fraction of peak (Hardware::efficiency); above 1 where
  // the model's products ran faster than the curve's peak says they can.
  double efficiency = 0;
  double overhead = 0;    // s per layer per forward or backward
};
ComputeFit fit_compute(const std::vector<Gemm>& gemms, const Hardware& hw, const std::string& precision,
                       int64_t layers, double b1, double t1, double b2, double t2,
                       double memory_seconds_per_sample = 0);

// The products' time for one micro-batch of b at the whole efficiency curve
// (efficiency 1): P(b) above.
double curve_gemm_seconds(const std::vector<Gemm>& gemms, double b, const Hardware& hw, const std::string& precision);

// The efficiency curve's half point from one matrix product's rate at two
// sizes (smallest dimension x_small < x_large): the h of r(x) = R x / (x + h)
// through both, h = x_l x_s (r_l - r_s) / (r_s x_l - r_l x_s); 0 when the
// smaller is not slower.
double fit_gemm_half_dim(double x_small, double rate_small, double x_large, double rate_large);

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
