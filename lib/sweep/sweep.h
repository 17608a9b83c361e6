// The sweep file of `dtrain sweep` and the trials it describes.
//
//   base = "gpt.toml"            # the config every trial starts from (relative to the sweep file)
//   metric = "eval_loss"          # a field of metrics.jsonl: eval_loss, loss, eval_accuracy, grad_norm
//   mode = "min"                  # "min" | "max"
//   trials = 8                    # random search: this many draws (a grid runs every combination)
//   concurrency = 2               # trials at once
//   seed = 0                      # random search: draw i is a pure function of (seed, i)
//   search = "random"             # optional: "grid" (lists only, no trials) is the default
//                                 # without distributions and trials, "random" otherwise
//   set = ["train.steps=200"]     # overrides every trial gets
//   launcher = ["mpirun", "-np", "2"]  # a prefix of each trial's command line
//   ranks = 2                     # ranks each trial runs on (checks the configs)
//   [space]
//   "optim.lr" = { dist = "log-uniform", low = 1e-4, high = 1e-2 }
//   "model.n_layer" = [2, 4]      # a list: a grid axis (random search: a uniform choice)
//   [asha]                        # early stopping by successive halving
//   rungs = [50, 100]             # or min_steps = 50: min_steps * reduction^k below train.steps
//   reduction = 3                 # keep the best 1/reduction at each rung
//   [slurm]
//   options = ["-n", "2"]         # sbatch options of every array task (--slurm)
//
// Every problem is reported at once, one line each, naming the sweep file,
// line and key (a ConfigError); the trial configs are checked with the config
// library before any trial starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace dtrain::sweep {

// One [space] entry: a list of choices (TOML literals, as --set takes them)
// or a distribution.
struct Axis {
  std::string key;                   // "optim.lr"
  std::vector<std::string> choices;  // a list; empty for a distribution
  std::string dist;                  // "uniform" | "log-uniform"; empty for a list
  double low = 0, high = 0;
  bool integer = false;  // the key is an integer: draws are integers in [low, high]
  int line = 0;
};

struct AshaSpec {
  std::vector<int64_t> rungs;  // steps, increasing; empty = no early stopping
  int64_t min_steps = 0;       // when given instead of rungs (resolved into rungs)
  double reduction = 3;
};

struct Spec {
  std::string path;       // the sweep file
  std::string base;       // the base config, resolved against the sweep file's directory
  std::string metric = "eval_loss";
  std::string mode = "min";
  std::string search;     // "grid" | "random"
  int64_t trials = 0;     // random: draws; grid: the number of combinations
  int64_t concurrency = 1;
  int64_t seed = 0;
  int64_t ranks = 1;
  std::vector<std::string> set;
  std::vector<std::string> launcher;
  std::vector<Axis> space;  // sorted by key
  AshaSpec asha;
  std::vector<std::string> slurm_options;

  bool maximize() const { return mode == "max"; }
};

// One trial: its number and its values, one override per axis ("optim.lr=0.001").
struct Trial {
  int64_t id = 0;
  std::vector<std::string> overrides;
};

// Reads and checks the sweep file (not the trial configs: check_trials).
// Throws ConfigError with every problem.
Spec parse_spec(const std::string& path);
Spec parse_spec_text(const std::string& text, const std::string& name);

// Every trial: the grid's combinations (the first axis slowest) or
// spec.trials random draws. Draw i depends on (seed, i) only, so more trials
// extend a sweep without changing the earlier ones.
std::vector<Trial> make_trials(const Spec& spec);

// Loads the base config with every trial's overrides (spec.set, then the
// trial's) on spec.ranks ranks, and resolves ASHA's min_steps into rungs
// (below the largest train.steps). Problems name the sweep file, the trial and
// its values; the same problem in many trials is reported once. Also checks
// that eval metrics are recorded at every rung. Returns the trials' configs,
// in order. Throws ConfigError.
std::vector<Config> check_trials(Spec& spec, const std::vector<Trial>& trials, const AutoLayout& auto_layout = {});

// "optim.lr=0.001 model.n_layer=2" -> the values alone, for tables.
std::string values_text(const Trial& t);

}  // namespace dtrain::sweep
