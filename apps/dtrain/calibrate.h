// `dtrain profile CONFIG --write-hardware FILE`: measures, on the ranks it
// runs on, what the planner's Hardware needs and returns it, ready for
// write_calibrated_toml (parallel/calibration.h) and `--hardware FILE`.
// On a GPU (train.device = "cuda"), through the ops layer on the device:
// products of 8192^3 in the compute dtype run until the clocks have settled
// (the efficiency against the preset's datasheet peak; the curve's half
// dimension from the roofline, as in the presets), a 1 GiB device copy
// (memory-bound passes, and the roofline's bandwidth), the device's
// memory, the model's passes timed by events (the per-layer overhead), and
// NCCL all-reduces over the device groups. On the CPU:
//   - the sgemm peak with train.threads threads (rank 0 alone, the others
//     waiting as a pipeline's idle stages wait, with no deadline: see
//     CalibrateOptions::timeout_seconds);
//   - the config's model trained by one rank alone at two micro-batch sizes
//     (one-member groups, tp = pp = dp = 1): the FLOP rate its layers achieve
//     and the fixed time per layer pass (fit_compute), the optimizer step
//     (fit_memory_bandwidth);
//   - the same at once on every rank: how many compute units the node's ranks
//     share (fit_compute_units: 4 ranks on 2 cores -> 2);
//   - all-reduces of 8 bytes and 4 MiB among all ranks (fit_link), and a small
//     message handed round the ranks one after another: the latency of a
//     point-to-point message to a rank that is waiting for it (handoff);
//   - where ranks share cores (and the model splits over them): a step of
//     every rank in tensor-parallel groups beside one of every rank data-
//     parallel, the same batch: the bandwidth the tp all-reduces get inside a
//     step (Hardware::tp_bandwidth), fitted so that the cost model's ratio of
//     the two steps is the measured one; and the tp step again with sequence
//     parallelism (Hardware::sp_bandwidth); three rounds of the three in turn,
//     the medians of their ratios to each round's dp step.
// Collective over `world`: every rank calls it with the same arguments.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "config/config.h"
#include "core/comm.h"
#include "parallel/calibration.h"
#include "parallel/hardware.h"
#include "parallel/layout.h"

namespace dtrain {

struct CalibrateOptions {
  int64_t steps = 6;        // measured steps per compute case (their median counts)
  int64_t warmup = 2;       // steps first, not measured
  int64_t small_batch = 1;  // the two micro-batch sizes of the compute fit
  int64_t large_batch = 0;  // 0 = max(8, the config's train.micro_batch)
  int ranks_per_node = 0;   // ranks on this node (0 = all of them)
  int local_rank = 0;       // this rank's index on its node: its GPU is local_rank % (GPUs on the node)
  int cores = 0;            // this node's cores, for the report (0 = unknown)
  int threads_default = 0;  // train.threads = 0: this rank's share of the cores (TrainerOptions::cores)
  double node_memory_bytes = 0;  // the node memory this process may use: RAM or its cgroup limit (0 = unknown: 1 GiB per rank)
  std::string config_path;  // for the description
  std::string command;      // how the calibration was run, for the file's [calibration] table
  std::string name = "calibrated";
  // The deadline of every collective but the wait for rank 0's solo
  // measurements, which has none (parallel.timeout).
  double timeout_seconds = 300;
  // The groups of a layout of the world's ranks (collective), for the tp
  // measurement; unset: not measured.
  std::function<Groups(const Config&)> groups_for;
};

struct Calibration {
  Hardware hardware;
  CalibrationTable table;  // the raw measurements, for the file's [calibration]
  std::string summary;     // a few lines for the terminal
};

// Throws RuntimeError when a measurement makes no sense (a larger micro-batch
// faster than a smaller one), ConfigError for a config that cannot train.
Calibration calibrate_hardware(const Config& cfg, Communicator& world, const CalibrateOptions& options);

}  // namespace dtrain
