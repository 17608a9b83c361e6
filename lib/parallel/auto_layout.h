// Where a Config meets the planner. `parallel.mode = "auto"`: the config
// validator's AutoLayout hook, which plans for the ranks launched among what
// this trainer can run and keeps what the config fixed. `dtrain plan`: a
// config read as for one process, its model and batch handed to the planner
// for any number of devices, with the choices given on the command line
// (--set parallel.tp=8, ...) as constraints.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "parallel/planner.h"

namespace dtrain {

// Model, sequence length and workload of a resolved (or auto-resolving)
// config, for `devices` devices on `hardware`. Nothing is fixed.
PlanRequest plan_request(const Config& cfg, int devices, const Hardware& hardware);

// The hardware a config plans for: parallel.hardware (a preset or a file);
// unset, on the CPU cpu-local, and for train.device = "cuda" the preset of
// the GPU that `gpu_name` names (its CUDA device name: "NVIDIA H200" ->
// h200). Throws ConfigError naming parallel.hardware where there is no
// `gpu_name` to ask (dtrain plan starts no GPU) or the GPU has no preset.
Hardware config_hardware(const Config& cfg, const std::function<std::string()>& gpu_name = {});

// The hook for load_config: plans with this trainer's features and returns
// the fastest layout; `explain` (if set) receives a few lines on why (the
// choice, its prediction, the runner-up, what was rejected). Throws
// ConfigError with the nearest misses when nothing fits. A cuda config
// without parallel.hardware plans for the preset of its GPU, which
// `gpu_name` names (unset: CUDA device 0's name).
AutoLayout make_auto_layout(std::function<void(const std::string&)> explain = {},
                            std::function<std::string()> gpu_name = {});

// The cost model's prediction for the layout a resolved config runs: every
// choice the config makes fixed (degrees, micro-batch and count, ZeRO stage,
// recomputation, schedule and chunks, sequence parallelism) with this
// trainer's features, on the device `hardware` describes. Its memory is what
// `dtrain run` compares with the device's before allocating (the capacity is
// left unbounded here: the caller knows what is free). nullopt where the
// planner cannot place the layout for a reason other than memory, or the
// hardware lacks what the config asks (a precision).
std::optional<Prediction> predict_layout(const Config& cfg, const Hardware& hardware);

// The hardware `dtrain run`'s memory check plans with: parallel.hardware
// when set; else on the CPU cpu-local, and on a GPU the preset of the GPU
// `gpu_name` names, or the H100's where there is none (or no name to ask):
// what the memory counts take from it (how attention holds its scores) is
// this trainer's CUDA backend on any GPU. A hardware file that cannot be
// read: the same defaults (its problem is the planner's to report). Its
// kernels and attention are this trainer's backend for train.device,
// whatever the description says.
Hardware check_hardware(const Config& cfg, const std::function<std::string()>& gpu_name = {});

// Its memory by part, of the fullest device: "parameters 1.2 GiB, gradients
// ..., activations ..." (with the stage under a pipeline).
std::string memory_parts(const Prediction& p);

// Why a resolved config's ranks do not fit on `device` ("cuda:0 (NVIDIA
// H200)", "this machine") with `free_bytes` of `total_bytes` free, `ranks`
// of them sharing it: "" when they fit, else one line naming the config, the
// layout, the bytes of the fullest stage by part, the device's, and `dtrain
// plan`. The cost model's memory for the layout (predict_layout on
// `hardware`, Memory::total: a checkpoint's save or load adds nothing on the
// device), else config::footprint's rough count.
std::string fit_problem(const Config& cfg, const Hardware& hardware, int ranks, const std::string& device,
                        double free_bytes, double total_bytes);

// Why the plan chose its best runnable layout, for logs.
std::string explain_choice(const Plan& plan);

// `dtrain plan CONFIG --devices N [--set ...]`.
struct PlanCommand {
  std::string config_path;
  // --set; parallel.dp/tp/pp/zero/schedule/virtual_stages/sequence_parallel,
  // train.recompute and train.micro_batch fix choices
  std::vector<std::string> overrides;
  int devices = 1;
  std::string hardware;   // "" = the config's parallel.hardware, else cpu-local
  std::string precision;  // "" = the config's train.precision
  bool runnable_only = false;  // only what `dtrain run` can run (its features)
  bool no_idle = false;        // every device takes part (no plans that leave a few idle)
};
// Reads the config (ignoring its own parallel degrees) and plans. Throws
// ConfigError for a bad config, override, hardware or precision.
Plan run_plan_command(const PlanCommand& cmd);

}  // namespace dtrain
